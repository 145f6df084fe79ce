//! The validated auth settings of a site. Secrets are read here and kept only as digests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::file::{AuthFile, CognitoFile, OidcFile, SigningFile};
use super::{KeyPath, Validator};

/// An accepted API key (the key itself is not kept: only its blake3 digest).
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub expires: Option<SystemTime>,
}

#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// By blake3 digest of the key.
    pub api_keys: HashMap<[u8; 32], ApiKey>,
    /// Token issuers (OIDC providers and Cognito user pools), matched by `iss`.
    pub issuers: Vec<Arc<Issuer>>,
    pub jwt: JwtSettings,
    /// AWS_IAM pre-check.
    pub iam: Option<IamCheck>,
    /// AWS_LAMBDA over HTTP.
    pub authorizer: Option<Authorizer>,
}

#[derive(Debug, Clone)]
pub struct Authorizer {
    pub url: String,
    pub ttl: Duration,
    pub token_regex: Option<regex::Regex>,
    pub max_cached_verdicts: u64,
}

/// What the SigV4 pre-check requires (the signature itself is the upstream's to verify).
#[derive(Debug, Clone)]
pub struct IamCheck {
    pub region: String,
    pub max_clock_skew: Duration,
}

/// The edge's own credentials for signing upstream requests.
#[derive(Clone)]
pub struct Signing {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: String,
    pub service: String,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret or the token.
        f.debug_struct("Signing")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// The region of an AppSync endpoint host (`<id>.appsync-api.<region>.amazonaws.com`).
pub fn appsync_region(host: &str) -> Option<String> {
    let rest = host
        .split_once(".appsync-api.")
        .or_else(|| host.split_once(".appsync-realtime-api."))?
        .1;
    let region = rest.strip_suffix(".amazonaws.com")?;
    (!region.is_empty() && !region.contains('.')).then(|| region.to_string())
}

/// Which AppSync mode an issuer stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtMode {
    Oidc,
    Cognito,
}

impl JwtMode {
    /// The metric label (`mode`).
    pub fn label(self) -> &'static str {
        match self {
            JwtMode::Oidc => "oidc",
            JwtMode::Cognito => "cognito",
        }
    }
}

/// One trusted token issuer.
#[derive(Debug)]
pub struct Issuer {
    pub mode: JwtMode,
    /// Exactly as tokens carry it in `iss`.
    pub issuer: String,
    pub jwks: JwksSource,
    /// Matched against the whole `aud` (OIDC, Cognito id tokens) or `client_id` (Cognito
    /// access tokens).
    pub client_id: Option<regex::Regex>,
    pub iat_ttl: Option<Duration>,
    pub auth_ttl: Option<Duration>,
    /// Cognito: one of these must be in `cognito:groups` (empty: any).
    pub groups: Vec<String>,
}

/// Where an issuer's signing keys are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS document.
    Url(String),
    /// An OpenID discovery document whose `jwks_uri` names the JWKS.
    Discovery(String),
}

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub leeway: Duration,
    pub max_token_size: usize,
    pub jwks_refetch_interval: Duration,
    pub jwks_max_age: Duration,
}

impl Default for JwtSettings {
    fn default() -> Self {
        let f = super::file::JwtFile::default();
        Self {
            leeway: f.leeway,
            max_token_size: f.max_token_size.as_u64() as usize,
            jwks_refetch_interval: f.jwks_refetch_interval,
            jwks_max_age: f.jwks_max_age,
        }
    }
}

