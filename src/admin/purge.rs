//! `POST /admin/purge`: purge cached responses (everything, a site, or by operation, root field,
//! type or entity), behind the `[admin]` bearer token. Off until a token is configured.

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error, json};
use crate::cache::{tags, Purge, PurgeKind, ResponseCache};
use crate::config::{Config, Site};

/// Largest request body read.
pub const MAX_BODY: usize = 64 * 1024;

/// How long the client may take between two reads of its body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The request body, e.g. `{"site": "api", "type": "Post", "ids": ["1"], "soft": true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default, rename = "type")]
    type_name: Option<String>,
    /// With `type`: entity ids (strings, or numbers as the response writes them).
    #[serde(default)]
    ids: Option<Vec<Value>>,
    #[serde(default)]
    soft: bool,
}

/// A refusal: status and message.
type Refusal = (u16, String);

/// Answer `POST /admin/purge`.
pub async fn handle(
    config: &Config,
    cache: &ResponseCache,
    session: &mut ServerSession,
) -> Response<Vec<u8>> {
    if let Some(refused) = authorize(config, session) {
        // The body is not read: close rather than drain it.
        session.set_keepalive(None);
        return refused;
    }
    let body = match read_body(session).await {
        Ok(b) => b,
        Err((status, message)) => {
            session.set_keepalive(None);
            return error(status, &message);
        }
    };
    let (selector, kind, soft) = match parse(&body, &config.sites) {
        Ok(p) => p,
        Err((status, message)) => return error(status, &message),
    };
    let purged = cache.purge(&selector, soft, kind);
    json(
        200,
        json!({ "purged": purged, "kind": kind.label(), "soft": soft }),
    )
}

/// `None` when the request carries the configured token; otherwise the refusal (purges are
/// off without a token).
fn authorize(config: &Config, session: &ServerSession) -> Option<Response<Vec<u8>>> {
    if config.admin_api.token.is_none() {
        return Some(error(403, "set [admin] token to enable purges"));
    }
    super::token_refusal(config, session, "purge")
}

async fn read_body(session: &mut ServerSession) -> Result<Vec<u8>, Refusal> {
    let too_big = || (413, format!("the body must be at most {MAX_BODY} bytes"));
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_big());
    }
    session.set_read_timeout(Some(READ_TIMEOUT));
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                tracing::debug!(err = %e, "admin: cannot read a purge request body");
                return Err((400, "could not read the request body".into()));
            }
        }
    }
}

/// The selector, the kind of purge and whether it is soft, or why the request is refused.
fn parse(body: &[u8], sites: &[Arc<Site>]) -> Result<(Purge, PurgeKind, bool), Refusal> {
    let bad = |m: &str| (400, m.to_string());
    let not_a_request =
        |e: &dyn std::fmt::Display| (400, format!("the body is not a purge request: {e}"));
    let value: Value = serde_json::from_slice(body).map_err(|e| not_a_request(&e))?;
    if !value.is_object() {
        return Err(not_a_request(&"expected a JSON object"));
    }
    let req: PurgeRequest = serde_json::from_value(value).map_err(|e| not_a_request(&e))?;
    let site = match &req.site {
        None => None,
        Some(name) => Some(
            sites
                .iter()
                .position(|s| &s.name == name)
                .ok_or_else(|| (404, format!("no site is named `{name}`")))?,
        ),
    };
    let given = [
        req.all,
        req.operation.is_some(),
        req.field.is_some(),
        req.type_name.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(bad("give only one of all, operation, field and type"));
    }
    if req.ids.is_some() && req.type_name.is_none() {
        return Err(bad(
            "ids go with type: {\"type\": \"Post\", \"ids\": [\"1\"]}",
        ));
    }
    for (key, v) in [
        ("operation", &req.operation),
        ("field", &req.field),
        ("type", &req.type_name),
    ] {
        if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
            return Err((400, format!("{key} must not be empty")));
        }
    }
    let tagged = |tags: Vec<tags::Tag>| Purge::Tagged { site, tags };
    let (selector, kind) = if req.all {
        if site.is_some() {
            return Err(bad("all purges every site: leave out site, or all"));
        }
        (Purge::All, PurgeKind::All)
    } else if let Some(op) = &req.operation {
        (tagged(vec![tags::operation(op)]), PurgeKind::Operation)
    } else if let Some(field) = &req.field {
        // As in cache rules, `Query.getPost` and `getPost` are the same root field.
        let field = field.strip_prefix("Query.").unwrap_or(field);
        (tagged(vec![tags::field(field)]), PurgeKind::Field)
    } else if let Some(t) = &req.type_name {
        match &req.ids {
            None => (tagged(vec![tags::type_name(t)]), PurgeKind::Type),
            Some(ids) => (tagged(entity_tags(t, ids)?), PurgeKind::Entity),
        }
    } else if let Some(site) = site {
        (Purge::Site(site), PurgeKind::Site)
    } else {
        return Err(bad(
            "say what to purge: all, site, operation, field or type (with ids for entities)",
        ));
    };
    Ok((selector, kind, req.soft))
}

