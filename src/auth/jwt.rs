//! JWT modes (OPENID_CONNECT, AMAZON_COGNITO_USER_POOLS) with jsonwebtoken: the issuer is
//! chosen by `iss`, the key by `kid` from the issuer's JWKS, and the algorithm is pinned to
//! the key (never `none`, never HMAC: symmetric keys in a JWKS are ignored).
//!
//! Keys are cached per issuer. An unknown `kid` fetches them again, at most once per
//! `jwks-refetch-interval`; keys older than `jwks-max-age` are refreshed in the background
//! while the old ones keep verifying; a failed fetch keeps the last good keys.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::auth::{Issuer, JwksSource, JwtMode, JwtSettings};
use crate::metrics;

/// Why a token was refused: a stable code for the client, a bounded reason for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooLarge,
    Malformed,
    UnknownIssuer,
    UnknownKey,
    KeysUnavailable,
    BadAlgorithm,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    TooOld,
    MissingClaim,
    WrongAudience,
    WrongTokenUse,
    GroupNotAllowed,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::TooLarge => "TOKEN_TOO_LARGE",
            Refusal::Malformed => "TOKEN_MALFORMED",
            Refusal::UnknownIssuer => "TOKEN_UNKNOWN_ISSUER",
            Refusal::UnknownKey => "TOKEN_UNKNOWN_KEY",
            Refusal::KeysUnavailable => "TOKEN_KEYS_UNAVAILABLE",
            Refusal::BadAlgorithm => "TOKEN_BAD_ALGORITHM",
            Refusal::BadSignature => "TOKEN_BAD_SIGNATURE",
            Refusal::Expired => "TOKEN_EXPIRED",
            Refusal::NotYetValid => "TOKEN_NOT_YET_VALID",
            Refusal::IssuedInFuture => "TOKEN_ISSUED_IN_FUTURE",
            Refusal::TooOld => "TOKEN_TOO_OLD",
            Refusal::MissingClaim => "TOKEN_MISSING_CLAIM",
            Refusal::WrongAudience => "TOKEN_WRONG_AUDIENCE",
            Refusal::WrongTokenUse => "TOKEN_WRONG_TOKEN_USE",
            Refusal::GroupNotAllowed => "TOKEN_GROUP_NOT_ALLOWED",
        }
    }

    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::Malformed => "malformed",
            Refusal::UnknownIssuer => "unknown_issuer",
            Refusal::UnknownKey => "unknown_key",
            Refusal::KeysUnavailable => "keys_unavailable",
            Refusal::BadAlgorithm => "bad_algorithm",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::IssuedInFuture => "issued_in_future",
            Refusal::TooOld => "too_old",
            Refusal::MissingClaim => "missing_claim",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::WrongTokenUse => "wrong_token_use",
            Refusal::GroupNotAllowed => "group_not_allowed",
        }
    }

    /// What the client reads (AppSync's wording where it has one).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Expired => "Token has expired.",
            Refusal::TooLarge | Refusal::Malformed => "Unable to parse JWT token.",
            Refusal::KeysUnavailable => "Unable to verify the token right now.",
            _ => "You are not authorized to make this call.",
        }
    }
}

/// A verified token: who it is for and which mode accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub mode: JwtMode,
    /// `jwt:<iss>#<sub>`: distinct across issuers, for cache scopes and logs.
    pub principal: String,
    /// Unix time until which the same token stays acceptable (exp, iat and auth_time TTLs,
    /// leeway included), so its verification can be reused until then.
    pub valid_until: u64,
}

/// How long a verification is reused at most (a key removed from the issuer's JWKS stops
/// being trusted within this).
pub const REUSE_AT_MOST: Duration = Duration::from_secs(600);

/// One verification key and the algorithms it may be used with.
struct Key {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys without a `kid` (usable only when the set holds one key).
    anonymous: Vec<Arc<Key>>,
    fetched: Option<Instant>,
}

