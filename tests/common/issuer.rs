//! A real token issuer on loopback for the JWT tests: signing keys (RSA, EC) and an HTTPS server
//! publishing an OpenID provider's discovery document and JWKS, and optionally a Cognito pool's
//! JWKS, counting the provider's JWKS fetches.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use graphfront::demo::{self, TestCa};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A signing key and its public JWK.
pub struct SigningKey {
    pub alg: Algorithm,
    pub kid: String,
    pub key: EncodingKey,
    pub jwk: Jwk,
    pub public_pem: Vec<u8>,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl SigningKey {
    pub fn rsa(kid: &str) -> Self {
        Self::rsa_bits(kid, 2048)
    }

    pub fn rsa_bits(kid: &str, bits: u32) -> Self {
        let bits = format!("rsa_keygen_bits:{bits}");
        let private = openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", &bits]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, &private).unwrap();
        let public_pem = openssl(&["pkey", "-in", path.to_str().unwrap(), "-pubout"]);
        Self::new(
            Algorithm::RS256,
            kid,
            EncodingKey::from_rsa_pem(&private).unwrap(),
            public_pem,
        )
    }

    pub fn ec(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate().unwrap();
        Self::new(
            Algorithm::ES256,
            kid,
            EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            pair.public_key_pem().into_bytes(),
        )
    }

    pub fn new(alg: Algorithm, kid: &str, key: EncodingKey, public_pem: Vec<u8>) -> Self {
        let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_id = Some(kid.to_string());
        Self {
            alg,
            kid: kid.to_string(),
            key,
            jwk,
            public_pem,
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(Some(&self.kid), claims)
    }

    pub fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// An OpenID provider (discovery and JWKS at its base URL) and, when given, a Cognito pool
/// (`<base>/<pool>/.well-known/jwks.json`), each with its own keys, on one HTTPS server.
pub struct IssuerServer {
    pub base: String,
    pub keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
    pub task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct IssuerState {
    base: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    pool_keys: Arc<Vec<Jwk>>,
    fetches: Arc<AtomicUsize>,
}

async fn discovery(State(s): State<IssuerState>) -> axum::Json<Value> {
    axum::Json(json!({ "issuer": s.base, "jwks_uri": format!("{}/keys", s.base) }))
}

async fn jwks(State(s): State<IssuerState>) -> axum::Json<JwkSet> {
    s.fetches.fetch_add(1, Ordering::SeqCst);
    axum::Json(JwkSet {
        keys: s.keys.lock().unwrap().clone(),
    })
}

async fn pool_jwks(State(s): State<IssuerState>) -> axum::Json<JwkSet> {
    axum::Json(JwkSet {
        keys: s.pool_keys.to_vec(),
    })
}

impl IssuerServer {
    /// Serve on `https://localhost:<port>` with a certificate from `ca` (a CA the site trusts
    /// through `upstream-ca-file`): the provider's `keys`, and `pool`'s keys when given.
    pub async fn start(ca: &TestCa, keys: Vec<Jwk>, pool: Option<(&str, Vec<Jwk>)>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let (pool, pool_keys) = pool.unwrap_or_default();
        let state = IssuerState {
            base: base.clone(),
            keys: Arc::new(Mutex::new(keys)),
            pool_keys: Arc::new(pool_keys),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let mut router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(jwks));
        if !pool.is_empty() {
            router = router.route(&format!("/{pool}/.well-known/jwks.json"), get(pool_jwks));
        }
        let router = router.with_state(state.clone());
        let (cert, key) = ca.issue(&["localhost"]);
        let tls = demo::tls_server_config(&cert, &key, false).unwrap();
        let task = tokio::spawn(async move {
            let _ = demo::serve(listener, Some(tls), router).await;
        });
        Self {
            base,
            keys: state.keys,
            fetches: state.fetches,
            task,
        }
    }

    /// How many times the provider's JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for IssuerServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Seconds since the Unix epoch, for `iat`, `exp` and `nbf`.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
