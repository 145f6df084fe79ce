//! Real real-time clients through graphfront's custom domain: AppSync's own client libraries
//! (raw `ws` in AppSync's dialect, npm `aws-appsync`, `aws-amplify` v6) subscribe over TLS to
//! `api.test` in front of the AWS AppSync simulator and receive the event of a `createPost`
//! sent through graphfront; npm `graphql-ws` does the same against a graphql-transport-ws
//! server (the demo API). graphfront forwards the upgrades transparently.
//!
//! Needs node and `npm ci --prefix tests/js`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::appsync::AppSyncSim;
use common::realtime::{realtime_stats, Mode, RealtimeClient};
use common::{eventually, post_gql, post_gql_with_key, ApiSite, SiteCerts, Upstream};
use serde_json::{json, Value};

const API_KEY: &str = "da2-appsyncsimappsyncsimappsy";
const SUBSCRIPTION: &str = "subscription OnCreatePost { onCreatePost { id title author } }";
/// Node starts, loads the library, connects and subscribes within this.
const SUBSCRIBE_DEADLINE: Duration = Duration::from_secs(30);
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

/// The site's table for the simulator: its real-time endpoint, and the edge's API-key check.
fn appsync_site_extra(sim: &AppSyncSim) -> String {
    format!(
        r#"realtime-upstream = "ws://127.0.0.1:{}/graphql/realtime"
[site.auth]
[[site.auth.api-key]]
id = "web"
key = "{API_KEY}"
"#,
        sim.port
    )
}

/// The site's CA certificate in a file, for NODE_EXTRA_CA_CERTS.
fn ca_file(certs: &SiteCerts) -> PathBuf {
    let p = certs.dir.path().join("site-ca.pem");
    std::fs::write(&p, certs.ca_pem()).unwrap();
    p
}

/// `mode` subscribes to `onCreatePost` through graphfront, a `createPost` goes through
/// graphfront, and the client receives the post; the simulator saw one real-time upgrade
/// carrying the key, then the `start` message carrying it again.
async fn appsync_client_receives_a_mutation_event(mode: Mode) {
    let sim = AppSyncSim::start(API_KEY, None).await;
    let site = sim.site(&appsync_site_extra(&sim)).await;
    let ca = ca_file(&site.certs);
    let before = realtime_stats(&sim).await;

    let mut client = RealtimeClient::start(
        mode,
        &site.url(),
        API_KEY,
        SUBSCRIPTION,
        &ca,
        site.edge.https.port(),
    );
    client
        .wait_subscribed(Instant::now() + SUBSCRIBE_DEADLINE)
        .await;

    let id = format!("rt-{mode:?}");
    let mutation = format!(
        r#"mutation {{ createPost(id: "{id}", title: "Live", author: "carol") {{ id title author }} }}"#
    );
    let r = post_gql_with_key(&site.client, &site.url(), API_KEY, &mutation)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["createPost"]["id"], id.as_str(), "{body}");

    let event = client.next_event(Instant::now() + EVENT_DEADLINE).await;
    let post = &event["data"]["onCreatePost"];
    assert_eq!(
        (&post["id"], &post["title"], &post["author"]),
        (&json!(id), &json!("Live"), &json!("carol")),
        "{mode:?} received {event}\n{}",
        client.log()
    );
    assert_eq!(
        client.opened,
        [json!({ "protocol": "graphql-ws" })],
        "one WebSocket, AppSync's subprotocol negotiated through the edge"
    );

    let after = realtime_stats(&sim).await;
    assert_eq!(
        after.upgrades,
        before.upgrades + 1,
        "the upgrade reached the simulator's real-time endpoint"
    );
    // Where the client put the connection's auth header: the query string (aws-appsync), or a
    // `header-<base64url>` subprotocol after `graphql-ws` (Amplify v6).
    let url = after.last_upgrade["url"].as_str().unwrap_or_default();
    let protocols = after.last_protocols.as_array().unwrap();
    if matches!(mode, Mode::AppSyncWsSubprotocol | Mode::Amplify) {
        assert_eq!(url, "/graphql/realtime", "{after:?}");
        assert_eq!(protocols.len(), 2, "{after:?}");
        assert_eq!(protocols[0], "graphql-ws", "{after:?}");
        assert!(
            protocols[1].as_str().unwrap().starts_with("header-"),
            "{after:?}"
        );
    } else {
        assert!(url.starts_with("/graphql/realtime?header="), "{after:?}");
        assert!(url.ends_with("&payload=e30="), "{after:?}");
        assert_eq!(protocols, &[json!("graphql-ws")], "{after:?}");
    }
    // Forwarded transparently: the auth header is the client's own, `host` the custom domain
    // (real AppSync, behind a custom domain it does not know, wants its own host here).
    let host = format!("api.test:{}", site.edge.https.port());
    assert_eq!(after.last_header["x-api-key"], API_KEY, "{after:?}");
    assert_eq!(after.last_header["host"], host.as_str(), "{after:?}");
    assert_eq!(after.starts, before.starts + 1, "{after:?}");
    assert_eq!(
        after.last_start_authorization["x-api-key"], API_KEY,
        "{after:?}"
    );
    assert_eq!(
        after.last_start_authorization["host"],
        host.as_str(),
        "{after:?}"
    );

    // The connection's access-log event is written when it closes.
    drop(client);
    eventually(EVENT_DEADLINE, "the WebSocket is still open", async || {
        let open = site
            .edge
            .metric("graphfront_websocket_connections_open")
            .await;
        if open == 0.0 {
            return Ok(());
        }
        Err(open)
    })
    .await;
    let log = site.edge.log();
    assert!(!log.contains(API_KEY), "keys never reach the log");
    // Every auth header is base64 of `{"host"...`, in the URL or a subprotocol.
    assert!(
        !log.contains("eyJob3N0"),
        "the real-time auth header never reaches the log:\n{log}"
    );
}

