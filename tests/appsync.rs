//! graphfront in front of the AWS AppSync simulator (npm `@aws-amplify/amplify-appsync-simulator`,
//! `tests/js/appsync-sim.js`) over plain HTTP: queries and mutations with a good API key reach
//! it and come back; a wrong key, or a token whose signature does not verify, is refused at the
//! edge in AppSync's own shape and never reaches it.
//!
//! Needs node and `npm ci --prefix tests/js`.

mod common;

use common::appsync::AppSyncSim;
use common::issuer::{now, IssuerServer, SigningKey};
use common::ApiSite;
use graphfront::demo::TestCa;
use serde_json::{json, Value};

const API_KEY: &str = "da2-appsyncsimappsyncsimappsy";

/// The edge's API-key table for `API_KEY`, to follow the site's other keys.
fn api_key_auth() -> String {
    format!(
        r#"[site.auth]
[[site.auth.api-key]]
id = "web"
key = "{API_KEY}"
"#
    )
}

/// POST a GraphQL `body` to the site with `headers`; the status and the JSON body.
async fn send(site: &ApiSite, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    post(&site.client, &site.url(), headers, body).await
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, Value) {
    let mut r = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "unparsed": text }));
    (status, body)
}

#[tokio::test]
async fn a_query_with_the_api_key_returns_the_simulators_data() {
    let sim = AppSyncSim::start(API_KEY, None).await;
    let site = sim.site(&api_key_auth()).await;
    let before = sim.stats().await;

    let query = r#"query Posts { getPost(id: "1") { id title author } listPosts { id } }"#;
    let (status, body) = send(
        &site,
        &[("x-api-key", API_KEY)],
        json!({ "query": query, "operationName": "Posts" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "data": {
            "getPost": { "id": "1", "title": "First post", "author": "alice" },
            "listPosts": [{ "id": "1" }, { "id": "2" }],
        } }),
        "the simulator's answer, unchanged"
    );

    let after = sim.stats().await;
    assert_eq!(after.graphql_requests, before.graphql_requests + 1);
    assert_eq!(after.requests, before.requests + 1);
    assert_eq!(
        after.resolver_invocations,
        before.resolver_invocations + 2,
        "getPost and listPosts resolved upstream"
    );
    assert_eq!(
        after.last_headers["x-api-key"], API_KEY,
        "the key is forwarded"
    );
    let forwarded: Value = serde_json::from_str(after.last_body.as_deref().unwrap()).unwrap();
    assert_eq!(forwarded["query"], query);
    assert_eq!(forwarded["operationName"], "Posts");
    assert!(
        !site.edge.log().contains(API_KEY),
        "keys never reach the log"
    );
}

