//! AppSync's AWS_LAMBDA mode over HTTP: the token and the request context are POSTed to the
//! site's authorizer as AppSync's Lambda event, and its answer (`isAuthorized`,
//! `deniedFields`, `ttlOverride`) decides. Verdicts are reused per token for the TTL.
//!
//! `deniedFields` cannot be nulled in the response without the schema (a field's parent type
//! is unknown at the edge), so a request that selects a field named in `deniedFields` is
//! refused as a whole: never less strict than AppSync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::config::auth::Authorizer;
use crate::graphql::{GraphqlRequest, OperationKind};
use crate::metrics;

/// The authorizer's verdict on one token.
#[derive(Debug)]
struct Verdict {
    authorized: bool,
    /// `Type.field`, from either form AppSync accepts (short, or the field's ARN).
    denied: Vec<(String, String)>,
    expires: Instant,
}

/// Why the authorizer path refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token does not match `token-regex`.
    TokenFormat,
    Denied,
    /// The request selects a field the authorizer denied.
    FieldDenied(String),
    /// The authorizer did not answer usably: refused, never let through.
    Unavailable,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::TokenFormat => "AUTHORIZER_TOKEN_INVALID",
            Refusal::Denied => "AUTHORIZER_DENIED",
            Refusal::FieldDenied(_) => "AUTHORIZER_FIELD_DENIED",
            Refusal::Unavailable => "AUTHORIZER_UNAVAILABLE",
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::TokenFormat => "token_format",
            Refusal::Denied => "denied",
            Refusal::FieldDenied(_) => "field_denied",
            Refusal::Unavailable => "authorizer_error",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::FieldDenied(f) => format!("Not Authorized to access {f}."),
            Refusal::Unavailable => "The authorizer could not be reached.".into(),
            _ => "You are not authorized to make this call.".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    is_authorized: bool,
    #[serde(default)]
    denied_fields: Vec<String>,
    #[serde(default)]
    ttl_override: Option<u64>,
}

/// A site's authorizer with its verdict cache.
pub struct SiteAuthorizer {
    config: Authorizer,
    site: String,
    client: Option<reqwest::Client>,
    verdicts: moka::sync::Cache<[u8; 32], Arc<Verdict>>,
}

