//! The query cache against a counting upstream (the demo API records every request it gets):
//! hits, key normalization, what is never cached, TTL, stale-while-revalidate, stale-if-error,
//! coalescing and the byte bound.

mod common;

use std::time::Duration;

use common::cache::CachedSites;
use common::{eventually, gql};
use serde_json::{json, Value};

#[tokio::test]
async fn a_repeated_query_is_a_hit_and_never_reaches_the_upstream() {
    let s = CachedSites::start("default-ttl = \"60s\"", "").await;
    let q = "query Get($id: ID!, $n: Int) { getPost(id: $id) { id title } listPosts(limit: $n) { id } }";
    let body = json!({ "query": q, "variables": { "id": "1", "n": 2 } });
    let first = s.send("a.test", body.clone(), &[]).await;
    assert_eq!((first.status, first.x_cache.as_str()), (200, "MISS"));
    assert_eq!(s.upstream_count(), 1);

    let second = s.send("a.test", body.clone(), &[]).await;
    assert_eq!(second.x_cache, "HIT");
    assert_eq!(second.body, first.body);
    assert!(second.age.is_some());
    // Whitespace, comments, unused operations and variable order do not split entries.
    let variant = json!({
        "query": format!("# list\nquery Unused {{ hello }}\n{}", q.replace(' ', "\n  ")),
        "operationName": "Get",
        "variables": { "n": 2, "id": "1" },
    });
    assert_eq!(s.send("a.test", variant, &[]).await.x_cache, "HIT");
    assert_eq!(s.upstream_count(), 1, "the hits never reached the upstream");

    // Different variables, a different operation or another site are other entries.
    let other_vars = json!({ "query": q, "variables": { "id": "2", "n": 2 } });
    assert_eq!(s.send("a.test", other_vars, &[]).await.x_cache, "MISS");
    assert_eq!(s.query("{ hello }").await.x_cache, "MISS");
    assert_eq!(s.send("b.test", body, &[]).await.x_cache, "MISS");
    assert_eq!(s.upstream_count(), 4);
    let m = "graphfront_cache_requests_total{site=\"a\",status=\"hit\"}";
    assert_eq!(s.edge.metric(m).await, 2.0);
}

#[tokio::test]
async fn what_is_never_cached() {
    let s = CachedSites::start("default-ttl = \"60s\"\nmax-entry-size = \"120B\"", "").await;
    type Case = (Value, Vec<(&'static str, &'static str)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            json!({"query": "mutation { touchPost(id: \"1\") { id } }"}),
            vec![],
            "mutation",
        ),
        (
            json!({"query": "{ getPost(id: \"1\") { id nope } }"}),
            vec![],
            "errors",
        ),
        (
            json!({"query": "{ hello }"}),
            vec![("x-demo-response-header", "set-cookie: s=1")],
            "set-cookie",
        ),
        (
            json!({"query": "{ hello }"}),
            vec![("x-demo-response-header", "cache-control: private")],
            "private",
        ),
        (
            json!({"query": "{ hello }"}),
            vec![("x-demo-response-header", "cache-control: no-store")],
            "no-store",
        ),
        (
            json!({"query": "{ hello }"}),
            vec![("x-demo-status", "404")],
            "status",
        ),
        (
            json!({"query": "{ listPosts { id title content author } }"}),
            vec![],
            "body-size",
        ),
    ];
    for (body, headers, reason) in cases {
        let before = s.upstream_count();
        let a = s.send("a.test", body.clone(), &headers).await;
        let b = s.send("a.test", body, &headers).await;
        assert_eq!(
            s.upstream_count(),
            before + 2,
            "{reason}: both requests reach the upstream"
        );
        assert_ne!(b.x_cache, "HIT", "{reason}");
        if a.x_cache == "PASS" {
            assert_eq!(a.reason, reason);
        }
        let passes = format!("graphfront_cache_passes_total{{reason=\"{reason}\",site=\"a\"}}");
        assert!(s.edge.metric(&passes).await >= 2.0, "{passes}");
    }
}