#[tokio::test]
async fn a_wrong_api_key_is_refused_at_the_edge_as_appsync_would() {
    let sim = AppSyncSim::start(API_KEY, None).await;
    let site = sim.site(&api_key_auth()).await;
    let wrong = "da2-wrongwrongwrongwrongwron";
    let query = json!({ "query": "{ listPosts { id } }" });

    let before = sim.requests().await;
    for (headers, code) in [
        (&[("x-api-key", wrong)][..], "API_KEY_INVALID"),
        (&[][..], "API_KEY_MISSING"),
    ] {
        let (status, body) = send(&site, headers, query.clone()).await;
        assert_eq!(status, 401, "{code}: {body}");
        assert_eq!(body["data"], Value::Null, "{body}");
        assert_eq!(body["errors"][0]["errorType"], "UnauthorizedException");
        assert_eq!(body["errors"][0]["extensions"]["code"], code);
        assert!(body["errors"][0]["message"].is_string(), "{body}");
    }
    assert_eq!(
        sim.requests().await,
        before,
        "refused requests never reach the simulator"
    );

    // The simulator itself answers a wrong key with the same status and error type.
    let direct = reqwest::Client::new();
    let (status, body) = post(
        &direct,
        &sim.url("/graphql"),
        &[("x-api-key", wrong)],
        query,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errors"][0]["errorType"], "UnauthorizedException");
}

#[tokio::test]
async fn a_mutation_through_the_edge_reaches_the_simulator() {
    let sim = AppSyncSim::start(API_KEY, None).await;
    let site = sim.site(&api_key_auth()).await;
    let key = [("x-api-key", API_KEY)];
    let before = sim.stats().await;

    let (status, body) = send(
        &site,
        &key,
        json!({
            "query": "mutation Create($id: ID!, $title: String) { createPost(id: $id, title: $title, author: \"carol\") { id title author } }",
            "variables": { "id": "edge-1", "title": "Through graphfront" },
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let post = json!({ "id": "edge-1", "title": "Through graphfront", "author": "carol" });
    assert_eq!(body, json!({ "data": { "createPost": post } }));

    // The simulator stored it: it answers for the new id, through the edge.
    let (status, body) = send(
        &site,
        &key,
        json!({ "query": "query Get($id: ID!) { getPost(id: $id) { id title author } }", "variables": { "id": "edge-1" } }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "data": { "getPost": post } }));

    let after = sim.stats().await;
    assert_eq!(after.graphql_requests, before.graphql_requests + 2);
    assert_eq!(after.resolver_invocations, before.resolver_invocations + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_tokens_are_verified_at_the_edge_before_the_simulator() {
    let ca = TestCa::new();
    let k1 = SigningKey::rsa("k1");
    let stranger = SigningKey::rsa("stranger");
    let issuer = IssuerServer::start(&ca, vec![k1.jwk.clone()], None).await;
    let iss = issuer.base.clone();
    let sim = AppSyncSim::start(API_KEY, Some(&iss)).await;

    // The issuer's certificate comes from `ca`, which the site trusts for what it fetches.
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), ca.ca_pem()).unwrap();
    let extra = format!(
        r#"upstream-ca-file = "{}"
{}[[site.auth.oidc]]
issuer = "{iss}"
client-id = "web-app"
"#,
        ca_file.path().display(),
        api_key_auth()
    );
    let site = sim.site(&extra).await;

    let t = now();
    let claims = json!({ "iss": iss, "sub": "alice", "aud": "web-app", "exp": t + 600, "iat": t });
    let valid = k1.sign(&claims);
    let forged = stranger.sign_as(Some("k1"), &claims);
    let tampered = {
        let mut other = claims.clone();
        other["sub"] = json!("mallory");
        let other = k1.sign(&other);
        let (head, rest) = valid.split_once('.').unwrap();
        let sig = rest.rsplit_once('.').unwrap().1;
        let payload = other.split('.').nth(1).unwrap();
        format!("{head}.{payload}.{sig}")
    };
    let query = json!({ "query": "{ getPost(id: \"2\") { id author } }" });

    let before = sim.stats().await;
    let (status, body) = send(&site, &[("authorization", &valid)], query.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "data": { "getPost": { "id": "2", "author": "bob" } } })
    );
    let after = sim.stats().await;
    assert_eq!(after.graphql_requests, before.graphql_requests + 1);
    assert_eq!(
        after.last_headers["authorization"], valid,
        "the token is forwarded as it came"
    );
    assert_eq!(after.last_headers.get("x-api-key"), None);

    for (name, token) in [
        ("signed by another key", &forged),
        ("payload changed", &tampered),
    ] {
        let (status, body) = send(&site, &[("authorization", token)], query.clone()).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["errors"][0]["errorType"], "UnauthorizedException");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "TOKEN_BAD_SIGNATURE",
            "{name}"
        );
    }
    assert_eq!(
        sim.requests().await,
        after.requests,
        "refused tokens never reach the simulator"
    );

    // The edge is the only check here: the simulator matches the issuer, never the signature,
    // and serves the forged token.
    let direct = reqwest::Client::new();
    let (status, body) = post(
        &direct,
        &sim.url("/graphql"),
        &[("authorization", &forged)],
        query,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["getPost"]["author"], "bob");
    assert!(
        !site.edge.log().contains(&valid),
        "tokens never reach the log"
    );
}

/// AppSync takes POST only: Apollo Client's `useGETForHashedQueries` (hash-only GETs once the
/// edge knows the query) works through a site that sends GETs upstream as POST.
#[tokio::test]
async fn apollo_get_for_hashed_queries_reaches_appsync_as_post() {
    let sim = AppSyncSim::start(API_KEY, None).await;
    let extra = format!("upstream-method = \"post\"\n{}", api_key_auth());
    let site = sim.site(&extra).await;
    let before = sim.stats().await;
    let ca = site.edge.dir.path().join("apollo-ca.pem");
    std::fs::write(&ca, site.certs.ca_pem()).unwrap();
    let query = "query GetPost($id: ID!) { getPost(id: $id) { id title } }";
    let run = common::apollo::run(
        "get",
        &site.url(),
        &ca,
        query,
        &json!({ "id": "1" }),
        3,
        &json!({ "x-api-key": API_KEY }),
    )
    .await;
    for r in &run.results {
        assert_eq!(
            r["data"]["getPost"],
            json!({ "id": "1", "title": "First post", "__typename": "Post" }),
            "{run_http:?}",
            run_http = run.http
        );
    }
    // Hash-only GETs were answered 200 (the first one asks for the query; the link then
    // registers it over POST).
    let gets: Vec<&Value> = run
        .http
        .iter()
        .filter(|h| h["method"] == "GET" && h["status"] == 200)
        .collect();
    assert!(!gets.is_empty(), "no GET was served: {:?}", run.http);
    // Nothing is cached here: every answered exchange went to the simulator, as POST.
    let answered = run
        .http
        .iter()
        .filter(|h| h["status"] == 200 && h["codes"] == json!([]))
        .count();
    let after = sim.stats().await;
    assert_eq!(
        after.graphql_requests - before.graphql_requests,
        answered as u64,
        "{:?}",
        run.http
    );
    assert_eq!(
        after.requests - before.requests,
        after.graphql_requests - before.graphql_requests,
        "every request reached the simulator as POST /graphql"
    );
    let forwarded: Value = serde_json::from_str(after.last_body.as_deref().unwrap()).unwrap();
    assert_eq!(forwarded["variables"], json!({ "id": "1" }));
    assert!(forwarded["query"].as_str().unwrap().contains("getPost"));
}