#[tokio::test]
async fn raw_appsync_websocket_with_query_string_auth_receives_mutation_events() {
    appsync_client_receives_a_mutation_event(Mode::AppSyncWs).await;
}

#[tokio::test]
async fn raw_appsync_websocket_with_subprotocol_auth_receives_mutation_events() {
    appsync_client_receives_a_mutation_event(Mode::AppSyncWsSubprotocol).await;
}

#[tokio::test]
async fn aws_appsync_client_receives_mutation_events() {
    appsync_client_receives_a_mutation_event(Mode::AwsAppSync).await;
}

#[tokio::test]
async fn amplify_v6_client_receives_mutation_events() {
    appsync_client_receives_a_mutation_event(Mode::Amplify).await;
}

#[tokio::test]
async fn graphql_ws_client_receives_mutation_events_from_a_graphql_transport_ws_upstream() {
    let up = Upstream::start(false).await;
    let site = ApiSite::start_with(
        &up.url("/graphql"),
        SiteCerts::new(),
        &up.realtime_toml(),
        "0s",
    )
    .await;
    let ca = ca_file(&site.certs);
    let url = site.url();

    let mut client = RealtimeClient::start(
        Mode::GraphqlWs,
        &url,
        "",
        "subscription { onCreatePost { id title } }",
        &ca,
        site.edge.https.port(),
    );
    client
        .wait_subscribed(Instant::now() + SUBSCRIBE_DEADLINE)
        .await;

    // graphql-transport-ws acknowledges the connection, never the subscription: mutations
    // through graphfront until the subscription (registered asynchronously) sees one.
    let event = eventually(EVENT_DEADLINE, "no subscription event", async || {
        let mutation = "mutation { createPost(title: \"through the edge\") { id } }";
        let r = post_gql(&site.client, &url, mutation).await.unwrap();
        assert_eq!(r.status(), 200);
        let wait = Instant::now() + Duration::from_millis(300);
        match client.try_next_event(wait).await {
            Some(event) => Ok(event),
            None => Err(format!("\n{}", client.log())),
        }
    })
    .await;
    assert_eq!(
        event["data"]["onCreatePost"]["title"],
        "through the edge",
        "{event}\n{}",
        client.log()
    );
    assert_eq!(
        client.opened,
        [json!({ "protocol": "graphql-transport-ws" })]
    );
    let upgrade = up
        .request_to("/graphql/ws")
        .expect("the upgrade reached the upstream's graphql-transport-ws endpoint");
    assert_eq!(
        upgrade.headers["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
}
