//! Isolation, as a property: for random sequences of (site, principal, operation, variables),
//! with per-principal scopes, no response ever reaches a principal other than the one it was
//! made for. The upstream echoes the caller (`whoami` returns its `x-principal` header).

mod common;

use common::cache::CachedSites;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

const PRINCIPALS: [Option<&str>; 4] = [Some("alice"), Some("bob"), Some("carol"), None];
const OPERATIONS: [&str; 3] = [
    "query W($v: Int) { whoami listPosts(limit: $v) { id } }",
    "query { whoami }",
    "query H($v: Int) { hello listPosts(limit: $v) { id } me: whoami }",
];

#[test]
fn no_response_reaches_another_principal() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cache = "default-ttl = \"60s\"\nprincipal-header = \"x-principal\"\n[[site.cache.rule]]\nfield = \"Query.whoami\"\nttl = \"60s\"\nscope = \"principal\"";
    let CachedSites {
        up,
        certs: _certs,
        edge,
        client,
    } = rt.block_on(CachedSites::start(cache, ""));
    let step = (0..2usize, 0..PRINCIPALS.len(), 0..OPERATIONS.len(), 0..3i64);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        ..Config::default()
    });
    let hits = std::cell::Cell::new(0);
    runner
        .run(&proptest::collection::vec(step, 1..16), |steps| {
            rt.block_on(async {
                for (site, who, op, v) in steps {
                    let host = ["a.test", "b.test"][site];
                    let mut req = client
                        .post(edge.url(host, "/graphql"))
                        .header("content-type", "application/json")
                        .body(
                            json!({ "query": OPERATIONS[op], "variables": { "v": v } }).to_string(),
                        );
                    if let Some(p) = PRINCIPALS[who] {
                        req = req.header("x-principal", p);
                    }
                    let r = req
                        .send()
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let x_cache = r
                        .headers()
                        .get("x-cache")
                        .map(|v| v.to_str().unwrap().to_string());
                    let body: Value = r
                        .json()
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let data = &body["data"];
                    let seen = if data.get("me").is_some() {
                        &data["me"]
                    } else {
                        &data["whoami"]
                    };
                    let expected = PRINCIPALS[who].map_or(Value::Null, |p| Value::String(p.into()));
                    prop_assert_eq!(
                        seen,
                        &expected,
                        "{} as {:?}: {}",
                        host,
                        PRINCIPALS[who],
                        body
                    );
                    if PRINCIPALS[who].is_none() {
                        // A per-principal rule never falls back to a public entry.
                        prop_assert_eq!(x_cache.as_deref(), Some("PASS"));
                    }
                    if x_cache.as_deref() == Some("HIT") {
                        hits.set(hits.get() + 1);
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    assert!(
        hits.get() > 20,
        "the property was exercised on cache hits ({})",
        hits.get()
    );
    drop(up);
}
