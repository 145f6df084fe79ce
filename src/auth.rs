//! Auth pre-checks at the edge, AppSync's modes combined as AppSync does: the request passes
//! when one configured mode accepts the credentials it carries (`x-api-key` for API_KEY, a
//! token in `Authorization` for OPENID_CONNECT and AMAZON_COGNITO_USER_POOLS, a SigV4
//! `Authorization` for AWS_IAM). A request no mode accepts gets AppSync's 401 and never
//! reaches the upstream.

pub mod authorizer;
pub mod iam;
pub mod jwt;

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::auth::Auth;
use crate::config::Site;
use crate::metrics;
use crate::rejection::{EdgeError, Rejection};
use authorizer::SiteAuthorizer;
use jwt::IssuerKeys;
use pingora_prometheus::prometheus::IntCounter;

/// The accepted caller, as per-principal cache scopes and logs know it.
pub type Principal = String;

/// A request some mode accepted.
#[derive(Debug)]
pub struct Accepted {
    pub principal: Principal,
    /// Whether the edge verified the credentials itself. An IAM signature is only
    /// pre-checked (the upstream verifies it), so such requests never use the cache.
    pub verified: bool,
}

/// A site's auth: its settings, the cached keys of its token issuers, its authorizer.
pub struct SiteAuth {
    pub config: Auth,
    issuers: Vec<Arc<IssuerKeys>>,
    pub authorizer: Option<SiteAuthorizer>,
    /// Tokens verified recently, by digest: a signature is checked once per token, not once
    /// per request (RSA verification costs hundreds of microseconds).
    verified_tokens: moka::sync::Cache<[u8; 32], Arc<jwt::Verified>>,
    /// `auth_decisions{mode, accepted, ok}` for each of `MODES`.
    accepted: [IntCounter; 5],
}

/// The `mode` labels of modes that accept requests.
const MODES: [&str; 5] = ["api_key", "oidc", "cognito", "iam", "authorizer"];

/// What the pre-check decided before the request body is read.
pub enum Outcome {
    Accepted(Accepted),
    Rejected(EdgeError),
    /// The authorizer decides, once the operation is known (AppSync sends it the query).
    Authorizer {
        token: String,
        principal: Principal,
    },
}

impl SiteAuth {
    /// `client` fetches the issuers' keys (with the site's trust).
    pub fn new(site: &Site, auth: &Auth, client: Option<reqwest::Client>) -> Self {
        let issuers = match &client {
            Some(client) => auth
                .issuers
                .iter()
                .map(|i| IssuerKeys::new(i.clone(), &site.name, client.clone()))
                .collect(),
            None => Vec::new(),
        };
        Self {
            config: auth.clone(),
            issuers,
            authorizer: auth
                .authorizer
                .as_ref()
                .map(|a| SiteAuthorizer::new(a, &site.name, client)),
            verified_tokens: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(jwt::REUSE_AT_MOST)
                .build(),
            accepted: MODES.map(|mode| {
                metrics::get()
                    .auth_decisions
                    .with_label_values(&[&site.name, mode, "accepted", "ok"])
            }),
        }
    }

    fn accepted_counter(&self, mode: &str) -> &IntCounter {
        let i = MODES.iter().position(|m| *m == mode).unwrap_or(0);
        &self.accepted[i]
    }

    /// Whether keys or an authorizer must be fetched from (a client is needed).
    pub fn needs_client(auth: &Auth) -> bool {
        !auth.issuers.is_empty() || auth.authorizer.is_some()
    }
}

fn unauthorized(code: &'static str, message: &str) -> EdgeError {
    Rejection::Unauthorized(code).because(message)
}

