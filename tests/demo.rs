//! `graphfront demo`, the README's first command: the built-in API behind graphfront on https,
//! showing what the edge is for: an API key, a cached query (MISS then HIT), a mutation that
//! purges it, an admin purge, a refused key, and an AppSync-dialect subscription.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, eventually, reserve_addr};

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_demo_serves_queries_mutations_and_edge_errors_over_https() {
    let (_r1, https) = reserve_addr();
    let (_r2, admin) = reserve_addr();
    let out = tempfile::NamedTempFile::new().unwrap();
    let _demo = Demo(
        Command::new(binary())
            .args(["demo", "--port", &https.port().to_string()])
            .args(["--admin-port", &admin.port().to_string()])
            .stdout(out.reopen().unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let what = "the demo printed no instructions";
    let ca_path = eventually(Duration::from_secs(20), what, async || {
        let printed = std::fs::read_to_string(out.path()).unwrap();
        if let Some(ca) = printed
            .split_whitespace()
            .find(|w| w.ends_with("ca.pem"))
            .filter(|_| printed.contains("Stop with Ctrl-C"))
        {
            return Ok(ca.trim_end_matches(')').to_string());
        }
        Err(printed)
    })
    .await;
    let ca = std::fs::read(&ca_path).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", https)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/graphql", https.port());
    let post = |q: &str| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-api-key", graphfront::demo::API_KEY)
            .body(serde_json::json!({ "query": q }).to_string())
            .send()
    };
    let x_cache = |r: &reqwest::Response| r.headers()["x-cache"].to_str().unwrap().to_string();
    // The listener is up once the instructions are printed, but poll briefly for the handshake
    // (within what is left of the same 20 s).
    let left = deadline.saturating_duration_since(Instant::now());
    let first = eventually(left, "no answer from the demo", async || {
        post("{ listPosts { id title } }").await
    })
    .await;
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["data"]["listPosts"][0]["title"], "Post 1");

    // A query the demo caches: a MISS, then a HIT; a mutation returning the post purges it.
    let get = "{ getPost(id: \"1\") { id title } }";
    assert_eq!(x_cache(&post(get).await.unwrap()), "MISS");
    assert_eq!(x_cache(&post(get).await.unwrap()), "HIT");
    let r = post("mutation { updatePost(id: \"1\", title: \"edited\") { id title } }")
        .await
        .unwrap();
    assert_eq!(x_cache(&r), "PASS");
    let r = post(get).await.unwrap();
    assert_eq!(x_cache(&r), "MISS");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["data"]["getPost"]["title"], "edited");
    assert_eq!(x_cache(&post(get).await.unwrap()), "HIT");
    // The admin purge it prints.
    let purged = reqwest::Client::new()
        .post(format!("http://{admin}/admin/purge"))
        .bearer_auth(graphfront::demo::ADMIN_TOKEN)
        .body(r#"{"site":"demo","type":"Post","ids":["1"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    assert_eq!(x_cache(&post(get).await.unwrap()), "MISS");
    // A wrong key is refused at the edge.
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-api-key", "da2-wrongwrongwrongwrongwrong12")
        .body(r#"{"query":"{ hello }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // An AppSync-dialect subscription on /graphql/realtime: the key in the handshake header
    // and in the start message, the event when a post is created.
    use base64::Engine;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let auth = serde_json::json!({
        "host": format!("localhost:{}", https.port()),
        "x-api-key": graphfront::demo::API_KEY,
    });
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(auth.to_string());
    let ws_url = format!(
        "wss://localhost:{}/graphql/realtime?header={header}&payload=e30=",
        https.port()
    );
    let mut request = ws_url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-ws".parse().unwrap());
    let ca_pem = String::from_utf8(ca.clone()).unwrap();
    let tls = common::ws::tls_connect(https, "localhost", &ca_pem).await;
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    let next = |v: &str| serde_json::from_str::<serde_json::Value>(v).unwrap();
    ws.send(Message::text(r#"{"type":"connection_init"}"#))
        .await
        .unwrap();
    let start = serde_json::json!({
        "id": "1",
        "type": "start",
        "payload": {
            "data": r#"{"query":"subscription { onCreatePost { id title } }"}"#,
            "extensions": { "authorization": auth },
        },
    });
    let mut started = false;
    let event = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a real-time message")
            .unwrap()
            .unwrap();
        let Message::Text(text) = msg else { continue };
        let v = next(text.as_str());
        if v["type"] == "connection_ack" && !started {
            ws.send(Message::text(start.to_string())).await.unwrap();
            started = true;
            // Subscribed once the upstream has the start: create a post until one arrives.
        }
        if v["type"] == "data" {
            break v;
        }
        if started {
            post("mutation { createPost(title: \"live\") { id } }")
                .await
                .unwrap();
        }
    };
    assert_eq!(
        event["payload"]["data"]["onCreatePost"]["title"], "live",
        "{event}"
    );

    let r = post("mutation { createPost(title: \"hi\") { id title } }")
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["data"]["createPost"]["title"], "hi");

    let r = post("{ broken").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );

    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // createPost, updatePost and the posts created for the subscription.
    let mutations: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "graphfront_http_requests_total{operation=\"mutation\",site=\"demo\",status=\"2xx\"} ",
            )?
            .parse()
            .ok()
        })
        .unwrap_or(0.0);
    assert!(mutations >= 3.0, "{metrics}");
    assert!(
        metrics.contains("graphfront_cache_requests_total{site=\"demo\",status=\"hit\"}"),
        "{metrics}"
    );
}
