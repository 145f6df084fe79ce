//! Automatic persisted queries through the real binary, against the demo API recording what it
//! receives: registration, hits, unknown hashes, hash mismatches, GET with only the hash (and
//! cached), a site with APQ off, and Apollo Client's persisted-queries link
//! (`tests/js/apq-client.js`) as the client.

mod common;

use common::apollo::ApolloRun;
use common::{header, ApiSite, Edge, SiteCerts, Upstream};
use serde_json::{json, Value};

const QUERY: &str = "query GetPost($id: ID!) { getPost(id: $id) { id title } }";

struct Setup {
    up: Upstream,
    certs: SiteCerts,
    edge: Edge,
    client: reqwest::Client,
}

/// Site `api` on `api.test` with `extra` appended to its table.
async fn setup(extra: &str) -> Setup {
    let up = Upstream::start(true).await;
    let ApiSite {
        certs,
        edge,
        client,
    } = ApiSite::start(&up, SiteCerts::new(), extra).await;
    Setup {
        up,
        certs,
        edge,
        client,
    }
}

struct Answer {
    status: u16,
    x_cache: String,
    cache_control: String,
    body: Value,
}

async fn answer(r: reqwest::Response) -> Answer {
    Answer {
        status: r.status().as_u16(),
        x_cache: header(&r, "x-cache"),
        cache_control: header(&r, "cache-control"),
        body: r.json().await.unwrap_or(Value::Null),
    }
}