impl Validator<'_> {
    pub(super) fn auth(&mut self, at: KeyPath, f: &AuthFile, upstream_host: &str) -> Auth {
        let mut auth = Auth::default();
        if f.api_keys.is_empty()
            && f.oidc.is_empty()
            && f.cognito.is_empty()
            && f.iam.is_none()
            && f.authorizer.is_none()
        {
            self.problem(
                at.clone(),
                "configure at least one auth mode (api-key, oidc, cognito, iam, authorizer)",
            );
        }
        if let Some(a) = &f.authorizer {
            let aat = at.key("authorizer");
            self.https_url(aat.key("url"), &a.url);
            let token_regex = self.anchored_regex(aat.key("token-regex"), a.token_regex.as_deref());
            if a.ttl > Duration::from_secs(3600) {
                self.problem(aat.key("ttl"), "at most 1h (as AppSync)");
            }
            auth.authorizer = Some(Authorizer {
                url: a.url.clone(),
                ttl: a.ttl,
                token_regex,
                max_cached_verdicts: a.max_cached_verdicts,
            });
        }
        if let Some(iam) = &f.iam {
            match iam.region.clone().or_else(|| appsync_region(upstream_host)) {
                Some(region) => {
                    auth.iam = Some(IamCheck {
                        region,
                        max_clock_skew: iam.max_clock_skew,
                    })
                }
                None => self.problem(
                    at.key("iam").key("region"),
                    "set the region (the upstream is not an AppSync host to take it from)",
                ),
            }
        }
        auth.jwt = JwtSettings {
            leeway: f.jwt.leeway,
            max_token_size: f.jwt.max_token_size.as_u64() as usize,
            jwks_refetch_interval: f.jwt.jwks_refetch_interval,
            jwks_max_age: f.jwt.jwks_max_age,
        };
        if auth.jwt.max_token_size < 512 {
            self.problem(at.key("jwt").key("max-token-size"), "at least 512 bytes");
        }
        for (i, o) in f.oidc.iter().enumerate() {
            if let Some(issuer) = self.oidc(at.key("oidc").index(i), o) {
                auth.issuers.push(Arc::new(issuer));
            }
        }
        for (i, c) in f.cognito.iter().enumerate() {
            if let Some(issuer) = self.cognito(at.key("cognito").index(i), c) {
                auth.issuers.push(Arc::new(issuer));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for issuer in &auth.issuers {
            if !seen.insert(issuer.issuer.clone()) {
                self.problem(
                    at.clone(),
                    format!("the issuer {} is configured twice", issuer.issuer),
                );
            }
        }
        for (i, k) in f.api_keys.iter().enumerate() {
            let kat = at.key("api-key").index(i);
            let secret = match (&k.key, &k.key_file) {
                (Some(key), None) => Some(key.trim().to_string()),
                (None, Some(path)) => {
                    let path = self.resolve(path);
                    match std::fs::read_to_string(&path) {
                        Ok(s) => Some(s.trim().to_string()),
                        Err(e) => {
                            self.problem(kat.key("key-file"), format!("{}: {e}", path.display()));
                            None
                        }
                    }
                }
                _ => {
                    self.problem(kat.clone(), "set exactly one of key or key-file");
                    None
                }
            };
            let expires = match &k.expires {
                None => None,
                Some(text) => match humantime::parse_rfc3339_weak(text) {
                    Ok(t) => Some(t),
                    Err(_) => {
                        self.problem(
                            kat.key("expires"),
                            format!("`{text}` is not an RFC 3339 time like 2027-01-31T00:00:00Z"),
                        );
                        None
                    }
                },
            };
            let Some(secret) = secret else { continue };
            if secret.len() < 16 {
                // Never echo the key: say only what is wrong with it.
                self.problem(kat.key("key"), "an API key must be at least 16 characters");
                continue;
            }
            let digest = *blake3::hash(secret.as_bytes()).as_bytes();
            if auth.api_keys.contains_key(&digest) {
                self.problem(kat.key("key"), "the same key is configured twice");
            }
            auth.api_keys.insert(
                digest,
                ApiKey {
                    id: k.id.clone(),
                    expires,
                },
            );
        }
        auth
    }

    pub(super) fn signing(
        &mut self,
        at: KeyPath,
        f: &SigningFile,
        upstream_host: &str,
    ) -> Option<Signing> {
        let before = self.problems.len();
        let secret = match (&f.secret_access_key, &f.secret_access_key_file) {
            (Some(s), None) => Some(s.trim().to_string()),
            (None, Some(p)) => self.secret_file(at.key("secret-access-key-file"), p),
            _ => {
                self.problem(
                    at.clone(),
                    "set exactly one of secret-access-key or secret-access-key-file",
                );
                None
            }
        };
        let session_token = match &f.session_token_file {
            Some(p) => self.secret_file(at.key("session-token-file"), p),
            None => None,
        };
        let region = f.region.clone().or_else(|| appsync_region(upstream_host));
        if region.is_none() {
            self.problem(
                at.key("region"),
                "set the region (the upstream is not an AppSync host to take it from)",
            );
        }
        if f.access_key_id.trim().is_empty() {
            self.problem(at.key("access-key-id"), "must not be empty");
        }
        (self.problems.len() == before).then(|| Signing {
            access_key_id: f.access_key_id.trim().to_string(),
            secret_access_key: secret.unwrap_or_default(),
            session_token,
            region: region.unwrap_or_default(),
            service: f.service.clone(),
        })
    }

    fn secret_file(&mut self, at: KeyPath, path: &std::path::Path) -> Option<String> {
        let path = self.resolve(path);
        match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Ok(_) => {
                self.problem(at, format!("{} is empty", path.display()));
                None
            }
            Err(e) => {
                self.problem(at, format!("{}: {e}", path.display()));
                None
            }
        }
    }

    fn oidc(&mut self, at: KeyPath, o: &OidcFile) -> Option<Issuer> {
        let before = self.problems.len();
        self.https_url(at.key("issuer"), &o.issuer);
        if let Some(u) = &o.jwks_url {
            self.https_url(at.key("jwks-url"), u);
        }
        let client_id = self.anchored_regex(at.key("client-id"), o.client_id.as_deref());
        (self.problems.len() == before).then(|| Issuer {
            mode: JwtMode::Oidc,
            jwks: match &o.jwks_url {
                Some(u) => JwksSource::Url(u.clone()),
                None => JwksSource::Discovery(format!(
                    "{}/.well-known/openid-configuration",
                    o.issuer.trim_end_matches('/')
                )),
            },
            issuer: o.issuer.clone(),
            client_id,
            iat_ttl: o.iat_ttl,
            auth_ttl: o.auth_ttl,
            groups: Vec::new(),
        })
    }

    fn cognito(&mut self, at: KeyPath, c: &CognitoFile) -> Option<Issuer> {
        let before = self.problems.len();
        let pool = c.user_pool_id.as_str();
        let region = match (&c.region, pool.split_once('_')) {
            (Some(r), _) => r.clone(),
            (None, Some((r, id))) if !r.is_empty() && !id.is_empty() => r.to_string(),
            _ => {
                self.problem(
                    at.key("user-pool-id"),
                    format!("`{pool}` is not a user pool id like eu-west-1_AbCdEf123"),
                );
                String::new()
            }
        };
        let issuer = c
            .issuer
            .clone()
            .unwrap_or_else(|| format!("https://cognito-idp.{region}.amazonaws.com/{pool}"));
        self.https_url(at.key("issuer"), &issuer);
        let client_id = self.anchored_regex(at.key("app-client-id"), c.app_client_id.as_deref());
        (self.problems.len() == before).then(|| Issuer {
            mode: JwtMode::Cognito,
            jwks: JwksSource::Url(format!(
                "{}/.well-known/jwks.json",
                issuer.trim_end_matches('/')
            )),
            issuer,
            client_id,
            iat_ttl: None,
            auth_ttl: None,
            groups: c.groups.clone(),
        })
    }

    fn https_url(&mut self, at: KeyPath, url: &str) {
        let ok = url.starts_with("https://")
            && url
                .parse::<http::Uri>()
                .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
        if !ok {
            self.problem(at, format!("`{url}` is not an https URL"));
        }
    }

    /// A regular expression matched against a whole value (AppSync's client id and token
    /// expressions).
    fn anchored_regex(&mut self, at: KeyPath, pattern: Option<&str>) -> Option<regex::Regex> {
        let pattern = pattern?;
        match regex::Regex::new(&format!("^(?:{pattern})$")) {
            Ok(r) => Some(r),
            Err(e) => {
                self.problem(at, format!("not a regular expression: {e}"));
                None
            }
        }
    }
}
