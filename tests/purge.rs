//! `POST /admin/purge` against the real binary and a counting upstream: purging everything or a
//! site, soft purges served stale, the token (403 without one configured, 401 without the right
//! one), bad requests, and purges by operation, root field, type and entity (`purges_by_tag_*`,
//! which need entries tagged from their responses).

mod common;

use common::cache::{Answer, CachedSites};
use common::{eventually, https_client, post_gql};
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN: &str = "purge-token-0123456789";

fn with_token() -> String {
    format!("[admin]\ntoken = \"{TOKEN}\"")
}

/// Sites that cache for a minute and serve stale for another while refreshing, with a token.
async fn with_swr() -> CachedSites {
    CachedSites::start(
        "default-ttl = \"60s\"\nstale-while-revalidate = \"60s\"",
        &with_token(),
    )
    .await
}

struct Purged {
    status: u16,
    www_authenticate: Option<String>,
    body: Value,
}

/// Caching entries, purging them through the admin listener, changing the upstream.
impl CachedSites {
    /// Query `q` until it is cached: a MISS, then a HIT.
    async fn cached(&self, host: &str, q: &str) {
        assert_eq!(self.query_on(host, q).await.x_cache, "MISS", "{q}");
        assert_eq!(self.query_on(host, q).await.x_cache, "HIT", "{q}");
    }

    /// POST `body` to the purge endpoint with `authorization` (if any).
    async fn purge_raw(&self, body: String, authorization: Option<&str>) -> Purged {
        let mut req = reqwest::Client::new()
            .post(format!("http://{}/admin/purge", self.edge.admin))
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        let www_authenticate = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        Purged {
            status: r.status().as_u16(),
            www_authenticate,
            body: r.json().await.unwrap_or(Value::Null),
        }
    }

    async fn purge(&self, body: Value) -> Purged {
        let bearer = format!("Bearer {TOKEN}");
        self.purge_raw(body.to_string(), Some(&bearer)).await
    }

    /// GET `/graphql` on `a.test` with `params` in the query string.
    async fn get(&self, params: &[(&str, &str)]) -> Answer {
        let req = self
            .client
            .get(self.edge.url("a.test", "/graphql"))
            .query(params)
            // What Apollo Client sends with a GET, so that CSRF prevention lets it through.
            .header("apollo-require-preflight", "true")
            .header("x-graphfront-cache-debug", "1");
        Answer::read(req.send().await.unwrap()).await
    }