#[tokio::test]
async fn rules_and_cache_control_set_the_ttl_and_kept_headers_survive() {
    let cache = r#"
keep-headers = ["x-trace"]
[[site.cache.rule]]
field = "Query.getPost"
ttl = "60s"
[[site.cache.rule]]
operation = "Short"
ttl = "1s"
"#;
    let s = CachedSites::start(cache, "").await;
    // No rule and no default TTL: not cached.
    assert_eq!(s.query("{ hello }").await.reason, "no-rule");
    let h = [("x-demo-response-header", "x-trace: abc")];
    let miss = s
        .client
        .post(s.edge.url("a.test", "/graphql"))
        .header("content-type", "application/json")
        .header(h[0].0, h[0].1)
        .body(json!({"query": "{ getPost(id: \"3\") { id } }"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(miss.headers()["x-cache"], "MISS");
    let upstream_type = miss.headers()["content-type"].clone();
    let r = s
        .client
        .post(s.edge.url("a.test", "/graphql"))
        .header("content-type", "application/json")
        .body(json!({"query": "{ getPost(id: \"3\") { id } }"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(r.headers()["x-trace"], "abc");
    assert_eq!(
        r.headers()["content-type"],
        upstream_type,
        "the upstream's content type is kept"
    );

    // The overlapping rule with the smaller TTL wins: the entry expires after 1 s.
    let q = "query Short { getPost(id: \"2\") { id } }";
    assert_eq!(s.query(q).await.x_cache, "MISS");
    assert_eq!(s.query(q).await.x_cache, "HIT");
    eventually(Duration::from_secs(5), "entry never expired", async || {
        let a = s.query(q).await;
        if a.x_cache == "MISS" {
            return Ok(());
        }
        Err(a.x_cache)
    })
    .await;
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_once_then_fresh() {
    // The mutation below would purge the entry (invalidation by entity): not here.
    let s = CachedSites::start(
        "default-ttl = \"1s\"\nstale-while-revalidate = \"60s\"\ninvalidate = \"none\"",
        "",
    )
    .await;
    let q = "{ getPost(id: \"1\") { id title version } }";
    assert_eq!(s.query(q).await.x_cache, "MISS");
    // Change the post upstream (through the edge: mutations pass).
    let cached = s.query(q).await;
    assert_eq!(cached.x_cache, "HIT");
    assert_eq!(
        s.query("mutation { touchPost(id: \"1\") { id } }")
            .await
            .status,
        200
    );
    // Past its 1 s TTL (the edge's clock: real time).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.stale_then_refreshed(q, &cached).await;
    let refreshed = "graphfront_cache_refreshes_total{result=\"stored\",site=\"a\"}";
    assert!(s.edge.metric(refreshed).await >= 1.0);
}

#[tokio::test]
async fn stale_if_error_serves_an_expired_entry_when_the_upstream_fails() {
    let s = CachedSites::start("default-ttl = \"1s\"\nstale-if-error = \"60s\"", "").await;
    let q = "{ getPost(id: \"2\") { id title } }";
    let fresh = s.query(q).await;
    assert_eq!(fresh.x_cache, "MISS");
    // Past its 1 s TTL (the edge's clock: real time).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A 5xx from the upstream is replaced by the stale entry.
    let a = s
        .send("a.test", json!({ "query": q }), &[("x-demo-status", "503")])
        .await;
    assert_eq!((a.status, a.x_cache.as_str()), (200, "STALE"));
    assert_eq!(a.body, fresh.body);
    // So is an upstream that is gone.
    s.up.stop();
    let a = s.query(q).await;
    assert_eq!((a.status, a.x_cache.as_str()), (200, "STALE"));
    assert_eq!(a.body, fresh.body);
    // Without a stale entry the failure shows.
    let other = s.query("{ getPost(id: \"3\") { id } }").await;
    assert_eq!(other.status, 502);
}

#[tokio::test]
async fn concurrent_identical_misses_make_one_upstream_request() {
    let s = CachedSites::start("default-ttl = \"60s\"", "").await;
    let q = json!({ "query": "{ slow(ms: 300) }" });
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (client, url, body) = (
                s.client.clone(),
                s.edge.url("a.test", "/graphql"),
                q.to_string(),
            );
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("waited 300 ms"), "{body}");
    }
    assert_eq!(s.upstream_count(), 1);
    assert!(
        s.edge
            .metric("graphfront_cache_coalesced_waits_total")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn the_byte_bound_holds_after_many_inserts() {
    let s = CachedSites::start("default-ttl = \"60s\"", "[cache]\nmax-size = \"16KiB\"").await;
    for i in 0..200 {
        let a = s
            .query(&format!(
                "{{ listPosts(limit: {}) {{ id title content author version }} }}",
                i % 4 + 1
            ))
            .await;
        assert_eq!(a.status, 200);
        let b = s
            .query(&format!(
                "{{ p{i}: getPost(id: \"1\") {{ id title content author version }} }}"
            ))
            .await;
        assert_eq!(b.status, 200);
    }
    let size = s.edge.metric("graphfront_cache_size_bytes").await;
    assert!(size > 0.0 && size <= 16.0 * 1024.0, "size {size}");
    assert!(s.edge.metric("graphfront_cache_evictions_total").await > 0.0);
    let _ = gql;
}

#[tokio::test]
async fn a_client_no_cache_refetches_only_when_the_site_allows_it() {
    let s = CachedSites::start("default-ttl = \"60s\"", "").await;
    let q = json!({ "query": "{ hello }" });
    s.send("a.test", q.clone(), &[]).await;
    let a = s
        .send("a.test", q.clone(), &[("cache-control", "no-cache")])
        .await;
    assert_eq!(a.x_cache, "HIT");
    assert_eq!(s.upstream_count(), 1);

    let allowed =
        CachedSites::start("default-ttl = \"60s\"\nallow-client-no-cache = true", "").await;
    allowed.send("a.test", q.clone(), &[]).await;
    let a = allowed
        .send("a.test", q.clone(), &[("cache-control", "no-cache")])
        .await;
    assert_eq!(a.x_cache, "MISS");
    assert_eq!(allowed.upstream_count(), 2);
    assert_eq!(allowed.send("a.test", q, &[]).await.x_cache, "HIT");
}

#[tokio::test]
async fn responses_the_edge_reads_are_asked_for_unencoded() {
    // A cached query, and a mutation whose response purges: the edge must read both.
    let s = CachedSites::start("default-ttl = \"60s\"", "").await;
    for q in [
        "{ hello }",
        "mutation { createPost(title: \"hi\") { id title } }",
    ] {
        let answer = s
            .send(
                "a.test",
                json!({ "query": q }),
                &[("accept-encoding", "gzip, br")],
            )
            .await;
        assert_eq!(answer.status, 200, "{q}");
        let last = s.up.recorder.requests().pop().unwrap();
        assert!(
            !last.headers.contains_key("accept-encoding"),
            "{q}: {:?}",
            last.headers
        );
    }
}