impl SiteAuthorizer {
    pub fn new(config: &Authorizer, site: &str, client: Option<reqwest::Client>) -> Self {
        for result in ["authorized", "denied", "error"] {
            metrics::get()
                .authorizer_requests
                .with_label_values(&[site, result]);
        }
        Self {
            config: config.clone(),
            site: site.to_string(),
            client,
            verdicts: moka::sync::Cache::builder()
                .max_capacity(config.max_cached_verdicts)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    /// Whether `token` may send this request; `raw` is the POST body or GET query string.
    pub async fn check(
        &self,
        token: &str,
        raw: &[u8],
        is_get: bool,
        kind: OperationKind,
        root_fields: &[String],
        headers: &http::HeaderMap,
    ) -> Result<(), Refusal> {
        if self
            .config
            .token_regex
            .as_ref()
            .is_some_and(|re| !re.is_match(token))
        {
            return Err(Refusal::TokenFormat);
        }
        // The request is read again only when the authorizer is asked or fields are denied.
        let parse = || {
            if is_get {
                std::str::from_utf8(raw)
                    .ok()
                    .and_then(|q| GraphqlRequest::from_query_string(q).ok())
            } else {
                GraphqlRequest::from_json(raw).ok()
            }
            .ok_or(Refusal::Denied)
        };
        let mut request = None;
        let key = *blake3::hash(token.as_bytes()).as_bytes();
        let verdict = match self.verdicts.get(&key) {
            Some(v) if v.expires > Instant::now() => v,
            _ => {
                let r = request.insert(parse()?);
                let v = Arc::new(self.ask(token, r, headers).await?);
                if v.expires > Instant::now() {
                    self.verdicts.insert(key, v.clone());
                }
                v
            }
        };
        if !verdict.authorized {
            return Err(Refusal::Denied);
        }
        if verdict.denied.is_empty() {
            return Ok(());
        }
        let root_type = match kind {
            OperationKind::Query => "Query",
            OperationKind::Mutation => "Mutation",
            OperationKind::Subscription => "Subscription",
        };
        // Root fields are known exactly; deeper ones only by name (no schema at the edge).
        let request = match request {
            Some(r) => r,
            None => parse()?,
        };
        let names = crate::graphql::field_names(&request.query).map_err(|_| Refusal::Denied)?;
        for (ty, field) in &verdict.denied {
            let selected = if ty == root_type {
                root_fields.iter().any(|f| f == field)
            } else if ty == "Query" || ty == "Mutation" || ty == "Subscription" {
                false
            } else {
                names.contains(field)
            };
            if selected {
                return Err(Refusal::FieldDenied(format!("{field} on type {ty}")));
            }
        }
        Ok(())
    }

    async fn ask(
        &self,
        token: &str,
        request: &GraphqlRequest,
        headers: &http::HeaderMap,
    ) -> Result<Verdict, Refusal> {
        let m = metrics::get();
        let count = |result: &str| {
            m.authorizer_requests
                .with_label_values(&[&self.site, result])
                .inc()
        };
        let client = self.client.as_ref().ok_or(Refusal::Unavailable)?;
        let request_headers: Map<String, Value> = headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), Value::from(v.to_str().ok()?))))
            .collect();
        let event = json!({
            "authorizationToken": token,
            "requestContext": {
                "apiId": self.site,
                "accountId": "",
                "requestId": request_id(),
                "queryString": request.query,
                "operationName": request.operation_name,
                "variables": request.variables.clone().unwrap_or_default(),
            },
            "requestHeaders": request_headers,
        });
        let sent = client
            .post(&self.config.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(event.to_string())
            .send()
            .await;
        let answer: Answer = match sent {
            Ok(r) if r.status().is_success() => match r
                .bytes()
                .await
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(a) => a,
                Err(e) => {
                    count("error");
                    tracing::warn!(site = %self.site, error = %e, "authorizer answer unreadable");
                    return Err(Refusal::Unavailable);
                }
            },
            Ok(r) => {
                count("error");
                tracing::warn!(site = %self.site, status = %r.status(), "authorizer failed");
                return Err(Refusal::Unavailable);
            }
            Err(e) => {
                count("error");
                tracing::warn!(site = %self.site, error = %e, "authorizer unreachable");
                return Err(Refusal::Unavailable);
            }
        };
        count(if answer.is_authorized {
            "authorized"
        } else {
            "denied"
        });
        let ttl = answer
            .ttl_override
            .map_or(self.config.ttl, Duration::from_secs)
            .min(Duration::from_secs(3600));
        Ok(Verdict {
            authorized: answer.is_authorized,
            denied: answer
                .denied_fields
                .iter()
                .filter_map(|f| denied_field(f))
                .collect(),
            expires: Instant::now() + ttl,
        })
    }
}

/// `Type.field`, or `arn:aws:appsync:<region>:<account>:apis/<id>/types/<Type>/fields/<field>`.
fn denied_field(f: &str) -> Option<(String, String)> {
    if let Some(rest) = f.strip_prefix("arn:") {
        let (_, path) = rest.split_once("/types/")?;
        let (ty, field) = path.split_once("/fields/")?;
        return Some((ty.to_string(), field.to_string()));
    }
    let (ty, field) = f.split_once('.')?;
    Some((ty.to_string(), field.to_string()))
}

/// A request id for the authorizer's logs: unique within the process.
fn request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("graphfront-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_fields_in_both_forms() {
        assert_eq!(
            denied_field("Post.content"),
            Some(("Post".into(), "content".into()))
        );
        assert_eq!(
            denied_field(
                "arn:aws:appsync:eu-west-1:123456789012:apis/abc/types/Query/fields/listPosts"
            ),
            Some(("Query".into(), "listPosts".into()))
        );
        assert_eq!(denied_field("nonsense"), None);
    }
}