/// An issuer with its cached keys.
pub struct IssuerKeys {
    pub issuer: Arc<Issuer>,
    site: String,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// Held while fetching; the time of the last attempt.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

impl IssuerKeys {
    pub fn new(issuer: Arc<Issuer>, site: &str, client: reqwest::Client) -> Arc<Self> {
        install_crypto();
        for result in ["ok", "error"] {
            metrics::get()
                .jwks_fetches
                .with_label_values(&[site, issuer.mode.label(), result]);
        }
        Arc::new(Self {
            issuer,
            site: site.to_string(),
            client,
            keys: RwLock::new(Arc::new(KeySet::default())),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    /// An issuer whose keys are already known (benches and tests; the edge fetches them).
    pub fn with_keys(issuer: Arc<Issuer>, jwks: &JwkSet) -> Arc<Self> {
        let keys = Self::new(issuer, "-", reqwest::Client::new());
        let mut set = KeySet {
            fetched: Some(Instant::now()),
            ..KeySet::default()
        };
        for jwk in &jwks.keys {
            if let (Some(key), Some(kid)) = (verification_key(jwk), &jwk.common.key_id) {
                set.by_kid.insert(kid.clone(), Arc::new(key));
            }
        }
        *keys.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        keys
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn find(set: &KeySet, kid: Option<&str>) -> Option<Arc<Key>> {
        match kid {
            Some(kid) => set.by_kid.get(kid).cloned(),
            None if set.by_kid.len() + set.anonymous.len() == 1 => set
                .anonymous
                .first()
                .or_else(|| set.by_kid.values().next())
                .cloned(),
            None => None,
        }
    }

    /// The key for `kid`, fetching the issuer's keys when they are unknown or stale.
    async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
        s: &JwtSettings,
    ) -> Result<Arc<Key>, Refusal> {
        let set = self.current();
        if let Some(key) = Self::find(&set, kid) {
            if set.fetched.is_some_and(|t| t.elapsed() > s.jwks_max_age) {
                let me = self.clone();
                let interval = s.jwks_refetch_interval;
                tokio::spawn(async move { me.refresh(interval).await });
            }
            return Ok(key);
        }
        self.refresh(s.jwks_refetch_interval).await;
        let set = self.current();
        match Self::find(&set, kid) {
            Some(key) => Ok(key),
            None if set.fetched.is_none() => Err(Refusal::KeysUnavailable),
            None => Err(Refusal::UnknownKey),
        }
    }

    /// Fetch the keys unless another request is fetching or did within `interval`.
    async fn refresh(&self, interval: Duration) {
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        *last = Some(Instant::now());
        let m = metrics::get();
        let mode = self.issuer.mode.label();
        match self.fetch().await {
            Ok(set) => {
                m.jwks_fetches
                    .with_label_values(&[&self.site, mode, "ok"])
                    .inc();
                tracing::info!(site = %self.site, issuer = %self.issuer.issuer, keys = set.by_kid.len() + set.anonymous.len(), "signing keys fetched");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
            }
            Err(e) => {
                m.jwks_fetches
                    .with_label_values(&[&self.site, mode, "error"])
                    .inc();
                tracing::warn!(site = %self.site, issuer = %self.issuer.issuer, error = %e, "cannot fetch signing keys; keeping the last good ones");
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let url = match &self.issuer.jwks {
            JwksSource::Url(u) => u.clone(),
            JwksSource::Discovery(d) => {
                let doc: Discovery = self.get_json(d).await?;
                if !doc.jwks_uri.starts_with("https://") {
                    return Err(format!("jwks_uri `{}` is not https", doc.jwks_uri));
                }
                doc.jwks_uri
            }
        };
        let jwks: JwkSet = self.get_json(&url).await?;
        let mut set = KeySet {
            fetched: Some(Instant::now()),
            ..KeySet::default()
        };
        for jwk in &jwks.keys {
            let Some(key) = verification_key(jwk) else {
                continue;
            };
            match &jwk.common.key_id {
                Some(kid) => {
                    set.by_kid.insert(kid.clone(), Arc::new(key));
                }
                None => set.anonymous.push(Arc::new(key)),
            }
        }
        if set.by_kid.is_empty() && set.anonymous.is_empty() {
            return Err(format!("{url}: no usable signing key"));
        }
        Ok(set)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let r = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url}: status {}", r.status()));
        }
        let body = r.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    }
}

/// The verification key of a JWK and the algorithms it allows: the JWK's own `alg`, or the
/// family of its key type. Symmetric (`oct`) keys are never used.
fn verification_key(jwk: &Jwk) -> Option<Key> {
    if matches!(
        jwk.algorithm,
        AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
    ) {
        return None;
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return None;
    }
    let family = match jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
        AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
        AlgorithmParameters::OctetKeyPair(_) => AlgorithmFamily::Ed,
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        Some(ka) => {
            let alg = Algorithm::try_from(ka).ok()?;
            if alg.family() != family {
                return None;
            }
            vec![alg]
        }
        None => family.algorithms().to_vec(),
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { key, algorithms })
}

/// The claims graphfront reads (standard ones are checked by jsonwebtoken).
#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
    #[serde(default)]
    aud: Option<OneOrMany>,
    iat: Option<f64>,
    auth_time: Option<f64>,
    token_use: Option<String>,
    client_id: Option<String>,
    #[serde(rename = "cognito:groups", default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn any(&self, f: impl Fn(&str) -> bool) -> bool {
        match self {
            OneOrMany::One(s) => f(s),
            OneOrMany::Many(v) => v.iter().any(|s| f(s)),
        }
    }
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

/// jsonwebtoken's RustCrypto provider with RSA signatures verified by ring, the library
/// rustls already brings: an RS256 check costs ~6x less than with the `rsa` crate, and keys
/// under 2048 bits are refused. Everything else (EC, EdDSA, signing) stays RustCrypto's.
/// Installed before any other use of jsonwebtoken in the process (the first use fixes the
/// provider): when the first issuer is set up, and at each verification for safety.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut provider = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.clone();
        provider.verifier_factory = verifier;
        if Box::leak(Box::new(provider)).install_default().is_err() {
            tracing::warn!("jsonwebtoken's crypto provider was fixed before graphfront's: RSA tokens verify with RustCrypto");
        }
    });
}

