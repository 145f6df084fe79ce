//! Caching decisions: at request time (operation kind, operation and field rules, scope and
//! principal) and at response time (type rules, the upstream's Cache-Control, the body).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Map, Value};

use super::key::{response_key, CachePlan, Decision};
use super::NotCached;
use crate::config::cache::{CachePolicy, Matcher, PrincipalSource, Scope};
use crate::graphql::{Operation, OperationKind};

/// The principal of this request for per-principal scopes: the configured header's or
/// cookie's value.
pub fn principal_of<'h>(policy: &CachePolicy, headers: &'h http::HeaderMap) -> Option<&'h [u8]> {
    match policy.principal.as_ref()? {
        PrincipalSource::Header(name) => headers
            .get(name)
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty()),
        PrincipalSource::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_bytes())
            .filter(|v| !v.is_empty()),
    }
}

/// Decide at request time whether, and under which key, a request may be answered from cache.
pub fn plan(
    site: usize,
    policy: &CachePolicy,
    op: &Operation,
    normalized: &[u8; 32],
    variables: Option<&Map<String, Value>>,
    principal: Option<&[u8]>,
) -> Decision {
    match op.kind {
        OperationKind::Query => {}
        OperationKind::Mutation => return Decision::Pass(NotCached::Mutation),
        OperationKind::Subscription => return Decision::Pass(NotCached::Subscription),
    }
    if !policy.enabled() {
        return Decision::Pass(NotCached::NoRule);
    }
    let matched: Vec<_> = policy
        .rules
        .iter()
        .filter(|r| match &r.matcher {
            Matcher::Operation(name) => op.name.as_deref() == Some(name.as_str()),
            Matcher::Field(field) => op.root_fields.iter().any(|f| f == field),
            Matcher::Type(_) => false,
        })
        .collect();
    let has_type_rules = policy
        .rules
        .iter()
        .any(|r| matches!(r.matcher, Matcher::Type(_)));
    let (ttl, swr, scope) = if !matched.is_empty() {
        (
            matched.iter().map(|r| r.ttl).min(),
            matched.iter().map(|r| r.swr).min().unwrap_or_default(),
            matched
                .iter()
                .map(|r| r.scope)
                .max()
                .unwrap_or(Scope::Public),
        )
    } else if !policy.default_ttl.is_zero() {
        (
            Some(policy.default_ttl),
            policy.default_swr,
            policy.default_scope,
        )
    } else if has_type_rules {
        (None, Duration::ZERO, Scope::Public)
    } else {
        return Decision::Pass(NotCached::NoRule);
    };
    if scope == Scope::Principal && principal.is_none() {
        // Never fall back to a public entry for a per-principal rule.
        return Decision::Pass(NotCached::NoPrincipal);
    }
    Decision::Cache(CachePlan {
        key: response_key(site, normalized, variables, scope, principal),
        ttl,
        swr,
        scope,
    })
}

/// Decide at response time how long to keep a response: the request-time plan narrowed by type
/// rules (by the response's `__typename`s) and the upstream's Cache-Control.
pub fn store(
    policy: &CachePolicy,
    plan: &CachePlan,
    typenames: &BTreeSet<String>,
    cache_control: Option<&str>,
) -> Result<(Duration, Duration), NotCached> {
    let by_type: Vec<_> = policy
        .rules
        .iter()
        .filter(|r| matches!(&r.matcher, Matcher::Type(t) if typenames.contains(t)))
        .collect();
    if by_type.iter().any(|r| r.scope == Scope::Principal) && plan.scope == Scope::Public {
        // The key was made public at request time; this response needs a principal scope.
        return Err(NotCached::Scope);
    }
    let mut ttl = plan.ttl;
    let mut swr = if plan.ttl.is_some() {
        Some(plan.swr)
    } else {
        None
    };
    for r in by_type {
        ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
        swr = Some(swr.map_or(r.swr, |s| s.min(r.swr)));
    }
    let mut ttl = ttl.ok_or(NotCached::NoRule)?;
    if !policy.ignore_upstream_cache_control {
        if let Some(cc) = cache_control {
            let directives = parse_cache_control(cc);
            if directives.no_store {
                return Err(NotCached::NoStore);
            }
            if directives.private {
                return Err(NotCached::Private);
            }
            if let Some(max_age) = directives.max_age {
                if max_age.is_zero() {
                    return Err(NotCached::MaxAge);
                }
                ttl = ttl.min(max_age);
            }
        }
    }
    Ok((ttl, swr.unwrap_or_default()))
}

#[derive(Debug, Default, PartialEq, Eq)]
struct CacheControl {
    no_store: bool,
    private: bool,
    max_age: Option<Duration>,
}

/// The directives of a Cache-Control header that matter to a shared cache (`s-maxage` wins
/// over `max-age`).
fn parse_cache_control(v: &str) -> CacheControl {
    let mut cc = CacheControl::default();
    let mut s_maxage = None;
    for d in v.split(',') {
        let (name, value) = match d.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (d.trim(), None),
        };
        let secs = || {
            value
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs)
        };
        match name.to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => cc.no_store = true,
            "private" => cc.private = true,
            "max-age" => cc.max_age = secs().or(Some(Duration::ZERO)),
            "s-maxage" => s_maxage = secs().or(Some(Duration::ZERO)),
            _ => {}
        }
    }
    if s_maxage.is_some() {
        cc.max_age = s_maxage;
    }
    cc
}

/// Every `__typename` in a GraphQL response's `data`.
pub fn typenames(data: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![data];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(t)) = m.get("__typename") {
                    out.insert(t.clone());
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
