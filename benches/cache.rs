//! The cache's hot paths: normalize + key a 2 KB operation with variables (the work of a first
//! request), the raw-request hash that lets repeated requests skip it, a hit lookup, and the
//! tagging of a 10 KB response.
//!
//!   cargo bench --bench cache
//!
//! Last figures (2026-12-01, a slow day on this machine: compare.sh's hits cost 3.3x the CPU
//! they did on 2026-11-25): tag_and_strip/10KB 101 us, tag_only/10KB 115 us,
//! prepare_document/typename_injection 7.2 us. The key and lookup rows: the closing note of
//! issue 4.

use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use graphfront::cache::key::{digest, document_key, raw_key, response_key};
use graphfront::cache::{tags, Analysed, Lookup, ResponseCache};
use graphfront::config::cache::Scope;
use graphfront::graphql::{analyze_normalized, GraphqlRequest};

fn operation(target: usize) -> String {
    let mut q = String::from(
        "query Feed($id: ID!, $limit: Int, $after: String) {\n  getPost(id: $id) { ...P }\n",
    );
    let mut i = 0;
    while q.len() < target - 120 {
        q += &format!(
            "  l{i}: listPosts(limit: $limit) {{ id title ... on Post {{ author }} ...P }}\n"
        );
        i += 1;
    }
    q += "}\nfragment P on Post { id title content version }\n";
    serde_json::json!({
        "query": q,
        "operationName": "Feed",
        "variables": { "limit": 10, "id": "1", "after": "cursor-123", "filter": { "b": [1, 2], "a": true } },
    })
    .to_string()
}

fn bench(c: &mut Criterion) {
    let body = operation(2048);
    // A document seen for the first time: parse, select, re-print, hash.
    c.bench_function("normalize_and_key/2KB/first-sight", |b| {
        b.iter(|| {
            let req = GraphqlRequest::from_json(black_box(body.as_bytes())).unwrap();
            let a = analyze_normalized(&req.query, req.operation_name.as_deref()).unwrap();
            response_key(
                0,
                &digest(&a.normalized),
                req.variables.as_ref(),
                Scope::Public,
                None,
            )
        })
    });
    // A known document with (possibly new) variables: the analysed document is memoized.
    let cache = Arc::new(ResponseCache::new(64 << 20));
    {
        let req = GraphqlRequest::from_json(body.as_bytes()).unwrap();
        let a = analyze_normalized(&req.query, req.operation_name.as_deref()).unwrap();
        let doc = Arc::new(Analysed {
            op: a.op,
            normalized: digest(&a.normalized),
            complexity: a.complexity,
        });
        cache.remember_document(document_key(&req.query, req.operation_name.as_deref()), doc);
    }
    c.bench_function("normalize_and_key/2KB/known-document", |b| {
        b.iter(|| {
            let req = GraphqlRequest::from_json(black_box(body.as_bytes())).unwrap();
            let doc = cache
                .document(&document_key(&req.query, req.operation_name.as_deref()))
                .unwrap();
            response_key(
                0,
                &doc.normalized,
                req.variables.as_ref(),
                Scope::Public,
                None,
            )
        })
    });
    c.bench_function("raw_key/2KB", |b| {
        b.iter(|| raw_key(0, b"POST", Some(b"token"), black_box(body.as_bytes())))
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = Arc::new(ResponseCache::new(64 << 20));
    let key = [7u8; 32];
    cache.insert_for_bench(
        key,
        bytes::Bytes::from_static(br#"{"data":{"hello":"world"}}"#),
    );
    c.bench_function("lookup_hit", |b| {
        b.iter(|| {
            rt.block_on(async {
                match cache.lookup(black_box(&key), Duration::from_secs(1)).await {
                    Lookup::Hit(e, _) => e.body.len(),
                    _ => unreachable!("the entry is fresh"),
                }
            })
        })
    });
}

/// A `listPosts` response of about 10 KB whose objects name their type under `typename`.
fn posts_response(typename: &str) -> String {
    let mut posts = Vec::new();
    let mut i = 0;
    loop {
        let post = serde_json::json!({
            typename: "Post", "id": i.to_string(), "title": format!("Post number {i}"),
            "author": {typename: "User", "id": (i % 7).to_string(), "name": "Alice"},
            "comments": [{typename: "Comment", "id": format!("c{i}"), "text": "Nice one"}],
        });
        posts.push(post);
        i += 1;
        let body = serde_json::json!({"data": {"listPosts": posts}}).to_string();
        if body.len() >= 10 * 1024 {
            return body;
        }
    }
}

/// Tagging a 10 KB response: read the types and entities, remove the edge's `__typename`
/// field, write it again (what the edge does to each cached miss).
fn tagging(c: &mut Criterion) {
    let query = "query Feed { listPosts { id title author { id name } comments { id text } } }";
    let typed = tags::prepare(query, None).expect("a valid document");
    let body = posts_response(tags::TYPENAME_ALIAS);
    let key_fields = std::collections::HashMap::new();
    c.bench_function("tag_and_strip/10KB", |b| {
        b.iter(|| {
            tags::process(black_box(body.as_bytes()), &typed, &|| None, &key_fields)
                .unwrap()
                .tags
        })
    });
    // The client asked for every `__typename`: tagged only, the body stays as it came.
    let asked = "query Feed { listPosts { __typename id title author { __typename id name } \
                 comments { __typename id text } } }";
    let asked = tags::prepare(asked, None).expect("a valid document");
    assert!(!asked.strips());
    let body = posts_response("__typename");
    c.bench_function("tag_only/10KB", |b| {
        b.iter(|| {
            tags::process(black_box(body.as_bytes()), &asked, &|| None, &key_fields)
                .unwrap()
                .tags
        })
    });
    c.bench_function("prepare_document/typename_injection", |b| {
        b.iter(|| tags::prepare(black_box(query), None).unwrap())
    });
}

criterion_group!(benches, bench, tagging);
criterion_main!(benches);
