//! `[site.auth]`: who may call a site (AppSync's auth modes: API keys, OIDC and Cognito tokens,
//! IAM, a Lambda-style authorizer) as written in the file and validated. Secrets are read here
//! and kept only as digests.

mod jwt;
mod signing;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

pub use jwt::{Issuer, JwksSource, JwtMode, JwtSettings};
pub use signing::Signing;
pub(super) use signing::SigningFile;

use super::value::SecretFile;
use super::{KeyPath, Validator};
use jwt::{CognitoFile, JwtFile, OidcFile};

/// `[site.auth]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthFile {
    /// API keys accepted in `x-api-key` (AppSync's API_KEY mode).
    #[serde(rename = "api-key")]
    pub api_keys: Vec<ApiKeyFile>,
    /// OpenID Connect issuers whose tokens are accepted (AppSync's OPENID_CONNECT mode).
    pub oidc: Vec<OidcFile>,
    /// Cognito user pools whose tokens are accepted (AMAZON_COGNITO_USER_POOLS).
    pub cognito: Vec<CognitoFile>,
    /// How tokens of both JWT modes are checked.
    pub jwt: JwtFile,
    /// AWS_IAM: a SigV4 pre-check; the request is forwarded as signed.
    pub iam: Option<IamFile>,
    /// AWS_LAMBDA over HTTP: an authorizer service decides on the token.
    pub authorizer: Option<AuthorizerFile>,
}

/// One `[[site.auth.api-key]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiKeyFile {
    /// A name for the key: the principal of per-principal cache scopes and what logs show
    /// (never the key itself).
    pub id: String,
    /// The key. Prefer `key-file` to keep it out of this file.
    #[serde(default)]
    pub key: Option<String>,
    /// A file holding the key (surrounding whitespace ignored).
    #[serde(default)]
    pub key_file: Option<SecretFile>,
    /// When the key stops being accepted (RFC 3339, e.g. "2027-01-31T00:00:00Z").
    #[serde(default)]
    pub expires: Option<String>,
}

/// `[site.auth.iam]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct IamFile {
    /// The region requests must be signed for. Default: the region of an AppSync upstream.
    pub region: Option<String>,
    /// How far `X-Amz-Date` may be from the edge's clock.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

impl Default for IamFile {
    fn default() -> Self {
        Self {
            region: None,
            max_clock_skew: Duration::from_secs(300),
        }
    }
}

/// `[site.auth.authorizer]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthorizerFile {
    /// Where the token and the request context are POSTed (AppSync's Lambda event).
    pub url: String,
    /// How long a verdict is reused for the same token (the answer's `ttlOverride` wins;
    /// 0s: ask every time).
    #[serde(default = "default_authorizer_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// A regular expression tokens must match before the authorizer is asked
    /// (AppSync's identityValidationExpression).
    #[serde(default)]
    pub token_regex: Option<String>,
    /// Verdicts kept at most.
    #[serde(default = "default_authorizer_entries")]
    pub max_cached_verdicts: u64,
}

// `url` is required, so the other keys' defaults are given one by one.
fn default_authorizer_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_authorizer_entries() -> u64 {
    100_000
}

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

/// The problem of a region that is neither set nor found in the upstream's host.
const NO_REGION: &str = "set the region (the upstream is not an AppSync host to take it from)";

/// The region of an AppSync endpoint host (`<id>.appsync-api.<region>.amazonaws.com`).
pub fn appsync_region(host: &str) -> Option<String> {
    let rest = host
        .split_once(".appsync-api.")
        .or_else(|| host.split_once(".appsync-realtime-api."))?
        .1;
    let region = rest.strip_suffix(".amazonaws.com")?;
    (!region.is_empty() && !region.contains('.')).then(|| region.to_string())
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
                None => self.problem(at.key("iam").key("region"), NO_REGION),
            }
        }
        auth.jwt = JwtSettings::from(&f.jwt);
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
                (None, Some(f)) => self.read_secret(kat.key("key-file"), f),
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
