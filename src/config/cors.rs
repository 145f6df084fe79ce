//! The validated CORS policy of a site (its behaviour is in `proxy/cors.rs`).

use http::HeaderValue;

use super::file::CorsFile;
use super::{KeyPath, Validator};

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