    /// Change post `id` at the upstream directly (not through the edge).
    async fn touch_upstream(&self, id: &str) {
        let client = https_client(self.up.addr, &self.up.ca.ca_pem(), &["localhost"], true);
        let q = format!("mutation {{ touchPost(id: \"{id}\") {{ id }} }}");
        let r = post_gql(&client, &self.up.url("/graphql"), &q)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

const POST1: &str = "query GetPost { getPost(id: \"1\") { id title version } }";
const POST2: &str = "query GetOther { getPost(id: \"2\") { id title } }";
const LIST1: &str = "query List { listPosts(limit: 1) { id title } }";
const HELLO: &str = "{ hello }";

#[tokio::test]
async fn purging_everything_or_a_site_makes_the_next_request_a_miss() {
    let s = CachedSites::start("default-ttl = \"60s\"", &with_token()).await;
    s.cached("a.test", POST1).await;
    s.cached("b.test", POST1).await;
    let before = s.upstream_count();

    let p = s.purge(json!({"all": true})).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body, json!({"purged": 2, "kind": "all", "soft": false}));
    let a = s.query(POST1).await;
    assert_eq!((a.status, a.x_cache.as_str()), (200, "MISS"));
    assert_eq!(
        s.upstream_count(),
        before + 1,
        "the miss reached the upstream"
    );
    assert_eq!(s.query_on("b.test", POST1).await.x_cache, "MISS");
    assert_eq!(s.query(POST1).await.x_cache, "HIT", "stored again");

    // One site: the other keeps its entries.
    s.cached("a.test", HELLO).await;
    let p = s.purge(json!({"site": "a"})).await;
    assert_eq!(p.body, json!({"purged": 2, "kind": "site", "soft": false}));
    assert_eq!(s.query(POST1).await.x_cache, "MISS");
    assert_eq!(s.query(HELLO).await.x_cache, "MISS");
    assert_eq!(s.query_on("b.test", POST1).await.x_cache, "HIT");

    let purges = "graphfront_cache_purges_total{kind=\"all\",mode=\"hard\"}";
    assert_eq!(s.edge.metric(purges).await, 1.0);
    let entries = "graphfront_cache_purged_entries_total{kind=\"all\"}";
    assert_eq!(s.edge.metric(entries).await, 2.0);
    let entries = "graphfront_cache_purged_entries_total{kind=\"site\"}";
    assert_eq!(s.edge.metric(entries).await, 2.0);
    // The other series exist from the start.
    let metrics = s.edge.metrics().await;
    for series in [
        "graphfront_cache_purges_total{kind=\"mutation\",mode=\"soft\"} 0",
        "graphfront_cache_purged_entries_total{kind=\"entity\"} 0",
    ] {
        assert!(metrics.contains(series), "{series}");
    }
}

#[tokio::test]
async fn a_soft_purge_serves_stale_while_the_entry_is_refreshed() {
    let s = with_swr().await;
    s.cached("a.test", POST1).await;
    let cached = s.query(POST1).await;
    s.touch_upstream("1").await;

    let p = s.purge(json!({"site": "a", "soft": true})).await;
    assert_eq!(p.body, json!({"purged": 1, "kind": "site", "soft": true}));
    s.stale_then_refreshed(POST1, &cached).await;
    let soft = "graphfront_cache_purges_total{kind=\"site\",mode=\"soft\"}";
    assert_eq!(s.edge.metric(soft).await, 1.0);
}

#[tokio::test]
async fn purges_without_the_token_are_refused_and_change_nothing() {
    let s = CachedSites::start("default-ttl = \"60s\"", &with_token()).await;
    s.cached("a.test", POST1).await;
    let before = s.upstream_count();
    let body = json!({"all": true}).to_string();
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some(&format!("Bearer {TOKEN}x")[..]),
        Some(&format!("Basic {TOKEN}")[..]),
        Some("Bearer"),
    ] {
        let p = s.purge_raw(body.clone(), auth).await;
        assert_eq!(p.status, 401, "{auth:?}");
        assert!(p.body["error"].is_string(), "{auth:?}: {}", p.body);
        let www = p.www_authenticate.unwrap_or_default();
        assert!(www.starts_with("Bearer"), "{auth:?}: {www}");
    }
    assert_eq!(s.query(POST1).await.x_cache, "HIT");
    assert_eq!(s.upstream_count(), before, "nothing was purged");
    let purges = "graphfront_cache_purges_total{kind=\"all\",mode=\"hard\"}";
    assert_eq!(s.edge.metric(purges).await, 0.0);
    // The scheme is case-insensitive.
    let p = s.purge_raw(body, Some(&format!("bearer {TOKEN}"))).await;
    assert_eq!(p.body["purged"], 1);
}

