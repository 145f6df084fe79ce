//! Entry points for the fuzz targets (`tests/fuzz`, coverage-guided with libFuzzer) and for
//! their smoke run in the test suite (`tests/fuzz_smoke.rs`). Each takes arbitrary bytes, as a
//! client (or an operator's config file) could send them, and must return without panicking,
//! hanging or growing memory without bound. Not an API: only the fuzzers call these.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::BytesMut;

use crate::auth::jwt::{self, IssuerKeys};
use crate::config::auth::{Issuer, JwksSource, JwtMode, JwtSettings};
use crate::graphql::{self, GraphqlRequest, Limits};
use crate::realtime::stream::{self as websocket, ClientStream, ServerStream, Verdict};

/// The largest document analysed, as the edge caps tokens before parsing.
const MAX_TOKENS: u32 = 20_000;

/// A GraphQL-over-HTTP request: a POST body, or a GET query string, then its document.
pub fn graphql_request(data: &[u8]) {
    if let Ok(req) = GraphqlRequest::from_json(data) {
        document(&req.query, req.operation_name.as_deref());
    }
    if let Ok(qs) = std::str::from_utf8(data) {
        if let Ok(req) = GraphqlRequest::from_query_string(qs) {
            document(&req.query, req.operation_name.as_deref());
        }
    }
}

/// A GraphQL document: the token count, the parse, operation selection, the limits analysis
/// and the canonical print, as the edge runs them on every request.
pub fn graphql_document(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        document(text, None);
        // The canonical print must parse again to the same operation.
        if let Ok(a) = graphql::analyze_normalized(text, None) {
            let printed = a.normalized.split('\n').next().unwrap_or_default();
            if let Ok(again) = graphql::analyze(printed, None) {
                assert_eq!(again.kind, a.op.kind, "{text:?} printed as {printed:?}");
            }
        }
    }
}

fn document(query: &str, operation: Option<&str>) {
    if graphql::count_tokens(query) > MAX_TOKENS {
        return;
    }
    if let Ok(a) = graphql::analyze_normalized(query, operation) {
        let _ = strict().check(&a.complexity);
        let _ = graphql::is_introspection_only(&a.op);
    }
    let _ = graphql::field_names(query);
}

fn strict() -> Limits {
    Limits {
        max_depth: Some(8),
        max_aliases: Some(16),
        max_root_fields: Some(8),
        max_fields: Some(500),
        max_directives: Some(4),
        max_tokens: Some(MAX_TOKENS),
        introspection: false,
    }
}

/// A bearer token: its header and claims decoded before any signature check, then verified
/// against an issuer with an RSA and an EC key.
pub fn jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = jsonwebtoken::decode_header(token);
    let _ = jwt::claimed_issuer(token);
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    });
    let settings = JwtSettings {
        // Unknown key ids never send the fuzzer to the network.
        jwks_refetch_interval: Duration::from_secs(365 * 86400),
        jwks_max_age: Duration::from_secs(365 * 86400),
        ..JwtSettings::default()
    };
    let _ = RUNTIME.block_on(jwt::verify(token, std::slice::from_ref(&ISSUER), &settings));
}

pub const FUZZ_ISSUER: &str = "https://issuer.fuzz.test";

static ISSUER: LazyLock<Arc<IssuerKeys>> = LazyLock::new(|| {
    let issuer = Arc::new(Issuer {
        mode: JwtMode::Oidc,
        issuer: FUZZ_ISSUER.into(),
        jwks: JwksSource::Url("http://127.0.0.1:9/jwks".into()),
        client_id: None,
        iat_ttl: None,
        auth_ttl: None,
        groups: Vec::new(),
    });
    let jwks = serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig", "e": "AQAB",
         "n": "s1Q9WnZTShJmOdjyIE2TC7qq8-_i_-rQiB-Mtiz360do_YetqGWiu0Zeu31XXELuUpMq4jzsdrpm5cgoSb-i6-c4RhscVqC4RzjQpWsApPVy8iIhvA1pTPFfBc9y8zDDGUIl-kq_sj3A_psOh6hLJnF-FzznmhrFsk4q7MTk3XWcDb2ssys46_dK4ccCemM-qg3EVxUDZ0P4x3ZB1Af3blaoBHxatYHxnDEAO1Odf6frSqtAINIl9BCRV8TYKbvS5QupH2bq5lt7x5bAlbD-aU7o3gAIGBMj4GslVNhZwXxWDPcbJoqvtmW6nKGQR7KWXOgZNRs5z7SGg73rtI1jMQ"},
        {"kty": "EC", "kid": "ec", "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": "YPtU1AdhRmUNArdzkBlyr86zRvCQDq2-XdlxJ5rFrJU",
         "y": "vqrFdvUGqUISr7XwS0X8R83iNhYF5BpcRpn8mupRatM"}
    ]});
    let jwks = serde_json::from_value(jwks).expect("a valid JWKS");
    IssuerKeys::with_keys(issuer, &jwks)
});

/// WebSocket bytes from a client (masked frames, fragments, control frames, caps), fed whole
/// and split at the first byte's offset, and from an upstream.
pub fn websocket_frames(data: &[u8]) {
    let limits = websocket::Limits {
        max_frame: 4096,
        max_message: 16 * 1024,
    };
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    for chunks in [&[data][..], &[&data[..split], &data[split..]][..]] {
        let mut client = ClientStream::new(limits);
        let mut out = BytesMut::new();
        for chunk in chunks {
            let fed = client.feed(chunk, &mut out, |text| match text.len() % 3 {
                0 => Verdict::Forward,
                1 => Verdict::Replace(text.chars().rev().collect()),
                _ => Verdict::Drop,
            });
            if fed.is_err() {
                break;
            }
        }
        let mut server = ServerStream::new();
        for chunk in chunks {
            server.feed(chunk);
        }
    }
}

/// A configuration file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::parse(text, std::path::Path::new("/nonexistent"));
    }
}
