//! What the edge itself enforces on AppSync real-time, in front of the AppSync simulator: the
//! site's auth modes at the handshake and in `start` messages, the `host` rewrite, the Origin
//! allow-list, frame caps, connection limits and the connection_init timeout. Refusals happen
//! before the upstream sees anything.
//!
//! Needs node and `npm ci --prefix tests/js`.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::appsync::AppSyncSim;
use common::realtime::realtime_stats;
use common::ws::tls_connect;
use common::{eventually, post_gql_with_key, ApiSite, SiteCerts};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

const API_KEY: &str = "da2-appsyncsimappsyncsimappsy";
const SUBSCRIPTION: &str = "subscription { onCreatePost { id title } }";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The simulator, and graphfront's `api.test` in front of it with API-key auth and `websocket`
/// settings (TOML keys of `[site.websocket]`).
async fn setup(websocket: &str) -> (AppSyncSim, ApiSite) {
    let sim = AppSyncSim::start(API_KEY, None).await;
    let extra = format!(
        "realtime-upstream = \"ws://127.0.0.1:{}/graphql/realtime\"\n\
         [site.auth]\n[[site.auth.api-key]]\nid = \"web\"\nkey = \"{API_KEY}\"\n\
         [site.websocket]\n{websocket}\n",
        sim.port
    );
    let site = sim.site(&extra).await;
    (sim, site)
}

/// The auth header an AppSync client sends for `key`, naming the custom domain as host.
fn auth(site: &ApiSite, key: &str) -> Value {
    json!({"host": format!("api.test:{}", site.edge.https.port()), "x-api-key": key})
}

enum Carrier {
    Query,
    Subprotocol,
}

/// Open `/graphql/realtime` on the edge with `header` (if any) and `origin`.
async fn open(
    site: &ApiSite,
    header: Option<&Value>,
    carrier: Carrier,
    origin: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut query = String::new();
    let mut protocols = "graphql-ws".to_string();
    if let Some(h) = header {
        let text = h.to_string();
        match carrier {
            Carrier::Query => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&text);
                query = format!("?header={b64}&payload=e30=");
            }
            Carrier::Subprotocol => {
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&text);
                protocols = format!("graphql-ws,header-{b64}");
            }
        }
    }
    upgrade(site, &query, &protocols, origin).await
}

/// Upgrade `/graphql/realtime` + `query` on the edge, offering `protocols`, with `origin`.
async fn upgrade(
    site: &ApiSite,
    query: &str,
    protocols: &str,
    origin: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    let url = site.edge.ws_url("api.test", "/graphql/realtime") + query;
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    if let Some(o) = origin {
        request.headers_mut().insert("origin", o.parse().unwrap());
    }
    tokio_tungstenite::client_async(request, tls)
        .await
        .map(|(ws, _)| ws)
}