fn verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn jsonwebtoken::crypto::JwtVerifier>> {
    use ring::signature as rs;
    let params: &'static rs::RsaParameters = match alg {
        Algorithm::RS256 => &rs::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &rs::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &rs::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &rs::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &rs::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &rs::RSA_PSS_2048_8192_SHA512,
        _ => {
            return (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key)
        }
    };
    let key = match key.kind() {
        jsonwebtoken::DecodingKeyKind::RsaModulusExponent { n, e } => RsaKey::Components {
            n: n.clone(),
            e: e.clone(),
        },
        jsonwebtoken::DecodingKeyKind::SecretOrDer(der) => RsaKey::Der(der.clone()),
    };
    Ok(Box::new(RingRsa {
        alg: *alg,
        params,
        key,
    }))
}

enum RsaKey {
    Components {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// PKCS#1 RSAPublicKey.
    Der(Vec<u8>),
}

struct RingRsa {
    alg: Algorithm,
    params: &'static ring::signature::RsaParameters,
    key: RsaKey,
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for RingRsa {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        let ok = match &self.key {
            RsaKey::Components { n, e } => ring::signature::RsaPublicKeyComponents { n, e }
                .verify(self.params, msg, signature)
                .is_ok(),
            RsaKey::Der(der) => ring::signature::UnparsedPublicKey::new(self.params, der)
                .verify(msg, signature)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(jsonwebtoken::signature::Error::new())
        }
    }
}

impl jsonwebtoken::crypto::JwtVerifier for RingRsa {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// The issuer a token claims, read before its signature is checked (only to pick the keys).
pub fn claimed_issuer(token: &str) -> Result<String, Refusal> {
    jsonwebtoken::dangerous::insecure_decode_claims::<Unverified>(token)
        .ok()
        .and_then(|c| c.iss)
        .ok_or(Refusal::Malformed)
}

/// Verify `token` (from `Authorization`, raw or after `Bearer `) against `issuers`.
pub async fn verify(
    token: &str,
    issuers: &[Arc<IssuerKeys>],
    s: &JwtSettings,
) -> Result<Verified, (Option<JwtMode>, Refusal)> {
    install_crypto();
    if token.len() > s.max_token_size {
        return Err((None, Refusal::TooLarge));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| (None, Refusal::Malformed))?;
    let iss = claimed_issuer(token).map_err(|r| (None, r))?;
    let Some(keys) = issuers.iter().find(|i| i.issuer.issuer == iss) else {
        return Err((None, Refusal::UnknownIssuer));
    };
    let issuer = &keys.issuer;
    let fail = |r| (Some(issuer.mode), r);
    let key = keys.key(header.kid.as_deref(), s).await.map_err(fail)?;
    if !key.algorithms.contains(&header.alg) {
        return Err(fail(Refusal::BadAlgorithm));
    }
    let mut v = Validation::new(header.alg);
    v.leeway = s.leeway.as_secs();
    v.validate_nbf = true;
    v.validate_aud = false;
    v.set_issuer(&[&issuer.issuer]);
    v.set_required_spec_claims(&["exp", "iss", "sub"]);
    let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &v)
        .map_err(|e| fail(refusal_of(e.kind())))?
        .claims;
    let now = jsonwebtoken::get_current_timestamp() as f64;
    let leeway = s.leeway.as_secs_f64();
    check_claims(issuer, &claims, now, leeway).map_err(fail)?;
    let horizon = |t: Option<f64>, ttl: Option<Duration>| match (t, ttl) {
        (Some(t), Some(ttl)) => t + ttl.as_secs_f64() + leeway,
        _ => f64::INFINITY,
    };
    let valid_until = [
        claims.exp.map_or(f64::INFINITY, |e| e + leeway),
        horizon(claims.iat, issuer.iat_ttl),
        horizon(claims.auth_time, issuer.auth_ttl),
        now + REUSE_AT_MOST.as_secs_f64(),
    ]
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    let sub = claims.sub.ok_or(fail(Refusal::MissingClaim))?;
    Ok(Verified {
        mode: issuer.mode,
        principal: format!("jwt:{}#{sub}", issuer.issuer),
        valid_until: valid_until.max(0.0) as u64,
    })
}

fn refusal_of(kind: &jsonwebtoken::errors::ErrorKind) -> Refusal {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => Refusal::Expired,
        K::ImmatureSignature => Refusal::NotYetValid,
        K::InvalidSignature => Refusal::BadSignature,
        K::InvalidIssuer => Refusal::UnknownIssuer,
        K::MissingRequiredClaim(_) => Refusal::MissingClaim,
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
            Refusal::BadAlgorithm
        }
        _ => Refusal::Malformed,
    }
}

