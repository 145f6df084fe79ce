//! Parse and classify a GraphQL-over-HTTP request (JSON body → selected operation), the work
//! `request_filter` does for every analysed request.
//!
//!   cargo bench --bench graphql
//!
//! Last figures (2026-11-25, this 2-core machine, release): see the closing note of issue 2.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use graphfront::graphql::{analyze, GraphqlRequest};

mod common;
use common::operation;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_classify");
    for (name, size) in [("1KB", 1024), ("10KB", 10 * 1024)] {
        let body = operation(size);
        group.bench_function(name, |b| {
            b.iter(|| {
                let req = GraphqlRequest::from_json(black_box(body.as_bytes())).unwrap();
                analyze(&req.query, req.operation_name.as_deref()).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
