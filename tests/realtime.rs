//! WebSocket upgrades on the realtime path reach the site's realtime endpoint through TLS: a
//! graphql-transport-ws subscription receives the event of a mutation sent through graphfront.

mod common;

use std::time::{Duration, Instant};

use common::ws::tls_connect;
use common::{eventually, post_gql, site, Edge, SiteCerts, Upstream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// graphfront's site `rt` on `rt.test` in front of `up`, with `extra` TOML in the site's table.
async fn rt_site(up: &Upstream, extra: &str) -> (SiteCerts, Edge) {
    let certs = SiteCerts::new();
    let (c, k) = certs.write("rt", &["rt.test"]);
    let edge = Edge::start(
        &site("rt", &["rt.test"], &up.url("/graphql"), &c, &k, extra),
        "",
    )
    .await;
    (certs, edge)
}

/// A graphql-transport-ws WebSocket to `path` on `rt.test` (the upgrade request carrying
/// `headers` too), its subprotocol checked and the connection initialised.
async fn open(edge: &Edge, certs: &SiteCerts, path: &str, headers: &[(&'static str, &str)]) -> Ws {
    let tls = tls_connect(edge.https, "rt.test", &certs.ca_pem()).await;
    let mut request = edge.ws_url("rt.test", path).into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    ws.send(Message::text(r#"{"type":"connection_init","payload":{}}"#))
        .await
        .unwrap();
    let ack = ws.next().await.unwrap().unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack:?}");
    ws
}

#[tokio::test]
async fn a_subscription_through_the_realtime_path_receives_mutation_events() {
    let up = Upstream::start(false).await;
    let (certs, edge) = rt_site(&up, &up.realtime_toml()).await;

    let mut ws = open(&edge, &certs, "/graphql/realtime", &[]).await;
    ws.send(Message::text(
        r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { onCreatePost { id title } }"}}"#,
    ))
    .await
    .unwrap();

    // The upstream path received the upgrade at the configured realtime endpoint.
    let upgrade = up
        .request_to("/graphql/ws")
        .expect("upgrade reached the upstream");
    assert_eq!(
        upgrade.headers["host"],
        format!("localhost:{}", up.addr.port()).as_str()
    );

    // Mutations through graphfront until the subscription (registered asynchronously) sees one.
    let client = edge.client(&certs.ca_pem(), &["rt.test"], true);
    let msg = eventually(
        Duration::from_secs(10),
        "no subscription event",
        async || {
            let mutation = "mutation { createPost(title: \"through the edge\") { id } }";
            let r = post_gql(&client, &edge.url("rt.test", "/graphql"), mutation)
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            match tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
                Ok(Some(msg)) => Ok(msg),
                _ => Err("none within 300 ms of a mutation"),
            }
        },
    )
    .await;
    let text = msg.unwrap().into_text().unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "next", "{v}");
    assert_eq!(
        v["payload"]["data"]["onCreatePost"]["title"],
        "through the edge"
    );
    assert_eq!(
        edge.metric("graphfront_websocket_connections_total{outcome=\"upgraded\",site=\"rt\"}")
            .await,
        1.0
    );
    assert_eq!(
        edge.metric("graphfront_websocket_connections_open").await,
        1.0
    );
    ws.close(None).await.unwrap();
    drop(ws);
    let what = "closed WebSocket still counted open";
    eventually(Duration::from_secs(10), what, async || {
        let open = edge.metric("graphfront_websocket_connections_open").await;
        if open == 0.0 {
            return Ok(());
        }
        Err(open)
    })
    .await;
}

#[tokio::test]
async fn the_realtime_path_refuses_plain_requests() {
    let up = Upstream::start(false).await;
    let (certs, edge) = rt_site(&up, "").await;
    let r = edge
        .client(&certs.ca_pem(), &["rt.test"], true)
        .get(edge.url("rt.test", "/graphql/realtime"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "WEBSOCKET_REQUIRED"
    );
    assert_eq!(up.recorder.count(), 0);
}

#[tokio::test]
async fn other_websocket_paths_are_forwarded_as_is_within_the_caps() {
    let up = Upstream::start(false).await;
    let extra = "[site.websocket]\npaths = [\"/graphql/ws\"]\nmax-frame = \"1KiB\"\n";
    let (certs, edge) = rt_site(&up, extra).await;
    // Clients offer compression; the edge reads frames, so it is never negotiated.
    let extensions = [(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits",
    )];
    let mut ws = open(&edge, &certs, "/graphql/ws", &extensions).await;
    let upgrade = up
        .request_to("/graphql/ws")
        .expect("the upgrade reached the upstream on the same path");
    assert!(!upgrade.headers.contains_key("sec-websocket-extensions"));

    // Over the frame cap: closed with 1009.
    ws.send(Message::text("x".repeat(2048))).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                assert_eq!(u16::from(f.code), 1009);
                break;
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close 1009: {other:?}"),
        }
    }
}
