//! The edge under attack: raw HTTP/1.1 over TLS and WebSockets against a site with API-key auth
//! and `introspection = false`, in front of the demo API, which records every request it
//! receives. Each case asserts the answer and that the upstream never saw a request the client
//! did not send whole and with valid credentials.

mod common;

use std::time::Duration;

use common::raw::{never_saw, statuses};
use common::ws::tls_connect;
use common::{eventually, ApiSite, Edge, EdgeAddrs, SiteCerts, Upstream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "da2-attackattackattackattack";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// `api.test` with an API key, no introspection, and `/graphql/ws` forwarded as is.
async fn setup() -> (Upstream, ApiSite) {
    common::raw::api_key_site(KEY).await
}

/// Write `bytes` on a new TLS connection to the edge and read until it closes (at most 10 s;
/// `closed` says whether it did).
async fn raw(site: &ApiSite, bytes: &[u8]) -> (String, bool) {
    raw_within(site, bytes, Duration::from_secs(10)).await
}

/// [`raw`], giving up on the close after `quiet` without a byte (for answers on a connection
/// that stays open).
async fn raw_within(site: &ApiSite, bytes: &[u8], quiet: Duration) -> (String, bool) {
    let mut tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(quiet, tls.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn post_head(extra_headers: &str) -> String {
    format!(
        "POST /graphql HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n\
         x-api-key: {KEY}\r\n{extra_headers}"
    )
}

#[tokio::test]
async fn after_a_bad_chunked_body_nothing_more_is_parsed_and_the_connection_closes() {
    let (up, site) = setup().await;
    let body = r#"{"query":"{ hello }"}"#;
    let smuggled = format!(
        "POST /graphql?smug=1 HTTP/1.1\r\nHost: api.test\r\nx-api-key: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let n = body.len();
    let cases: Vec<(&str, String)> = vec![
        (
            "40 leading zeros",
            format!("{}{n:x}\r\n{body}\r\n", "0".repeat(40)),
        ),
        ("2^64 overflow", format!("10000000000000000\r\n{body}\r\n")),
        ("minus", format!("-{n:x}\r\n{body}\r\n")),
        ("0x prefix", format!("0x{n:x}\r\n{body}\r\n")),
        ("junk", format!("zz\r\n{body}\r\n")),
        ("space inside", format!("{} {}\r\n{body}\r\n", 1, 5)),
        ("leading space", format!(" {n:x}\r\n{body}\r\n")),
        ("bare LF", format!("{n:x}\n{body}\n")),
        ("bare CR", format!("{n:x}\r{body}\r")),
        ("size too small", format!("3\r\n{body}\r\n")),
        ("no CRLF after the data", format!("{n:x}\r\n{body}XX")),
        ("empty size line", format!("\r\n{body}\r\n")),
    ];
    for (name, chunks) in &cases {
        let request = format!(
            "{}Transfer-Encoding: chunked\r\n\r\n{chunks}0\r\n\r\n{smuggled}",
            post_head("")
        );
        let (text, closed) = raw(&site, request.as_bytes()).await;
        let codes = statuses(&text);
        assert!(closed, "{name}: the connection stayed open: {text}");
        assert!(
            codes.len() <= 1,
            "{name}: what followed the error was answered as a request: {text}"
        );
        if let Some(&code) = codes.first() {
            if code != 200 {
                assert_eq!(code, 400, "{name}: {text}");
                let lower = text.to_ascii_lowercase();
                assert!(
                    lower.contains("connection: close"),
                    "{name}: an error answer without Connection: close: {text}"
                );
            }
        }
        never_saw(&up, "smug");
    }
}

#[tokio::test]
async fn duplicate_credentials_are_refused_and_never_forwarded() {
    let (up, site) = setup().await;
    let body = r#"{"query":"{ hello }"}"#;
    let cases = [
        format!("x-api-key: {KEY}\r\nx-api-key: da2-someotherkeysomeotherkey"),
        format!("x-api-key: {KEY}\r\nx-api-key: {KEY}"),
        "Authorization: a\r\nAuthorization: b".to_string(),
        "x-amz-date: 20260101T000000Z\r\nx-amz-date: 20260101T000001Z".to_string(),
        "x-amz-security-token: a\r\nx-amz-security-token: b".to_string(),
        "Host: api.test".to_string(),
    ];
    for (i, dup) in cases.iter().enumerate() {
        // `post_head` already carries a key and a Host.
        let head = if i < 2 || i == 5 {
            format!("POST /graphql?dup={i} HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n{dup}\r\n")
        } else {
            format!(
                "{}{dup}\r\n",
                post_head("").replace("/graphql", &format!("/graphql?dup={i}"))
            )
        };
        let request = format!(
            "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (text, _) = raw(&site, request.as_bytes()).await;
        assert_eq!(statuses(&text), [400], "{dup}: {text}");
        // pingora itself refuses a second Host before the edge sees the request.
        if i != 5 {
            assert!(text.contains("DUPLICATE_HEADER"), "{dup}: {text}");
        }
    }
    never_saw(&up, "dup=");
}

#[tokio::test]
async fn underscored_header_names_never_reach_the_upstream() {
    let (up, site) = setup().await;
    let body = r#"{"query":"{ hello }"}"#;
    let request = format!(
        "{}Content_Length: 1\r\nTransfer_Encoding: chunked\r\nX_Forwarded_For: 10.0.0.1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        post_head("").replace("/graphql", "/graphql?underscore=1"),
        body.len()
    );
    let (text, _) = raw(&site, request.as_bytes()).await;
    assert_eq!(statuses(&text), [200], "{text}");
    let seen = up
        .recorder
        .requests()
        .into_iter()
        .find(|r| r.uri.contains("underscore"))
        .expect("the request was forwarded");
    let names: Vec<&str> = seen.headers.keys().map(|k| k.as_str()).collect();
    assert!(!names.iter().any(|n| n.contains('_')), "{names:?}");
    assert_eq!(seen.body.as_ref(), body.as_bytes());
}

#[tokio::test]
async fn hosts_with_junk_ports_are_refused() {
    let (up, site) = setup().await;
    for host in [
        "api.test:abc",
        "api.test:99999999999",
        "api.test:0",
        "api.test:1:2",
    ] {
        let request = format!(
            "GET /graphql?query=%7Bhello%7D HTTP/1.1\r\nHost: {host}\r\nx-api-key: {KEY}\r\n\
             Connection: close\r\n\r\n"
        );
        let (text, _) = raw(&site, request.as_bytes()).await;
        assert_eq!(statuses(&text), [400], "{host}: {text}");
        assert!(text.contains("INVALID_HOST"), "{host}: {text}");
    }
    assert_eq!(up.recorder.count(), 0);
}

#[tokio::test]
async fn upgrades_outside_the_websocket_paths_are_refused_unforwarded() {
    let (up, site) = setup().await;
    for (path, key) in [
        ("/graphql", None),
        ("/graphql", Some(KEY)),
        ("/elsewhere", None),
    ] {
        let key = key
            .map(|k| format!("x-api-key: {k}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: graphql-transport-ws\r\n{key}\r\n"
        );
        let (text, _) = raw_within(&site, request.as_bytes(), Duration::from_secs(1)).await;
        assert_eq!(statuses(&text), [400], "{path}: {text}");
        assert!(text.contains("WEBSOCKET_NOT_ALLOWED"), "{path}: {text}");
    }
    assert_eq!(up.recorder.count(), 0);
}

/// A graphql-transport-ws connection to `/graphql/ws`, the handshake carrying `headers`.
async fn ws(site: &ApiSite, headers: &[(&'static str, &str)]) -> Ws {
    let tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    let mut request = site
        .edge
        .ws_url("api.test", "/graphql/ws")
        .into_client_request()
        .unwrap();
    let h = request.headers_mut();
    h.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    for (name, value) in headers {
        h.insert(*name, value.parse().unwrap());
    }
    tokio_tungstenite::client_async(request, tls)
        .await
        .unwrap()
        .0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next message: a JSON text, or the close code.
async fn next(ws: &mut Ws) -> Result<Value, Option<u16>> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time");
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(f))) => return Err(f.map(|f| u16::from(f.code))),
            None | Some(Err(_)) => return Err(None),
            Some(Ok(_)) => continue,
        }
    }
}

/// A subscription to `__schema` on `c` gets graphql-transport-ws's error for its id.
async fn introspection_refused(c: &mut Ws) {
    send(
        c,
        subscribe("i", "subscription { __schema { types { name } } }"),
    )
    .await;
    let refused = next(c).await.unwrap();
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "i");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "INTROSPECTION_DISABLED"
    );
}

fn subscribe(id: &str, query: &str) -> Value {
    json!({"id": id, "type": "subscribe", "payload": {"query": query}})
}

#[tokio::test]
async fn forwarded_websocket_paths_need_credentials_before_any_operation() {
    let (_up, site) = setup().await;

    // No credentials at all: an operation before connection_init closes with 4401.
    let mut c = ws(&site, &[]).await;
    send(
        &mut c,
        subscribe("1", "mutation { createPost(title: \"x\") { id } }"),
    )
    .await;
    assert_eq!(next(&mut c).await, Err(Some(4401)));

    // A binary frame before authentication: 4401 too.
    let mut c = ws(&site, &[]).await;
    c.send(Message::binary(b"{}".to_vec())).await.unwrap();
    assert_eq!(next(&mut c).await, Err(Some(4401)));

    // connection_init with a wrong key: 4403.
    let mut c = ws(&site, &[]).await;
    let init =
        json!({"type": "connection_init", "payload": {"x-api-key": "da2-wrongwrongwrongwrong"}});
    send(&mut c, init).await;
    assert_eq!(next(&mut c).await, Err(Some(4403)));

    // connection_init carrying the key (connectionParams), or a handshake header: accepted.
    for (headers, payload) in [
        (vec![], json!({"x-api-key": KEY})),
        (vec![], json!({"headers": {"x-api-key": KEY}})),
        (vec![("x-api-key", KEY)], json!({})),
    ] {
        let mut c = ws(&site, &headers).await;
        send(
            &mut c,
            json!({"type": "connection_init", "payload": payload}),
        )
        .await;
        assert_eq!(next(&mut c).await.unwrap()["type"], "connection_ack");
        // Introspection is off on this site: refused with the dialect's error, not forwarded.
        introspection_refused(&mut c).await;
        // A broken document too.
        send(&mut c, subscribe("b", "subscription {")).await;
        let refused = next(&mut c).await.unwrap();
        assert_eq!(
            refused["payload"][0]["extensions"]["code"],
            "GRAPHQL_PARSE_FAILED"
        );
    }
}

/// An initialised connection to `/graphql/realtime` with the auth header `header` in the
/// query string, speaking graphql-transport-ws to the demo API's realtime endpoint.
async fn realtime(site: &ApiSite, header: Value) -> Ws {
    let tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    let b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        header.to_string(),
    );
    let url = site.edge.ws_url("api.test", "/graphql/realtime")
        + "?header="
        + &b64.replace('+', "%2B").replace('=', "%3D")
        + "&payload=e30%3D";
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut c, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    send(&mut c, json!({"type": "connection_init", "payload": {}})).await;
    assert_eq!(next(&mut c).await.unwrap()["type"], "connection_ack");
    c
}

#[tokio::test]
async fn introspection_over_the_realtime_path_is_refused() {
    let (_up, site) = setup().await;
    // The realtime path (AppSync's dialect) checks `start`; graphql-transport-ws `subscribe`
    // messages sent there are checked the same way.
    let mut c = realtime(&site, json!({"host": "api.test", "x-api-key": KEY})).await;
    introspection_refused(&mut c).await;
}

#[tokio::test]
async fn port_80_redirects_only_ldh_names() {
    let up = Upstream::start(false).await;
    let certs = SiteCerts::new();
    let (c, k) = certs.write("wild", &["*.wild.test"]);
    let table = common::site("wild", &["*.wild.test"], &up.url("/graphql"), &c, &k, "");
    let edge = Edge::start_at(EdgeAddrs::reserve(), &table, "").await;
    let get = |host: &'static str| {
        let addr = edge.http;
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            tcp.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut out))
                .await
                .unwrap()
                .unwrap();
            out
        }
    };
    let ok = get("a.wild.test").await;
    assert_eq!(statuses(&ok), [308], "{ok}");
    assert!(ok.contains("https://a.wild.test"), "{ok}");
    for host in [
        "2130706433/.wild.test",
        "evil.test/.wild.test",
        "a@b.wild.test",
        "a_b.wild.test",
    ] {
        // 404 from the edge, or (for `@`) no answer from pingora's parser: never a redirect.
        let text = get(host).await;
        assert!(statuses(&text).iter().all(|&s| s == 404), "{host}: {text}");
        assert!(!text.to_ascii_lowercase().contains("location:"), "{text}");
    }
}