#[tokio::test]
async fn without_a_configured_token_purges_are_forbidden() {
    let s = CachedSites::start("default-ttl = \"60s\"", "").await;
    s.cached("a.test", POST1).await;
    let before = s.upstream_count();
    for auth in [None, Some("Bearer anything-at-all-0123456789")] {
        let p = s.purge_raw(json!({"all": true}).to_string(), auth).await;
        assert_eq!(p.status, 403);
        assert_eq!(
            p.body,
            json!({"error": "set [admin] token to enable purges"})
        );
    }
    assert_eq!(s.query(POST1).await.x_cache, "HIT");
    assert_eq!(s.upstream_count(), before);
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_json_error() {
    let s = CachedSites::start("default-ttl = \"60s\"", &with_token()).await;
    s.cached("a.test", POST1).await;
    let bearer = format!("Bearer {TOKEN}");
    for (body, status) in [
        ("not json".to_string(), 400),
        ("{\"all\": true".to_string(), 400),
        ("{}".to_string(), 400),
        ("{\"everything\": true}".to_string(), 400),
        ("{\"operation\": \"A\", \"field\": \"b\"}".to_string(), 400),
        ("{\"ids\": [\"1\"]}".to_string(), 400),
        ("{\"all\": true, \"soft\": \"yes\"}".to_string(), 400),
        ("{\"site\": \"nope\"}".to_string(), 404),
        ("{\"site\": \"nope\", \"type\": \"Post\"}".to_string(), 404),
        (
            format!("{{\"all\": true, \"pad\": \"{}\"}}", "x".repeat(70_000)),
            413,
        ),
    ] {
        let p = s.purge_raw(body.clone(), Some(&bearer)).await;
        assert_eq!(
            p.status,
            status,
            "{}: {}",
            &body[..body.len().min(60)],
            p.body
        );
        let error = p.body["error"].as_str().unwrap_or("");
        assert!(!error.is_empty(), "{}", p.body);
    }
    let nope = s.purge(json!({"site": "nope"})).await;
    assert_eq!(nope.body["error"], "no site is named `nope`");
    let get = reqwest::Client::new()
        .get(format!("http://{}/admin/purge", s.edge.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(s.query(POST1).await.x_cache, "HIT", "nothing was purged");
}

// The purges by tag below need entries tagged from their responses (operation name, root
// fields, `__typename`s and entities).

#[tokio::test]
async fn purges_by_tag_operation() {
    let s = CachedSites::start("default-ttl = \"60s\"", &with_token()).await;
    s.cached("a.test", POST1).await;
    s.cached("a.test", LIST1).await;
    s.cached("b.test", POST1).await;
    let p = s.purge(json!({"site": "a", "operation": "GetPost"})).await;
    assert_eq!(
        p.body,
        json!({"purged": 1, "kind": "operation", "soft": false})
    );
    assert_eq!(s.query(POST1).await.x_cache, "MISS");
    assert_eq!(s.query(LIST1).await.x_cache, "HIT");
    assert_eq!(
        s.query_on("b.test", POST1).await.x_cache,
        "HIT",
        "site b kept"
    );
    // Without a site: every site.
    let p = s.purge(json!({"operation": "GetPost"})).await;
    assert_eq!(p.body["purged"], 2);
}

#[tokio::test]
async fn purges_by_tag_field() {
    let s = CachedSites::start("default-ttl = \"60s\"", &with_token()).await;
    s.cached("a.test", POST1).await;
    s.cached("a.test", POST2).await;
    s.cached("a.test", LIST1).await;
    let p = s.purge(json!({"site": "a", "field": "getPost"})).await;
    assert_eq!(p.body, json!({"purged": 2, "kind": "field", "soft": false}));
    assert_eq!(s.query(POST1).await.x_cache, "MISS");
    assert_eq!(s.query(POST2).await.x_cache, "MISS");
    assert_eq!(s.query(LIST1).await.x_cache, "HIT");
    // `Query.` as in cache rules.
    let p = s.purge(json!({"field": "Query.listPosts"})).await;
    assert_eq!(p.body["purged"], 1);
}

#[tokio::test]
async fn purges_by_tag_type() {
    let s = CachedSites::start("default-ttl = \"60s\"", &with_token()).await;
    s.cached("a.test", POST1).await;
    s.cached("a.test", LIST1).await;
    s.cached("a.test", HELLO).await;
    let p = s.purge(json!({"type": "Post", "soft": true})).await;
    assert_eq!(p.body, json!({"purged": 2, "kind": "type", "soft": true}));
    // Soft, without stale-while-revalidate: fetched again at once.
    assert_eq!(s.query(POST1).await.x_cache, "MISS");
    assert_eq!(s.query(LIST1).await.x_cache, "MISS");
    assert_eq!(s.query(HELLO).await.x_cache, "HIT");
}

#[tokio::test]
async fn purges_by_tag_entity() {
    let s = CachedSites::start("default-ttl = \"60s\"", &with_token()).await;
    s.cached("a.test", POST1).await;
    s.cached("a.test", POST2).await;
    s.cached("a.test", LIST1).await;
    let p = s
        .purge(json!({"site": "a", "type": "Post", "ids": ["1"]}))
        .await;
    assert_eq!(
        p.body,
        json!({"purged": 2, "kind": "entity", "soft": false})
    );
    assert_eq!(s.query(POST1).await.x_cache, "MISS");
    assert_eq!(s.query(LIST1).await.x_cache, "MISS", "it holds Post 1");
    assert_eq!(s.query(POST2).await.x_cache, "HIT");
    let p = s.purge(json!({"type": "Post", "ids": [2, "3"]})).await;
    assert_eq!(p.body["purged"], 1);
    let entity = "graphfront_cache_purged_entries_total{kind=\"entity\"}";
    assert_eq!(s.edge.metric(entity).await, 3.0);
}

#[tokio::test]
async fn a_get_refreshed_in_the_background_keeps_the_entity_its_variables_name() {
    let s = with_swr().await;
    // The client selects no `id`: only the variables in the query string name Post 1.
    let params = [
        (
            "query",
            "query GetPost($id: ID!) { getPost(id: $id) { title version } }",
        ),
        ("variables", r#"{"id":"1"}"#),
    ];
    let first = s.get(&params).await;
    assert_eq!(
        (first.status, first.x_cache.as_str()),
        (200, "MISS"),
        "{}",
        first.body
    );
    assert_eq!(s.get(&params).await.x_cache, "HIT");
    s.touch_upstream("1").await;
    let p = s.purge(json!({"site": "a", "soft": true})).await;
    assert_eq!(p.body["purged"], 1);

    common::cache::stale_then_refreshed(|| s.get(&params), &first).await;

    // The refreshed entry is tagged with Post 1 from the GET's variables.
    let p = s.purge(json!({"type": "Post", "ids": ["1"]})).await;
    assert_eq!(
        p.body,
        json!({"purged": 1, "kind": "entity", "soft": false})
    );
    assert_eq!(s.get(&params).await.x_cache, "MISS");
}

#[tokio::test]
async fn an_entry_purged_during_a_fetch_does_not_stand_in_for_its_failure() {
    let s = CachedSites::start(
        "default-ttl = \"1s\"\nstale-if-error = \"60s\"",
        &with_token(),
    )
    .await;
    let q = json!({ "query": "{ slow(ms: 800) }" });
    assert_eq!(s.send("a.test", q.clone(), &[]).await.x_cache, "MISS");
    // Past its TTL, within stale-if-error: a failing fetch would be answered with it...
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let failing = s.send("a.test", q.clone(), &[("x-demo-status", "503")]);
    // ...but it is hard-purged once that fetch reached the upstream, which then fails.
    let purge = async {
        let what = "the fetch never reached the upstream";
        eventually(Duration::from_secs(10), what, async || {
            match s.upstream_count() {
                n if n >= 2 => Ok(()),
                n => Err(format!("{n} upstream requests")),
            }
        })
        .await;
        s.purge(json!({ "site": "a" })).await
    };
    let (answer, purged) = tokio::join!(failing, purge);
    assert_eq!(purged.body["purged"], 1);
    assert_eq!((answer.status, answer.x_cache.as_str()), (503, "PASS"));
}
