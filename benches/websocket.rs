//! The realtime hot path: the client → upstream decoder on AppSync `start` messages (each text
//! message unmasked, validated, judged and re-masked), and the upstream → client counter.
//!
//!   cargo bench --bench websocket
//!
//! Last figures (2026-11-25, this 2-core machine, bench profile, 64 starts of ~0.9 KB): client
//! forward 9.0 µs (6.1 GiB/s) in 1460 B or 16 KiB chunks, client replace 22 µs (2.5 GiB/s),
//! server count 1.2 µs.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use graphfront::realtime::frame::text_frame;
use graphfront::realtime::stream::{ClientStream, Limits, ServerStream, Verdict};

const LIMITS: Limits = Limits {
    max_frame: 1 << 20,
    max_message: 1 << 20,
};

/// 64 AppSync `start` messages of about 1 KB each, as the client sends them (masked).
fn starts(masked: bool) -> Vec<u8> {
    let data = format!(
        r#"{{\"query\":\"subscription {{ onPost {{ {} }} }}\"}}"#,
        "id title ".repeat(80)
    );
    (0..64)
        .flat_map(|i| {
            let message = format!(
                r#"{{"type":"start","id":"{i}","payload":{{"data":"{data}","extensions":{{"authorization":{{"host":"api.example.com","x-api-key":"da2-xxxxxxxxxxxxxxxxxxxxxxxxxx"}}}}}}}}"#
            );
            text_frame(&message, masked).to_vec()
        })
        .collect()
}

fn client(c: &mut Criterion) {
    let input = starts(true);
    let mut group = c.benchmark_group("websocket");
    group.throughput(Throughput::Bytes(input.len() as u64));
    for chunk in [1460, 16 * 1024] {
        group.bench_function(format!("client forward, {chunk} B chunks"), |b| {
            let mut out = BytesMut::with_capacity(input.len());
            b.iter(|| {
                let mut stream = ClientStream::new(LIMITS);
                out.clear();
                for part in input.chunks(chunk) {
                    let forward = |t: &str| {
                        black_box(t);
                        Verdict::Forward
                    };
                    stream.feed(part, &mut out, forward).unwrap();
                }
                black_box(&out);
            })
        });
    }
    group.bench_function("client replace", |b| {
        let mut out = BytesMut::with_capacity(input.len());
        b.iter(|| {
            let mut stream = ClientStream::new(LIMITS);
            out.clear();
            for part in input.chunks(16 * 1024) {
                stream
                    .feed(part, &mut out, |t| Verdict::Replace(t.to_owned()))
                    .unwrap();
            }
            black_box(&out);
        })
    });
    let server = starts(false);
    group.bench_function("server count", |b| {
        b.iter(|| {
            let mut stream = ServerStream::new();
            let n: u64 = server
                .chunks(16 * 1024)
                .map(|p| stream.feed(p).messages)
                .sum();
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, client);
criterion_main!(benches);
