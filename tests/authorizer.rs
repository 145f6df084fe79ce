//! AppSync's AWS_LAMBDA mode over HTTP: a real authorizer service on loopback receives
//! AppSync's event (token, query, operation, headers); its `isAuthorized`, `deniedFields` and
//! `ttlOverride` decide; verdicts are reused per token for the TTL (one call per TTL).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::{ApiSite, SiteCerts, Upstream};
use graphfront::demo;
use serde_json::{json, Value};

type Events = Arc<Mutex<Vec<Value>>>;

async fn decide(State(events): State<Events>, body: String) -> (StatusCode, String) {
    let event: Value = serde_json::from_str(&body).unwrap_or_default();
    let token = event["authorizationToken"]
        .as_str()
        .unwrap_or("")
        .to_string();
    events.lock().unwrap().push(event);
    let answer = match token.as_str() {
        t if t.starts_with("allow") => {
            json!({ "isAuthorized": true, "resolverContext": { "user": t } })
        }
        "partial" => json!({
            "isAuthorized": true,
            "deniedFields": ["arn:aws:appsync:eu-west-1:123456789012:apis/x/types/Query/fields/listPosts", "Post.content"],
        }),
        "short" => json!({ "isAuthorized": true, "ttlOverride": 1 }),
        "boom" => return (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
        _ => json!({ "isAuthorized": false }),
    };
    (StatusCode::OK, answer.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_decides_and_its_verdicts_are_reused() {
    let up = Upstream::start(true).await;
    let events: Events = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authz_port = listener.local_addr().unwrap().port();
    let router = axum::Router::new()
        .route("/authorize", post(decide))
        .with_state(events.clone());
    let (cert, key) = up.ca.issue(&["localhost"]);
    let tls = demo::tls_server_config(&cert, &key, false).unwrap();
    tokio::spawn(async move {
        let _ = demo::serve(listener, Some(tls), router).await;
    });

    let certs = SiteCerts::new();
    let extra = format!(
        r#"[site.auth.authorizer]
url = "https://localhost:{authz_port}/authorize"
ttl = "60s"
token-regex = "(allow|deny|partial|short|boom).*"
"#
    );
    let api = ApiSite::start(&up, certs, &extra).await;
    let (edge, client) = (&api.edge, &api.client);
    let send = |token: Option<&str>, query: &str| {
        let mut r = client
            .post(edge.url("api.test", "/graphql"))
            .header("content-type", "application/json")
            .body(json!({ "query": query, "operationName": null }).to_string());
        if let Some(t) = token {
            r = r.header("authorization", t.to_string());
        }
        r.send()
    };
    let calls = || events.lock().unwrap().len();
    let expect = |r: reqwest::Response, code: Option<&'static str>| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or_default();
        match code {
            None => assert_eq!(status, 200, "{body}"),
            Some(code) => {
                assert_eq!(status, 401, "{body}");
                assert_eq!(body["errors"][0]["errorType"], "UnauthorizedException");
                assert_eq!(body["errors"][0]["extensions"]["code"], code, "{body}");
            }
        }
    };

    // Authorized, with AppSync's event; the verdict is then reused.
    expect(send(Some("allow-1"), "{ hello }").await.unwrap(), None).await;
    assert_eq!(calls(), 1);
    let event = events.lock().unwrap()[0].clone();
    assert_eq!(event["authorizationToken"], "allow-1");
    assert_eq!(event["requestContext"]["queryString"], "{ hello }");
    assert_eq!(event["requestHeaders"]["content-type"], "application/json");
    expect(send(Some("allow-1"), "{ hello }").await.unwrap(), None).await;
    expect(
        send(Some("allow-1"), "{ listPosts { id } }").await.unwrap(),
        None,
    )
    .await;
    assert_eq!(calls(), 1, "one authorizer call per token per TTL");
    let upstream_after_allowed = up.recorder.count();
    assert_eq!(upstream_after_allowed, 3);

    // Denied, and the denial is reused too.
    for _ in 0..2 {
        expect(
            send(Some("deny"), "{ hello }").await.unwrap(),
            Some("AUTHORIZER_DENIED"),
        )
        .await;
    }
    assert_eq!(calls(), 2);

    // deniedFields: a denied root field (ARN form) or a field named in it refuses the request.
    expect(send(Some("partial"), "{ hello }").await.unwrap(), None).await;
    expect(
        send(Some("partial"), "{ listPosts { id } }").await.unwrap(),
        Some("AUTHORIZER_FIELD_DENIED"),
    )
    .await;
    expect(
        send(
            Some("partial"),
            "{ getPost(id: \"1\") { ...F } } fragment F on Post { content }",
        )
        .await
        .unwrap(),
        Some("AUTHORIZER_FIELD_DENIED"),
    )
    .await;
    expect(
        send(Some("partial"), "{ getPost(id: \"1\") { title } }")
            .await
            .unwrap(),
        None,
    )
    .await;
    assert_eq!(calls(), 3);

    // ttlOverride: a 1 s verdict is asked for again after a second.
    expect(send(Some("short"), "{ hello }").await.unwrap(), None).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    expect(send(Some("short"), "{ hello }").await.unwrap(), None).await;
    assert_eq!(calls(), 5);

    // A token the regex refuses never reaches the authorizer; a failing authorizer refuses.
    expect(
        send(Some("nope"), "{ hello }").await.unwrap(),
        Some("AUTHORIZER_TOKEN_INVALID"),
    )
    .await;
    assert_eq!(calls(), 5);
    expect(
        send(Some("boom"), "{ hello }").await.unwrap(),
        Some("AUTHORIZER_UNAVAILABLE"),
    )
    .await;
    expect(
        send(None, "{ hello }").await.unwrap(),
        Some("AUTHORIZATION_MISSING"),
    )
    .await;

    assert_eq!(
        up.recorder.count(),
        upstream_after_allowed + 4,
        "only accepted requests reach the upstream"
    );
    assert_eq!(
        edge.metric("graphfront_auth_authorizer_requests_total{result=\"denied\",site=\"api\"}")
            .await,
        1.0
    );
}