/// The demo API, and a `[[site]]` table for `api.test` in front of it without auth.
async fn plain_site() -> (Upstream, SiteCerts, String) {
    let certs = SiteCerts::new();
    let (c, k) = certs.write("api", &["api.test"]);
    let up = Upstream::start(false).await;
    let table = common::site("api", &["api.test"], &up.url("/graphql"), &c, &k, "");
    (up, certs, table)
}

#[tokio::test]
async fn the_admin_listener_guards_its_calls() {
    let token = "attack-suite-admin-token";
    let (_up, _certs, table) = plain_site().await;
    let with_token = Edge::start(&table, &format!("[admin]\ntoken = \"{token}\"\n")).await;
    let status = |r: reqwest::RequestBuilder| async move { r.send().await.unwrap().status() };
    let client = reqwest::Client::new();
    let listing = format!("http://{}/admin/certificates", with_token.admin);
    assert_eq!(status(client.get(&listing)).await, 401);
    assert_eq!(status(client.get(&listing).bearer_auth(token)).await, 200);

    // Without a token, a browser's cross-origin simple POST cannot reload; curl can.
    let open = Edge::start(&table, "").await;
    let reload = format!("http://{}/admin/certificates/reload", open.admin);
    let from_page = client
        .post(&reload)
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain");
    assert_eq!(status(from_page).await, 403);
    let fetched = client.post(&reload).header("sec-fetch-site", "cross-site");
    assert_eq!(status(fetched).await, 403);
    assert_eq!(status(client.post(&reload)).await, 200);
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_in_order() {
    let (up, site) = setup().await;
    let one = |i: usize, close: bool| {
        let body = json!({ "query": format!("{{ hello }} # {i}") }).to_string();
        let connection = if close { "Connection: close\r\n" } else { "" };
        format!(
            "{}{connection}Content-Length: {}\r\n\r\n{body}",
            post_head("").replace("/graphql", &format!("/graphql?pipe={i}")),
            body.len()
        )
    };
    let all = format!("{}{}{}", one(0, false), one(1, false), one(2, true));
    let (text, closed) = raw(&site, all.as_bytes()).await;
    assert!(closed, "{text}");
    assert_eq!(statuses(&text), [200, 200, 200], "{text}");
    let order: Vec<String> = up
        .recorder
        .requests()
        .into_iter()
        .map(|r| r.uri)
        .filter(|u| u.contains("pipe="))
        .collect();
    assert_eq!(
        order,
        ["/graphql?pipe=0", "/graphql?pipe=1", "/graphql?pipe=2"]
    );
}

#[tokio::test]
async fn malformed_requests_never_log_their_credentials() {
    let token = "attack-suite-secret-admin-token";
    let (_up, certs, table) = plain_site().await;
    let edge = Edge::start(&table, &format!("[admin]\ntoken = \"{token}\"\n")).await;
    let secret_key = "da2-loggedloggedloggedlogged";
    // Broken request lines, on the admin listener and the port-80 listener.
    for addr in [edge.admin, edge.http] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /metrics HTTP/1.1\r\nAuthorization: Bearer {token}\r\nx-api-key: {secret_key}\r\nBad Header\x01: x\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    }
    // And on the https listener.
    let mut tls = tls_connect(edge.https, "api.test", &certs.ca_pem()).await;
    let req = format!("POST /graphql HTTP/1.1\r\nHost: api.test\r\nx-api-key: {secret_key}\r\nBad Header\x01: x\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    // pingora's error lines for the broken requests on the admin and port-80 listeners (its
    // HTTP apps, one line each) are there, without their bytes.
    let what = "not two withheld-bytes lines";
    let log = eventually(Duration::from_secs(5), what, async || {
        let log = edge.log();
        if log.matches("request bytes withheld").count() >= 2 {
            return Ok(log);
        }
        Err(log)
    })
    .await;
    assert!(!log.contains(token), "{log}");
    assert!(!log.contains(secret_key), "{log}");
}

/// An HTTP/2 connection to the edge for `api.test`.
async fn h2_client(site: &ApiSite) -> h2::client::SendRequest<bytes::Bytes> {
    common::ws::h2_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await
}

#[tokio::test]
async fn h2_bodies_whose_length_disagrees_with_content_length_never_reach_the_upstream() {
    let (up, site) = setup().await;
    let body = r#"{"query":"{ hello }"}"#;
    for (declared, sent) in [
        (body.len() + 10, body.to_string()),
        (5, body.to_string()),
        (body.len(), format!("{body}{}", " ".repeat(70_000))),
        (200_000, body.to_string()),
    ] {
        let mut send = h2_client(&site).await.ready().await.unwrap();
        let request = http::Request::post(format!(
            "https://api.test:{}/graphql?h2cl={declared}",
            site.edge.https.port()
        ))
        .header("content-type", "application/json")
        .header("content-length", declared.to_string())
        .header("x-api-key", KEY)
        .body(())
        .unwrap();
        let (response, mut stream) = send.send_request(request, false).unwrap();
        let _ = stream.send_data(bytes::Bytes::from(sent), true);
        let answer = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("an answer or a reset in time");
        if let Ok(r) = answer {
            let status = r.status().as_u16();
            assert!(
                status == 400 || status == 413,
                "declared {declared}: {status}"
            );
        }
    }
    never_saw(&up, "h2cl=");
    // A request whose body matches its content-length goes through on the same kind of
    // connection.
    let mut send = h2_client(&site).await.ready().await.unwrap();
    let request = http::Request::post(format!(
        "https://api.test:{}/graphql?h2ok=1",
        site.edge.https.port()
    ))
    .header("content-type", "application/json")
    .header("content-length", body.len().to_string())
    .header("x-api-key", KEY)
    .body(())
    .unwrap();
    let (response, mut stream) = send.send_request(request, false).unwrap();
    stream
        .send_data(bytes::Bytes::from_static(body.as_bytes()), true)
        .unwrap();
    let r = response.await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(up.request_to("/graphql?h2ok=1").is_some());
}

/// The HTTP authorizer's verdict on `start` messages over the realtime path: a token it denies
/// gets AppSync's error and the subscription is not forwarded.
#[tokio::test]
async fn the_authorizer_decides_on_realtime_subscriptions() {
    use axum::routing::post;
    let up = Upstream::start(false).await;
    let events: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = events.clone();
    let router = axum::Router::new().route(
        "/authorize",
        post(move |body: String| {
            let seen = seen.clone();
            async move {
                let event: Value = serde_json::from_str(&body).unwrap_or_default();
                let allowed = event["authorizationToken"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("allow"));
                seen.lock().unwrap().push(event);
                json!({ "isAuthorized": allowed }).to_string()
            }
        }),
    );
    let (cert, key) = up.ca.issue(&["localhost"]);
    let tls = graphfront::demo::tls_server_config(&cert, &key, false).unwrap();
    tokio::spawn(async move {
        let _ = graphfront::demo::serve(listener, Some(tls), router).await;
    });
    let extra = format!(
        "{}[site.auth.authorizer]\nurl = \"https://localhost:{port}/authorize\"\nttl = \"0s\"\n",
        up.realtime_toml()
    );
    let site = ApiSite::start(&up, SiteCerts::new(), &extra).await;

    let mut c = realtime(
        &site,
        json!({"host": "api.test", "Authorization": "allow-handshake"}),
    )
    .await;
    let query = "subscription { onCreatePost { id } }";
    let start = json!({"id": "d", "type": "start", "payload": {
        "data": json!({"query": query, "variables": {}}).to_string(),
        "extensions": {"authorization": {"host": "api.test", "Authorization": "deny-me"}}
    }});
    send(&mut c, start).await;
    let refused = next(&mut c).await.unwrap();
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "d");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"],
        "AUTHORIZER_DENIED"
    );
    let asked = events.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|e| e["authorizationToken"] == "deny-me"
                && e["requestContext"]["queryString"] == query),
        "{asked:?}"
    );
}