fn entity_tags(type_name: &str, ids: &[Value]) -> Result<Vec<tags::Tag>, Refusal> {
    if ids.is_empty() {
        return Err((400, "ids: list at least one id".into()));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| match id {
            Value::String(s) if !s.is_empty() => Ok(tags::entity(type_name, s)),
            Value::Number(n) => Ok(tags::entity(type_name, &n.to_string())),
            _ => Err((
                400,
                format!("ids[{i}]: write a non-empty string or a number"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites() -> Vec<Arc<Site>> {
        let text = r#"
[[site]]
name = "api"
domains = ["api.example.com"]
upstream = "https://abc.appsync-api.eu-west-1.amazonaws.com/graphql"
tls = "acme"
[[site]]
name = "other"
domains = ["other.example.com"]
upstream = "https://def.appsync-api.eu-west-1.amazonaws.com/graphql"
tls = "acme"
"#;
        Config::parse(text, std::path::Path::new("."))
            .unwrap()
            .sites
    }

    fn ok(body: Value) -> (Purge, PurgeKind, bool) {
        parse(body.to_string().as_bytes(), &sites()).unwrap()
    }

    fn refused(body: &str) -> Refusal {
        parse(body.as_bytes(), &sites()).unwrap_err()
    }

    #[test]
    fn each_form_makes_its_selector() {
        assert_eq!(
            ok(json!({"all": true})),
            (Purge::All, PurgeKind::All, false)
        );
        assert_eq!(
            ok(json!({"site": "other", "soft": true})),
            (Purge::Site(1), PurgeKind::Site, true)
        );
        let tagged = |site, tags: &[&str]| Purge::Tagged {
            site,
            tags: tags.iter().map(|t| tags::Tag::from(*t)).collect(),
        };
        assert_eq!(
            ok(json!({"site": "api", "operation": "GetPost"})),
            (
                tagged(Some(0), &["op:GetPost"]),
                PurgeKind::Operation,
                false
            )
        );
        assert_eq!(
            ok(json!({"field": "Query.getPost"})).0,
            tagged(None, &["field:getPost"])
        );
        assert_eq!(
            ok(json!({"type": "Post"})),
            (tagged(None, &["type:Post"]), PurgeKind::Type, false)
        );
        assert_eq!(
            ok(json!({"type": "Post", "ids": ["1", 2]})),
            (
                tagged(None, &["entity:Post:1", "entity:Post:2"]),
                PurgeKind::Entity,
                false
            )
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        for (body, status, says) in [
            ("{", 400, "not a purge request"),
            ("[]", 400, "not a purge request"),
            ("{\"nope\": 1}", 400, "unknown field `nope`"),
            ("{}", 400, "say what to purge"),
            ("{\"all\": false}", 400, "say what to purge"),
            ("{\"all\": true, \"site\": \"api\"}", 400, "leave out site"),
            (
                "{\"operation\": \"A\", \"type\": \"Post\"}",
                400,
                "only one of",
            ),
            ("{\"ids\": [\"1\"]}", 400, "ids go with type"),
            ("{\"type\": \"Post\", \"ids\": []}", 400, "at least one id"),
            ("{\"type\": \"Post\", \"ids\": [null]}", 400, "ids[0]"),
            ("{\"field\": \" \"}", 400, "field must not be empty"),
            ("{\"site\": \"nope\"}", 404, "no site is named `nope`"),
        ] {
            let (s, m) = refused(body);
            assert_eq!(s, status, "{body}: {m}");
            assert!(m.contains(says), "{body}: {m}");
        }
    }
}
