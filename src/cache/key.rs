//! Cache keys. A key hashes (blake3) everything a response depends on: site, normalized
//! operation, canonical variables (object keys sorted) and scope. The raw request is hashed too,
//! to memoize its plan so that repeated requests skip JSON and GraphQL parsing.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::cache::Scope;
use crate::graphql::OperationKind;

/// The key of a cached response.
pub type CacheKey = [u8; 32];

/// What the edge decided for a request, memoized by the raw request's hash.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    pub kind: OperationKind,
    pub operation_name: Option<String>,
    pub root_fields: Vec<String>,
    pub decision: Decision,
    /// The document with `__typename`s for tagging (cached queries, and mutations where the
    /// site caches).
    pub typed: Option<std::sync::Arc<super::tags::Typed>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not cacheable; the reason is a bounded metric label.
    Pass(super::NotCached),
    Cache(CachePlan),
}

/// A cacheable request: its key and what the request-time rules said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePlan {
    pub key: CacheKey,
    /// TTL from the operation/field rules (or the default); `None` when only type rules can
    /// decide, after the response is seen.
    pub ttl: Option<Duration>,
    pub swr: Duration,
    pub scope: Scope,
}

/// The hash of a raw request: site, method, principal and the body (POST) or query string (GET).
pub fn raw_key(site: usize, method: &[u8], principal: Option<&[u8]>, raw: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"graphfront raw v1\0");
    h.update(&(site as u64).to_le_bytes());
    h.update(&(method.len() as u64).to_le_bytes());
    h.update(method);
    match principal {
        Some(p) => {
            h.update(&[1]);
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        None => {
            h.update(&[0]);
        }
    }
    h.update(raw);
    *h.finalize().as_bytes()
}

/// The memo key of a GraphQL document with its selected operation name.
pub fn document_key(query: &str, operation_name: Option<&str>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"graphfront document v1\0");
    match operation_name {
        Some(n) => {
            h.update(&[1]);
            h.update(&(n.len() as u64).to_le_bytes());
            h.update(n.as_bytes());
        }
        None => {
            h.update(&[0]);
        }
    }
    h.update(query.as_bytes());
    *h.finalize().as_bytes()
}

/// The digest of a normalized operation (what response keys are made of).
pub fn digest(normalized: &str) -> [u8; 32] {
    *blake3::hash(normalized.as_bytes()).as_bytes()
}

/// The key of a response: site, normalized operation (its digest), canonical variables and
/// scope.
pub fn response_key(
    site: usize,
    normalized: &[u8; 32],
    variables: Option<&Map<String, Value>>,
    scope: Scope,
    principal: Option<&[u8]>,
) -> CacheKey {
    let mut h = blake3::Hasher::new();
    h.update(b"graphfront response v1\0");
    h.update(&(site as u64).to_le_bytes());
    h.update(normalized);
    let mut vars = String::new();
    if let Some(v) = variables.filter(|v| !v.is_empty()) {
        canonical_object(v, &mut vars);
    }
    h.update(&(vars.len() as u64).to_le_bytes());
    h.update(vars.as_bytes());
    match (scope, principal) {
        (Scope::Principal, Some(p)) => {
            h.update(b"principal\0");
            h.update(blake3::hash(p).as_bytes());
        }
        _ => {
            h.update(b"public\0");
        }
    }
    *h.finalize().as_bytes()
}

/// JSON with object keys sorted at every depth (serde_json keeps insertion order here).
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => canonical_object(m, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn canonical_object(m: &Map<String, Value>, out: &mut String) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_unstable();
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        canonical(&m[k], out);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn variable_order_does_not_matter_but_values_do() {
        let a = vars(r#"{"a":1,"b":{"y":2,"x":[1,{"q":1,"p":2}]}}"#);
        let b = vars(r#"{"b":{"x":[1,{"p":2,"q":1}],"y":2},"a":1}"#);
        let c = vars(r#"{"a":2,"b":{"y":2,"x":[1,{"q":1,"p":2}]}}"#);
        let k =
            |v: &Map<String, Value>| response_key(0, &digest("q"), Some(v), Scope::Public, None);
        assert_eq!(k(&a), k(&b));
        assert_ne!(k(&a), k(&c));
        let empty = Map::new();
        assert_eq!(
            response_key(0, &digest("q"), None, Scope::Public, None),
            response_key(0, &digest("q"), Some(&empty), Scope::Public, None)
        );
    }

    #[test]
    fn site_scope_and_principal_separate_keys() {
        let base = response_key(0, &digest("q"), None, Scope::Public, None);
        assert_ne!(
            base,
            response_key(1, &digest("q"), None, Scope::Public, None)
        );
        let alice = response_key(0, &digest("q"), None, Scope::Principal, Some(b"alice"));
        let bob = response_key(0, &digest("q"), None, Scope::Principal, Some(b"bob"));
        assert_ne!(alice, bob);
        assert_ne!(alice, base);
        // A public response does not depend on who asked.
        assert_eq!(
            base,
            response_key(0, &digest("q"), None, Scope::Public, Some(b"alice"))
        );
    }

    #[test]
    fn document_keys_separate_operation_names() {
        assert_ne!(document_key("{a}", None), document_key("{a}", Some("")));
        assert_ne!(
            document_key("{a}", Some("A")),
            document_key("{a}", Some("B"))
        );
        assert_eq!(
            document_key("{a}", Some("A")),
            document_key("{a}", Some("A"))
        );
    }

    #[test]
    fn raw_keys_separate_method_principal_and_site() {
        let k = raw_key(0, b"POST", None, b"{}");
        assert_ne!(k, raw_key(0, b"GET", None, b"{}"));
        assert_ne!(k, raw_key(1, b"POST", None, b"{}"));
        assert_ne!(k, raw_key(0, b"POST", Some(b""), b"{}"));
        assert_ne!(
            raw_key(0, b"POST", Some(b"a"), b"b{}"),
            raw_key(0, b"POST", Some(b"ab"), b"{}")
        );
    }
}