/// One mode's verdict, with the labels it is counted under.
struct Verdict {
    mode: &'static str,
    result: Result<Accepted, (EdgeError, &'static str)>,
}

/// Check the request against the site's modes.
/// Check credentials carried in `headers` (a request's, or those of AppSync real-time's
/// `header` parameter and `start` messages) against the site's modes.
pub async fn check_headers(headers: &http::HeaderMap, site: &str, auth: &SiteAuth) -> Outcome {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| (v, v.to_str().unwrap_or("")));
    // The mode the Authorization header is for: IAM for a SigV4 signature, else the token modes.
    let by_authorization = match (authorization, &auth.config.iam) {
        (Some((_, text)), Some(iam)) if iam::is_sigv4(text) => Some(sigv4(text, headers, iam)),
        (Some((value, _)), _) if !auth.config.issuers.is_empty() => Some(token(value, auth).await),
        _ => None,
    };
    let for_authorizer = match (authorization, &auth.authorizer) {
        (Some((_, text)), Some(_)) if !iam::is_sigv4(text) || auth.config.iam.is_none() => {
            Some(text)
        }
        _ => None,
    };
    // Then the API key, unless the Authorization header was already accepted.
    let accepted = by_authorization.as_ref().is_some_and(|v| v.result.is_ok());
    let by_api_key = match headers.get("x-api-key") {
        Some(key) if !auth.config.api_keys.is_empty() && !accepted => {
            Some(api_key(key, &auth.config))
        }
        _ => None,
    };
    let verdicts = [by_authorization, by_api_key];
    let m = metrics::get();
    for v in verdicts.iter().flatten() {
        match &v.result {
            // Accepted requests count on handles resolved once (no label lookup per request).
            Ok(_) => auth.accepted_counter(v.mode).inc(),
            Err((_, reason)) => m
                .auth_decisions
                .with_label_values(&[site, v.mode, "rejected", reason])
                .inc(),
        }
    }
    // The first mode that accepted; else the authorizer; else the first refusal.
    let mut first_err = None;
    for v in verdicts.into_iter().flatten() {
        match v.result {
            Ok(a) => return Outcome::Accepted(a),
            Err((e, _)) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(token) = for_authorizer {
        let principal = format!(
            "authorizer:{}",
            &blake3::hash(token.as_bytes()).to_hex()[..32]
        );
        return Outcome::Authorizer {
            token: token.to_string(),
            principal,
        };
    }
    if let Some(e) = first_err {
        return Outcome::Rejected(e);
    }
    let (mode, code) =
        if auth.config.issuers.is_empty() && auth.config.iam.is_none() && auth.authorizer.is_none()
        {
            ("api_key", "API_KEY_MISSING")
        } else {
            ("none", "AUTHORIZATION_MISSING")
        };
    m.auth_decisions
        .with_label_values(&[site, mode, "rejected", "missing"])
        .inc();
    Outcome::Rejected(unauthorized(
        code,
        "Valid authorization header not provided.",
    ))
}

/// Count the authorizer's decision; the refusal as an edge error.
pub fn authorizer_outcome(
    site: &str,
    result: Result<(), authorizer::Refusal>,
) -> Result<(), EdgeError> {
    let (outcome, reason) = match &result {
        Ok(()) => ("accepted", "ok"),
        Err(r) => ("rejected", r.reason()),
    };
    metrics::get()
        .auth_decisions
        .with_label_values(&[site, "authorizer", outcome, reason])
        .inc();
    result.map_err(|r| unauthorized(r.code(), &r.message()))
}

async fn token(value: &http::HeaderValue, auth: &SiteAuth) -> Verdict {
    let raw = value.to_str().unwrap_or("").trim();
    // AppSync takes the token raw; clients often send it as a bearer token.
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .unwrap_or(raw)
        .trim();
    let digest = *blake3::hash(token.as_bytes()).as_bytes();
    let now = jsonwebtoken::get_current_timestamp();
    let reused = auth
        .verified_tokens
        .get(&digest)
        .filter(|v| v.valid_until > now);
    let verified = match reused {
        Some(v) => Ok((*v).clone()),
        None => jwt::verify(token, &auth.issuers, &auth.config.jwt)
            .await
            .inspect(|v| auth.verified_tokens.insert(digest, Arc::new(v.clone()))),
    };
    match verified {
        Ok(v) => Verdict {
            mode: v.mode.label(),
            result: Ok(Accepted {
                principal: v.principal,
                verified: true,
            }),
        },
        Err((mode, refusal)) => Verdict {
            mode: mode.map_or("jwt", |m| m.label()),
            result: Err((
                unauthorized(refusal.code(), refusal.message()),
                refusal.reason(),
            )),
        },
    }
}

fn api_key(key: &http::HeaderValue, auth: &Auth) -> Verdict {
    Verdict {
        mode: "api_key",
        result: check_api_key(key.as_bytes(), auth),
    }
}

/// The API_KEY mode on one `x-api-key` value: the key's digest looked up, its expiry checked.
pub fn check_api_key(key: &[u8], auth: &Auth) -> Result<Accepted, (EdgeError, &'static str)> {
    let digest = blake3::hash(key);
    match auth.api_keys.get(digest.as_bytes()) {
        None => Err((
            unauthorized(
                "API_KEY_INVALID",
                "You are not authorized to make this call.",
            ),
            "unknown_key",
        )),
        Some(found) if found.expires.is_some_and(|t| t <= SystemTime::now()) => Err((
            unauthorized("API_KEY_EXPIRED", "The API key has expired."),
            "expired",
        )),
        Some(found) => Ok(Accepted {
            principal: format!("api-key:{}", found.id),
            verified: true,
        }),
    }
}

fn sigv4(
    authorization: &str,
    headers: &http::HeaderMap,
    iam: &crate::config::auth::IamCheck,
) -> Verdict {
    let date = headers.get("x-amz-date").and_then(|v| v.to_str().ok());
    let result = iam::precheck(authorization, date, iam, SystemTime::now())
        .map(|key_id| Accepted {
            principal: format!("iam:{key_id}"),
            verified: false,
        })
        .map_err(|r| (unauthorized(r.code(), r.message()), r.reason()));
    Verdict {
        mode: "iam",
        result,
    }
}