/// What jsonwebtoken does not check: `iat`, `auth_time`, the client id, Cognito's
/// `token_use` and groups.
fn check_claims(issuer: &Issuer, c: &Claims, now: f64, leeway: f64) -> Result<(), Refusal> {
    if let Some(iat) = c.iat {
        if iat > now + leeway {
            return Err(Refusal::IssuedInFuture);
        }
    }
    let within = |t: Option<f64>, ttl: Option<Duration>| match (t, ttl) {
        (_, None) => Ok(()),
        (None, Some(_)) => Err(Refusal::MissingClaim),
        (Some(t), Some(ttl)) if now - t > ttl.as_secs_f64() + leeway => Err(Refusal::TooOld),
        _ => Ok(()),
    };
    within(c.iat, issuer.iat_ttl)?;
    within(c.auth_time, issuer.auth_ttl)?;
    let client = issuer.client_id.as_ref();
    let aud_matches = |re: &regex::Regex| c.aud.as_ref().is_some_and(|a| a.any(|v| re.is_match(v)));
    match issuer.mode {
        JwtMode::Oidc => {
            if client.is_some_and(|re| !aud_matches(re)) {
                return Err(Refusal::WrongAudience);
            }
        }
        JwtMode::Cognito => {
            let ok = match c.token_use.as_deref() {
                Some("id") => client.is_none_or(aud_matches),
                Some("access") => {
                    client.is_none_or(|re| c.client_id.as_deref().is_some_and(|id| re.is_match(id)))
                }
                _ => return Err(Refusal::WrongTokenUse),
            };
            if !ok {
                return Err(Refusal::WrongAudience);
            }
            if !issuer.groups.is_empty() && !c.groups.iter().any(|g| issuer.groups.contains(g)) {
                return Err(Refusal::GroupNotAllowed);
            }
        }
    }
    Ok(())
}