/// The status and code of a refused handshake.
fn refusal(r: Result<Ws, tungstenite::Error>) -> (u16, String) {
    match r {
        Err(tungstenite::Error::Http(response)) => {
            let body: Value = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            let code = body["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (response.status().as_u16(), code)
        }
        Err(e) => panic!("not an HTTP refusal: {e}"),
        Ok(_) => panic!("the handshake was accepted"),
    }
}

/// The next text message as JSON (keep-alives skipped), within 10 s.
async fn next(ws: &mut Ws) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .expect("a frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] != "ka" {
                return v;
            }
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// connection_init → connection_ack.
async fn init(ws: &mut Ws) {
    send(ws, json!({"type": "connection_init"})).await;
    assert_eq!(next(ws).await["type"], "connection_ack");
}

/// A connection opened with the right key (in the query string) and initialised.
async fn connected(site: &ApiSite) -> Ws {
    let mut ws = open(site, Some(&auth(site, API_KEY)), Carrier::Query, None)
        .await
        .unwrap();
    init(&mut ws).await;
    ws
}

/// A connected client whose subscription `1`, started with the right key, is acknowledged.
async fn subscribed(site: &ApiSite) -> Ws {
    let mut ws = connected(site).await;
    send(&mut ws, start("1", auth(site, API_KEY))).await;
    assert_eq!(next(&mut ws).await["type"], "start_ack");
    ws
}

/// POST the mutation `query` with the right key to `url`; it succeeds.
async fn mutate(client: &reqwest::Client, url: &str, query: &str) {
    let r = post_gql_with_key(client, url, API_KEY, query)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn start(id: &str, authorization: Value) -> Value {
    json!({"id": id, "type": "start", "payload": {
        "data": json!({"query": SUBSCRIPTION, "variables": {}}).to_string(),
        "extensions": {"authorization": authorization}
    }})
}

/// How the connection ended: the close code, if a close frame came.
async fn closed(ws: &mut Ws, within: Duration) -> Option<CloseCode> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("still open after {within:?}"),
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

#[tokio::test]
async fn handshakes_without_valid_credentials_never_reach_the_upstream() {
    let (sim, site) = setup("").await;
    let wrong = auth(&site, "da2-wrong");
    for carrier in [Carrier::Query, Carrier::Subprotocol] {
        let r = open(&site, Some(&wrong), carrier, None).await;
        assert_eq!(refusal(r), (401, "API_KEY_INVALID".to_string()));
    }
    let r = open(&site, None, Carrier::Query, None).await;
    assert_eq!(refusal(r), (401, "AUTHORIZATION_MISSING".to_string()));
    // A header that is not base64 JSON.
    let r = upgrade(&site, "?header=%25%25%25&payload=e30=", "graphql-ws", None).await;
    assert_eq!(refusal(r), (400, "REALTIME_BAD_HEADER".to_string()));

    assert_eq!(
        realtime_stats(&sim).await.upgrades,
        0,
        "no upgrade reached the simulator"
    );
    let rejected = site
        .edge
        .metric(r#"graphfront_websocket_rejections_total{reason="auth",site="api"}"#)
        .await;
    assert_eq!(rejected, 3.0);

    // The right key opens it.
    let _ws = connected(&site).await;
    assert_eq!(realtime_stats(&sim).await.upgrades, 1);
}

#[tokio::test]
async fn a_start_with_a_bad_key_gets_appsyncs_error_and_never_reaches_the_upstream() {
    let (sim, site) = setup("").await;
    let mut ws = connected(&site).await;
    send(&mut ws, start("1", auth(&site, "da2-wrong"))).await;
    let error = next(&mut ws).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "1");
    assert_eq!(
        error["payload"]["errors"][0]["errorType"],
        "UnauthorizedException"
    );
    assert_eq!(
        error["payload"]["errors"][0]["extensions"]["code"],
        "API_KEY_INVALID"
    );
    send(&mut ws, start("2", json!({"host": "api.test"}))).await;
    let error = next(&mut ws).await;
    assert_eq!(
        (error["type"].as_str(), error["id"].as_str()),
        (Some("error"), Some("2"))
    );
    assert_eq!(
        realtime_stats(&sim).await.starts,
        0,
        "refused starts are not forwarded"
    );

    // The connection stays usable: a good start is acknowledged and receives events.
    send(&mut ws, start("3", auth(&site, API_KEY))).await;
    let ack = next(&mut ws).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("start_ack"), Some("3"))
    );
    assert_eq!(realtime_stats(&sim).await.starts, 1);
    let mutation = r#"mutation { createPost(id: "e1", title: "Edge") { id title } }"#;
    mutate(&site.client, &site.url(), mutation).await;
    let data = next(&mut ws).await;
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["payload"]["data"]["onCreatePost"]["title"], "Edge");
    assert_eq!(
        site.edge
            .metric(r#"graphfront_websocket_rejections_total{reason="start_auth",site="api"}"#)
            .await,
        2.0
    );
    assert_eq!(
        site.edge
            .metric(r#"graphfront_websocket_subscriptions_started_total{site="api"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn the_host_inside_auth_headers_is_rewritten_to_the_upstreams() {
    let (sim, site) = setup("rewrite-host = true").await;
    let upstream_host = format!("127.0.0.1:{}", sim.port);
    for carrier in [Carrier::Query, Carrier::Subprotocol] {
        let mut ws = open(&site, Some(&auth(&site, API_KEY)), carrier, None)
            .await
            .unwrap();
        init(&mut ws).await;
        send(&mut ws, start("1", auth(&site, API_KEY))).await;
        assert_eq!(next(&mut ws).await["type"], "start_ack");
        let stats = realtime_stats(&sim).await;
        assert_eq!(stats.last_header["host"], upstream_host.as_str());
        assert_eq!(stats.last_header["x-api-key"], API_KEY);
        assert_eq!(
            stats.last_start_authorization["host"],
            upstream_host.as_str()
        );
        // Events still flow on the rewritten connection.
        let mutation = r#"mutation { createPost(id: "h", title: "Host") { id title } }"#;
        mutate(&site.client, &site.url(), mutation).await;
        let data = next(&mut ws).await;
        assert_eq!(
            data["payload"]["data"]["onCreatePost"]["title"], "Host",
            "{data}"
        );
    }
}

#[tokio::test]
async fn foreign_origins_are_refused() {
    let (sim, site) = setup("allowed-origins = [\"https://app.test\"]").await;
    let key = auth(&site, API_KEY);
    let r = open(&site, Some(&key), Carrier::Query, Some("https://evil.test")).await;
    assert_eq!(refusal(r), (403, "ORIGIN_NOT_ALLOWED".to_string()));
    assert_eq!(realtime_stats(&sim).await.upgrades, 0);
    let mut ws = open(&site, Some(&key), Carrier::Query, Some("https://app.test"))
        .await
        .unwrap();
    init(&mut ws).await;
    // Non-browser clients send no Origin.
    let mut ws = open(&site, Some(&key), Carrier::Query, None).await.unwrap();
    init(&mut ws).await;
}

#[tokio::test]
async fn frames_over_the_cap_close_the_connection_with_1009() {
    let (sim, site) = setup("max-frame = \"1KiB\"\nmax-message = \"1KiB\"").await;
    let mut ws = connected(&site).await;
    let mut big = start("1", auth(&site, API_KEY));
    big["payload"]["data"] = Value::String("x".repeat(2048));
    send(&mut ws, big).await;
    assert_eq!(
        closed(&mut ws, Duration::from_secs(10)).await,
        Some(CloseCode::Size)
    );
    assert_eq!(realtime_stats(&sim).await.starts, 0);
    assert_eq!(
        site.edge
            .metric(r#"graphfront_websocket_rejections_total{reason="too_big",site="api"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn connections_over_the_limit_are_refused() {
    let (_sim, site) = setup("max-connections-per-client = 2").await;
    let key = auth(&site, API_KEY);
    let mut a = open(&site, Some(&key), Carrier::Query, None).await.unwrap();
    init(&mut a).await;
    let mut b = open(&site, Some(&key), Carrier::Query, None).await.unwrap();
    init(&mut b).await;
    let r = open(&site, Some(&key), Carrier::Query, None).await;
    assert_eq!(refusal(r), (429, "TOO_MANY_CONNECTIONS".to_string()));
    // Once one closes, its place is free again.
    a.close(None).await.unwrap();
    drop(a);
    eventually(Duration::from_secs(10), "no place freed", async || {
        let mut c = open(&site, Some(&key), Carrier::Query, None).await?;
        init(&mut c).await;
        Ok::<_, tungstenite::Error>(())
    })
    .await;
}

#[tokio::test]
async fn a_client_that_never_initialises_is_closed() {
    let (_sim, site) = setup("connection-init-timeout = \"1s\"").await;
    let mut ws = open(&site, Some(&auth(&site, API_KEY)), Carrier::Query, None)
        .await
        .unwrap();
    // Nothing sent: the edge drops the connection after the timeout.
    let _ = closed(&mut ws, Duration::from_secs(10)).await;
    let series = r#"graphfront_websocket_rejections_total{reason="init_timeout",site="api"}"#;
    eventually(Duration::from_secs(10), "not counted", async || {
        let n = site.edge.metric(series).await;
        if n == 1.0 {
            return Ok(());
        }
        Err(format!("{n}\n{}", site.edge.log()))
    })
    .await;
    // An initialised client may stay silent past that timeout: silent for 1.5 s, which is the
    // behaviour under test, not a wait for something to happen.
    let mut ws = subscribed(&site).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ws.send(Message::Ping(vec![1].into())).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Pong(_)))) => break,
            Ok(Some(Ok(_))) => continue,
            other => panic!("the initialised connection was closed: {other:?}"),
        }
    }
}

