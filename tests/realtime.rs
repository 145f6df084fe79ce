//! WebSocket upgrades on the realtime path reach the site's realtime endpoint through TLS: a
//! graphql-transport-ws subscription receives the event of a mutation sent through graphfront.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{gql, site, Edge, SiteCerts, Upstream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn tls_connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn a_subscription_through_the_realtime_path_receives_mutation_events() {
    let up = Upstream::start(false).await;
    let certs = SiteCerts::new();
    let (c, k) = certs.write("rt", &["rt.test"]);
    let realtime = format!(
        "realtime-upstream = \"ws://localhost:{}/graphql/ws\"\n",
        up.addr.port()
    );
    let edge = Edge::start(
        &site("rt", &["rt.test"], &up.url("/graphql"), &c, &k, &realtime),
        "",
    )
    .await;

    let tcp = tokio::net::TcpStream::connect(edge.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("rt.test").unwrap();
    let tls = tls_connector(&certs.ca_pem())
        .connect(name, tcp)
        .await
        .unwrap();
    let mut request = edge
        .url("rt.test", "/graphql/realtime")
        .replace("https", "wss")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
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
    ws.send(Message::text(
        r#"{"id":"1","type":"subscribe","payload":{"query":"subscription { onCreatePost { id title } }"}}"#,
    ))
    .await
    .unwrap();

    // The upstream path received the upgrade at the configured realtime endpoint.
    let upgrade = up
        .recorder
        .requests()
        .into_iter()
        .find(|r| r.uri.starts_with("/graphql/ws"))
        .expect("upgrade reached the upstream");
    assert_eq!(
        upgrade.headers["host"],
        format!("localhost:{}", up.addr.port()).as_str()
    );

    // Mutations through graphfront until the subscription (registered asynchronously) sees one.
    let client = edge.client(&certs.ca_pem(), &["rt.test"], true);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client
            .post(edge.url("rt.test", "/graphql"))
            .header("content-type", "application/json")
            .body(gql(
                "mutation { createPost(title: \"through the edge\") { id } }",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
            let text = msg.unwrap().into_text().unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "next", "{v}");
            assert_eq!(
                v["payload"]["data"]["onCreatePost"]["title"],
                "through the edge"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no subscription event");
    }
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while edge.metric("graphfront_websocket_connections_open").await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "closed WebSocket still counted open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_realtime_path_refuses_plain_requests() {
    let up = Upstream::start(false).await;
    let certs = SiteCerts::new();
    let (c, k) = certs.write("rt", &["rt.test"]);
    let edge = Edge::start(
        &site("rt", &["rt.test"], &up.url("/graphql"), &c, &k, ""),
        "",
    )
    .await;
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
    let certs = SiteCerts::new();
    let (c, k) = certs.write("rt", &["rt.test"]);
    let extra = "[site.websocket]\npaths = [\"/graphql/ws\"]\nmax-frame = \"1KiB\"\n";
    let edge = Edge::start(
        &site("rt", &["rt.test"], &up.url("/graphql"), &c, &k, extra),
        "",
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(edge.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("rt.test").unwrap();
    let tls = tls_connector(&certs.ca_pem())
        .connect(name, tcp)
        .await
        .unwrap();
    let mut request = edge
        .url("rt.test", "/graphql/ws")
        .replace("https", "wss")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    // Clients offer compression; the edge reads frames, so it is never negotiated.
    request.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
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
    let upgrade = up
        .recorder
        .requests()
        .into_iter()
        .find(|r| r.uri.starts_with("/graphql/ws"))
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
