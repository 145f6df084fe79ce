//! `[site.auth.jwt]`, `[[site.auth.oidc]]` and `[[site.auth.cognito]]`: the token issuers a
//! site trusts and how their tokens are checked, as written in the file and validated.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::config::{KeyPath, Validator};

/// One `[[site.auth.oidc]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OidcFile {
    /// The issuer URL, exactly as tokens carry it in `iss`.
    pub issuer: String,
    /// A regular expression the whole `aud` (one of its values) must match.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The longest accepted time since the token was issued (`iat`).
    #[serde(default, with = "humantime_serde")]
    pub iat_ttl: Option<Duration>,
    /// The longest accepted time since the user authenticated (`auth_time`).
    #[serde(default, with = "humantime_serde")]
    pub auth_ttl: Option<Duration>,
    /// The JWKS URL; by default the `jwks_uri` of the issuer's discovery document.
    #[serde(default)]
    pub jwks_url: Option<String>,
}

/// One `[[site.auth.cognito]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CognitoFile {
    /// The user pool, e.g. "eu-west-1_AbCdEf123".
    pub user_pool_id: String,
    /// The pool's region; by default the prefix of the pool id.
    #[serde(default)]
    pub region: Option<String>,
    /// A regular expression the app client id must match: `aud` of id tokens, `client_id` of
    /// access tokens.
    #[serde(default)]
    pub app_client_id: Option<String>,
    /// When set, the token's `cognito:groups` must hold one of these.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The issuer, by default `https://cognito-idp.<region>.amazonaws.com/<user-pool-id>`.
    #[serde(default)]
    pub issuer: Option<String>,
}

/// `[site.auth.jwt]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct JwtFile {
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Longer tokens are refused unread.
    pub max_token_size: ByteSize,
    /// An unknown `kid` makes the issuer's keys be fetched again, at most this often.
    #[serde(with = "humantime_serde")]
    pub jwks_refetch_interval: Duration,
    /// Keys older than this are fetched again in the background (rotation).
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
}

impl Default for JwtFile {
    fn default() -> Self {
        Self {
            leeway: Duration::from_secs(60),
            max_token_size: ByteSize::kib(8),
            jwks_refetch_interval: Duration::from_secs(60),
            jwks_max_age: Duration::from_secs(3600),
        }
    }
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

/// How tokens of both JWT modes are checked.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub leeway: Duration,
    pub max_token_size: usize,
    pub jwks_refetch_interval: Duration,
    pub jwks_max_age: Duration,
}

impl From<&JwtFile> for JwtSettings {
    fn from(f: &JwtFile) -> Self {
        Self {
            leeway: f.leeway,
            max_token_size: f.max_token_size.as_u64() as usize,
            jwks_refetch_interval: f.jwks_refetch_interval,
            jwks_max_age: f.jwks_max_age,
        }
    }
}

impl Default for JwtSettings {
    fn default() -> Self {
        (&JwtFile::default()).into()
    }
}

impl Validator<'_> {
    pub(super) fn oidc(&mut self, at: KeyPath, o: &OidcFile) -> Option<Issuer> {
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

    pub(super) fn cognito(&mut self, at: KeyPath, c: &CognitoFile) -> Option<Issuer> {
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
}