impl Setup {
    async fn post(&self, body: Value) -> Answer {
        let r = self
            .client
            .post(self.edge.url("api.test", "/graphql"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    /// GET with these parameters (`variables` and `extensions` as JSON text), as Apollo Client
    /// sends it (with `content-type: application/json`, which CSRF prevention accepts).
    async fn get(&self, params: &[(&str, String)]) -> Answer {
        let r = self
            .client
            .get(self.edge.url("api.test", "/graphql"))
            .query(params)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    async fn apq_metric(&self, outcome: &str) -> f64 {
        let series = format!("graphfront_apq_requests_total{{outcome=\"{outcome}\",site=\"api\"}}");
        self.edge.metric(&series).await
    }

    /// The request the upstream received `i`-th, as GraphQL parameters (JSON body or GET
    /// query string), the query [`bare`].
    fn upstream_request(&self, i: usize) -> (String, Value) {
        let r = &self.up.recorder.requests()[i];
        let params = if r.method == "GET" {
            let qs = r.uri.split_once('?').map_or("", |(_, q)| q);
            let mut v = json!({});
            for (k, val) in form_urlencoded::parse(qs.as_bytes()) {
                v[k.as_ref()] = match k.as_ref() {
                    "variables" | "extensions" => serde_json::from_str(&val).unwrap(),
                    _ => Value::String(val.into_owned()),
                };
            }
            v
        } else {
            serde_json::from_slice(&r.body).unwrap()
        };
        let mut params: Value = params;
        if params["query"].is_string() {
            params["query"] = bare(&params["query"]).into();
        }
        (r.method.clone(), params)
    }
}

fn sha256(text: &str) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A document without whitespace, `__typename` (which Apollo Client adds) and the edge's own
/// `graphfront__typename: __typename` (added for cache tags on sites that cache), to compare
/// what the upstream got.
fn bare(query: &Value) -> String {
    query
        .as_str()
        .unwrap_or_else(|| panic!("no query: {query}"))
        .replace("graphfront__typename: __typename", "")
        .replace("__typename", "")
        .split_whitespace()
        .collect()
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

fn code(a: &Answer) -> &str {
    a.body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn an_unknown_hash_asks_for_the_query_without_calling_the_upstream() {
    let s = setup("").await;
    let a = s
        .post(json!({ "variables": { "id": "1" }, "extensions": persisted(&sha256(QUERY)) }))
        .await;
    assert_eq!(a.status, 200);
    // Exactly what Apollo's clients look for (message or code), in Apollo's shape.
    assert_eq!(
        a.body,
        json!({"errors":[{"message":"PersistedQueryNotFound","extensions":{"code":"PERSISTED_QUERY_NOT_FOUND"}}]})
    );
    assert_eq!(a.cache_control, "no-store");
    assert_eq!(s.up.recorder.count(), 0);
    assert_eq!(s.apq_metric("miss").await, 1.0);
    assert_eq!(s.apq_metric("hit").await, 0.0, "pre-created at 0");
}

#[tokio::test]
async fn a_registered_query_is_expanded_for_the_upstream() {
    let s = setup("").await;
    let hash = sha256(QUERY);
    let vars = json!({ "id": "1" });
    let register = json!({
        "query": QUERY, "operationName": "GetPost", "variables": vars,
        "extensions": persisted(&hash),
    });
    let first = s.post(register).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["data"]["getPost"]["id"], "1");

    let hash_only =
        json!({ "operationName": "GetPost", "variables": vars, "extensions": persisted(&hash) });
    let second = s.post(hash_only).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body);

    // Both times the upstream got the full document, operationName and variables, and no
    // trace of the protocol.
    assert_eq!(s.up.recorder.count(), 2);
    let expected =
        json!({ "query": bare(&QUERY.into()), "operationName": "GetPost", "variables": vars });
    for i in 0..2 {
        assert_eq!(
            s.upstream_request(i),
            ("POST".to_string(), expected.clone())
        );
    }
    for (outcome, n) in [
        ("registered", 1.0),
        ("hit", 1.0),
        ("miss", 0.0),
        ("mismatch", 0.0),
    ] {
        assert_eq!(s.apq_metric(outcome).await, n, "{outcome}");
    }
}

#[tokio::test]
async fn a_query_that_does_not_match_its_hash_is_refused_and_not_stored() {
    let s = setup("").await;
    let wrong = sha256("{ hello }");
    let a = s
        .post(
            json!({ "query": QUERY, "variables": { "id": "1" }, "extensions": persisted(&wrong) }),
        )
        .await;
    assert_eq!((a.status, code(&a)), (400, "PERSISTED_QUERY_HASH_MISMATCH"));
    assert_eq!(a.body["errors"][0]["errorType"], "BadRequestException");
    let unknown_version = s
        .post(json!({ "query": QUERY, "extensions": { "persistedQuery": { "version": 2, "sha256Hash": sha256(QUERY) } } }))
        .await;
    assert_eq!(
        (unknown_version.status, code(&unknown_version)),
        (400, "PERSISTED_QUERY_VERSION_NOT_SUPPORTED")
    );
    assert_eq!(s.up.recorder.count(), 0);
    // Neither hash was stored.
    for hash in [wrong, sha256(QUERY)] {
        let a = s.post(json!({ "extensions": persisted(&hash) })).await;
        assert_eq!(code(&a), "PERSISTED_QUERY_NOT_FOUND");
    }
    assert_eq!(s.apq_metric("mismatch").await, 1.0);
}

#[tokio::test]
async fn get_with_only_the_hash_is_expanded_and_cached() {
    let s = setup("[site.cache]\ndefault-ttl = \"60s\"\n").await;
    let hash = sha256(QUERY);
    let ext = persisted(&hash).to_string();
    let hash_only = |id: &str| {
        vec![
            ("operationName", "GetPost".to_string()),
            ("variables", json!({ "id": id }).to_string()),
            ("extensions", ext.clone()),
        ]
    };
    let unknown = s.get(&hash_only("1")).await;
    assert_eq!(
        (unknown.status, code(&unknown)),
        (200, "PERSISTED_QUERY_NOT_FOUND")
    );

    let mut register = hash_only("1");
    register.push(("query", QUERY.to_string()));
    let registered = s.get(&register).await;
    assert_eq!(
        (registered.status, registered.x_cache.as_str()),
        (200, "MISS")
    );

    let miss = s.get(&hash_only("2")).await;
    assert_eq!((miss.status, miss.x_cache.as_str()), (200, "MISS"));
    assert_eq!(miss.body["data"]["getPost"]["id"], "2");
    let hit = s.get(&hash_only("2")).await;
    assert_eq!(hit.x_cache, "HIT");
    assert_eq!(hit.body, miss.body);

    assert_eq!(
        s.up.recorder.count(),
        2,
        "the hit never reached the upstream"
    );
    for (i, id) in [(0, "1"), (1, "2")] {
        let expected = json!({
            "query": bare(&QUERY.into()), "operationName": "GetPost", "variables": { "id": id },
        });
        assert_eq!(s.upstream_request(i), ("GET".to_string(), expected));
    }
}

#[tokio::test]
async fn a_site_with_apq_off_says_persisted_queries_are_not_supported() {
    let s = setup("[site.apq]\nenabled = false\n").await;
    let hash = sha256(QUERY);
    let a = s
        .post(json!({ "variables": { "id": "1" }, "extensions": persisted(&hash) }))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body,
        json!({"errors":[{"message":"PersistedQueryNotSupported","extensions":{"code":"PERSISTED_QUERY_NOT_SUPPORTED"}}]})
    );
    assert_eq!(s.up.recorder.count(), 0);
    // With the query, the request is forwarded as it came (the upstream may speak APQ itself).
    let body =
        json!({ "query": QUERY, "variables": { "id": "1" }, "extensions": persisted(&hash) });
    let full = s.post(body.clone()).await;
    assert_eq!(full.body["data"]["getPost"]["id"], "1", "{}", full.body);
    let mut forwarded = body;
    forwarded["query"] = bare(&forwarded["query"]).into();
    assert_eq!(s.upstream_request(0).1, forwarded);
    let metrics = s.edge.metrics().await;
    assert!(!metrics.contains("graphfront_apq_requests_total{outcome=\"hit\",site=\"api\"}"));
}

/// Run Apollo Client (`mode`: post, or get for `useGETForHashedQueries`) `times` times with
/// `QUERY` against the site.
async fn apollo_client(s: &Setup, mode: &str, times: usize) -> ApolloRun {
    let ca = s.edge.dir.path().join("apq-client-ca.pem");
    std::fs::write(&ca, s.certs.ca_pem()).unwrap();
    let url = s.edge.url("api.test", "/graphql");
    let vars = json!({ "id": "1" });
    common::apollo::run(mode, &url, &ca, QUERY, &vars, times, &json!({})).await
}

#[tokio::test]
async fn apollo_clients_persisted_queries_link_registers_then_sends_hashes() {
    let s = setup("").await;
    let run = apollo_client(&s, "post", 3).await;
    let shape = |h: &Value| {
        (
            h["method"].as_str().unwrap().to_string(),
            h["query"].is_string(),
            h["hash"].is_string(),
            h["status"].as_u64().unwrap(),
            h["codes"].clone(),
        )
    };
    let seen: Vec<_> = run.http.iter().map(shape).collect();
    let ok = json!([]);
    let not_found = json!(["PERSISTED_QUERY_NOT_FOUND"]);
    let post = || "POST".to_string();
    assert_eq!(
        seen,
        [
            (post(), false, true, 200, not_found),  // hash only: unknown
            (post(), true, true, 200, ok.clone()),  // the link retries with the query: registered
            (post(), false, true, 200, ok.clone()), // hash only: a hit
            (post(), false, true, 200, ok),
        ],
        "{:#?}",
        run.http
    );
    for r in &run.results {
        assert_eq!(r["data"]["getPost"]["id"], "1", "{r}");
    }
    // The upstream got the document the client registered (Apollo prints it, `__typename`s
    // added) each time, never the protocol.
    let sent = run.http[1]["query"].as_str().unwrap();
    assert_eq!(run.http[1]["hash"], sha256(sent));
    assert_eq!(s.up.recorder.count(), 3);
    for i in 0..3 {
        let (method, params) = s.upstream_request(i);
        assert_eq!(
            (method.as_str(), &params["query"]),
            ("POST", &bare(&sent.into()).into())
        );
        assert_eq!(params["variables"], json!({ "id": "1" }));
        assert!(
            params["extensions"].get("persistedQuery").is_none(),
            "{params}"
        );
    }
    assert_eq!(s.apq_metric("hit").await, 2.0);
}

#[tokio::test]
async fn apollo_clients_hashed_gets_are_answered_from_the_cache() {
    let s = setup("[site.cache]\ndefault-ttl = \"60s\"\n").await;
    let run = apollo_client(&s, "get", 3).await;
    let seen: Vec<_> = run
        .http
        .iter()
        .map(|h| {
            (
                h["method"].as_str().unwrap().to_string(),
                h["query"].is_string(),
                h["codes"].clone(),
            )
        })
        .collect();
    let ok = json!([]);
    assert_eq!(
        seen,
        [
            ("GET".into(), false, json!(["PERSISTED_QUERY_NOT_FOUND"])),
            ("POST".into(), true, ok.clone()), // the retry with the query is always a POST
            ("GET".into(), false, ok.clone()),
            ("GET".into(), false, ok),
        ],
        "{:#?}",
        run.http
    );
    assert_eq!(run.http[1]["xCache"], "MISS");
    // The POST filled the entry the hashed GETs are answered from.
    assert_eq!(run.http[2]["xCache"], "HIT");
    assert_eq!(run.http[3]["xCache"], "HIT");
    assert_eq!(s.up.recorder.count(), 1);
    let (method, params) = s.upstream_request(0);
    assert_eq!(method, "POST");
    assert_eq!(params["query"], bare(&run.http[1]["query"]));
}
