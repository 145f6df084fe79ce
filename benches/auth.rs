//! The auth pre-checks on the request path: an RS256 token verified with its issuer's key
//! already cached, an API key checked, and the limit analysis of a 10 KB operation.
//!
//!   cargo bench --bench auth
//!
//! Last figures (2026-11-25, this 2-core machine, release): see the closing note of issue 6.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use graphfront::auth::check_api_key;
use graphfront::auth::jwt::{verify, IssuerKeys};
use graphfront::config::auth::{ApiKey, Auth, Issuer, JwksSource, JwtMode, JwtSettings};
use graphfront::graphql::{analyze_normalized, GraphqlRequest, Limits};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

mod common;

fn rsa_key() -> EncodingKey {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl");
    EncodingKey::from_rsa_pem(&out.stdout).expect("an RSA key")
}

fn bench_tokens(c: &mut Criterion) {
    // As the edge does when its first issuer is set up: before anything else uses jsonwebtoken.
    graphfront::auth::jwt::install_crypto();
    let key = rsa_key();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let issuer = Arc::new(Issuer {
        mode: JwtMode::Oidc,
        issuer: "https://id.example.com".into(),
        jwks: JwksSource::Url("https://id.example.com/keys".into()),
        client_id: Some(regex::Regex::new("^(?:web)$").unwrap()),
        iat_ttl: None,
        auth_ttl: None,
        groups: Vec::new(),
    });
    let keys = vec![IssuerKeys::with_keys(issuer, &JwkSet { keys: vec![jwk] })];
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "iss": "https://id.example.com", "sub": "alice", "aud": "web",
        "iat": now, "exp": now + 3600, "email": "alice@example.com",
    });
    let header = Header {
        kid: Some("k1".into()),
        ..Header::new(Algorithm::RS256)
    };
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let settings = JwtSettings::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    c.bench_function("auth/rs256_verify_cached_key", |b| {
        b.iter(|| {
            rt.block_on(verify(black_box(&token), &keys, &settings))
                .unwrap()
        })
    });
}

fn bench_api_key(c: &mut Criterion) {
    let mut auth = Auth::default();
    for i in 0..100 {
        let key = format!("da2-benchmarkbenchmark{i:04}");
        auth.api_keys.insert(
            *blake3::hash(key.as_bytes()).as_bytes(),
            ApiKey {
                id: format!("key{i}"),
                expires: None,
            },
        );
    }
    let _: &HashMap<_, _> = &auth.api_keys;
    c.bench_function("auth/api_key_check", |b| {
        b.iter(|| check_api_key(black_box(b"da2-benchmarkbenchmark0042"), &auth).unwrap())
    });
}

fn bench_limits(c: &mut Criterion) {
    let body = common::operation(10 * 1024);
    let limits = Limits {
        max_depth: Some(32),
        max_aliases: Some(1000),
        max_root_fields: Some(1000),
        max_fields: Some(100_000),
        max_directives: Some(10),
        max_tokens: Some(100_000),
        introspection: true,
    };
    c.bench_function("limits/analyse_10KB", |b| {
        b.iter(|| {
            let req = GraphqlRequest::from_json(black_box(body.as_bytes())).unwrap();
            let a = analyze_normalized(&req.query, req.operation_name.as_deref()).unwrap();
            limits.check(&a.complexity).unwrap()
        })
    });
}

criterion_group!(benches, bench_tokens, bench_api_key, bench_limits);
criterion_main!(benches);