#[tokio::test]
async fn stopping_closes_open_websockets_with_1001() {
    let sim = AppSyncSim::start(API_KEY, None).await;
    let extra = format!(
        "realtime-upstream = \"ws://127.0.0.1:{}/graphql/realtime\"\n",
        sim.port
    );
    let site = ApiSite::start_with(&sim.url("/graphql"), SiteCerts::new(), &extra, "20s").await;
    let mut ws = subscribed(&site).await;

    // SIGTERM: the edge stops accepting and drains; the open subscription gets its next event
    // (sent straight to the upstream), then a close 1001 telling the client to reconnect.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &site.edge.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The mutation once the edge is draining.
    eventually(Duration::from_secs(10), "not draining", async || {
        let log = site.edge.log();
        if log.contains("stopping: draining") {
            return Ok(());
        }
        Err(format!("\n{log}"))
    })
    .await;
    let mutation = r#"mutation { createPost(id: "bye", title: "Bye") { id title } }"#;
    mutate(&reqwest::Client::new(), &sim.url("/graphql"), mutation).await;
    let data = next(&mut ws).await;
    assert_eq!(
        data["payload"]["data"]["onCreatePost"]["title"], "Bye",
        "{data}"
    );
    assert_eq!(
        closed(&mut ws, Duration::from_secs(10)).await,
        Some(CloseCode::Away)
    );
}
