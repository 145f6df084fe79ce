//! `[site.cors]`: a site's CORS policy as written in the file and validated (its behaviour is
//! in `proxy/cors.rs`).

use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;

use super::{KeyPath, Validator};

/// `[site.cors]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CorsFile {
    /// Allowed origins (`https://app.example.com`), or `*` for any.
    pub allow_origins: Vec<String>,
    /// Methods allowed cross-origin.
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers allowed cross-origin.
    #[serde(default = "default_cors_headers")]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to the page.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow cookies and credentials (not with `*`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(default = "default_cors_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

// `allow-origins` is required, so the other keys' defaults are given one by one.
fn default_cors_methods() -> Vec<String> {
    ["GET", "POST", "OPTIONS"].map(String::from).to_vec()
}

fn default_cors_headers() -> Vec<String> {
    [
        "content-type",
        "authorization",
        "x-api-key",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-user-agent",
        "apollo-require-preflight",
        "x-apollo-operation-name",
    ]
    .map(String::from)
    .to_vec()
}

fn default_cors_max_age() -> Duration {
    Duration::from_secs(600)
}

/// A site's validated CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    /// `None`: any origin (`*`).
    pub origins: Option<Vec<String>>,
    pub methods: HeaderValue,
    pub headers: HeaderValue,
    pub expose: Option<HeaderValue>,
    pub credentials: bool,
    pub max_age: HeaderValue,
}

impl Validator<'_> {
    pub(super) fn cors(&mut self, at: KeyPath, f: &CorsFile) -> Option<Cors> {
        if f.allow_origins.is_empty() {
            self.problem(
                at.key("allow-origins"),
                "list at least one origin, or \"*\"",
            );
        }
        let any = f.allow_origins.iter().any(|o| o == "*");
        for (i, o) in f.allow_origins.iter().enumerate() {
            if o != "*" && !(o.starts_with("https://") || o.starts_with("http://")) {
                self.problem(
                    at.key("allow-origins").index(i),
                    format!("`{o}` is not an origin like https://app.example.com"),
                );
            }
        }
        let mut list = |key: &str, v: &[String]| -> Option<HeaderValue> {
            let joined = v.join(", ");
            match HeaderValue::try_from(joined) {
                Ok(h) => Some(h),
                Err(_) => {
                    self.problem(at.key(key), "holds characters not allowed in a header");
                    None
                }
            }
        };
        let methods = list("allow-methods", &f.allow_methods);
        let headers = list("allow-headers", &f.allow_headers);
        let expose = if f.expose_headers.is_empty() {
            None
        } else {
            list("expose-headers", &f.expose_headers)
        };
        Some(Cors {
            origins: (!any).then(|| f.allow_origins.clone()),
            methods: methods?,
            headers: headers?,
            expose,
            credentials: f.allow_credentials,
            max_age: HeaderValue::from(f.max_age.as_secs()),
        })
    }
}
