//! Automatic persisted queries (Apollo's APQ protocol): a request that names its query by
//! SHA-256 hash is expanded from the site's store before anything else reads it, and a query
//! sent with its hash is verified and stored. The upstream never sees the protocol. (The edge
//! calls it from `request_filter`, in proxy/apq.rs.)
//!
//! One store per site, bounded by the bytes of query text (`[site.apq] max-size`): a hash
//! registered on one site never answers on another (sites are different APIs, and a hit would
//! tell one site's callers what another's send), and one site's traffic cannot evict another's.

use std::sync::Arc;

use bytes::Bytes;
use moka::sync::Cache;
use pingora_prometheus::prometheus::IntCounter;
use serde_json::Value;

use super::request::{Parsed, Rest};
use crate::config::Site;
use crate::graphql::Limits;
use crate::metrics;
use crate::rejection::{EdgeError, Rejection};

/// Per stored query, besides its text: the key and moka's bookkeeping.
const ENTRY_OVERHEAD: usize = 96;

/// Apollo's answers that make a client send the full query (200, as Apollo Server and Router).
pub const NOT_FOUND: (&str, &str) = ("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND");
pub const NOT_SUPPORTED: (&str, &str) = (
    "PersistedQueryNotSupported",
    "PERSISTED_QUERY_NOT_SUPPORTED",
);

/// The persisted queries of every site, by site index (`None`: APQ off for that site).
pub struct Store {
    sites: Vec<Option<SiteStore>>,
}

pub struct SiteStore {
    queries: Cache<[u8; 32], Arc<str>>,
    hit: IntCounter,
    miss: IntCounter,
    registered: IntCounter,
    mismatch: IntCounter,
}

impl SiteStore {
    fn new(site: &Site) -> Self {
        let queries = Cache::builder()
            .max_capacity(site.apq.max_size)
            .weigher(|_k: &[u8; 32], q: &Arc<str>| {
                (q.len() + ENTRY_OVERHEAD).min(u32::MAX as usize) as u32
            })
            .build();
        let counter = |outcome: &str| {
            metrics::get()
                .apq_requests
                .with_label_values(&[site.name.as_str(), outcome])
        };
        Self {
            queries,
            hit: counter("hit"),
            miss: counter("miss"),
            registered: counter("registered"),
            mismatch: counter("mismatch"),
        }
    }
}

impl Store {
    pub fn new(sites: &[Arc<Site>]) -> Self {
        let sites = sites
            .iter()
            .map(|s| s.apq.enabled.then(|| SiteStore::new(s)))
            .collect();
        Self { sites }
    }

    pub fn site(&self, index: usize) -> Option<&SiteStore> {
        self.sites.get(index).and_then(Option::as_ref)
    }
}

/// The request the rest of the pipeline sees once APQ is dealt with.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Not a persisted query request (or APQ is off and the query is there): as it came.
    Unchanged,
    /// The full request, `persistedQuery` dropped: a JSON body or a GET query string.
    Body(Bytes),
    Query(String),
    /// Answer with one of Apollo's errors (status 200) so that the client sends the query.
    Answer((&'static str, &'static str)),
    Reject(EdgeError),
}

pub fn resolve(store: Option<&SiteStore>, limits: &Limits, bytes: &[u8], is_get: bool) -> Verdict {
    // Cheap test first: nearly every request is not one (a key spelt with JSON or percent
    // escapes is not recognised, and such a request is then an ordinary one).
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Verdict::Unchanged;
    };
    if !text.contains("persistedQuery") {
        return Verdict::Unchanged;
    }
    let parsed = if is_get {
        Parsed::from_form(text)
    } else {
        Parsed::from_json(bytes)
    };
    // Not a request the pipeline can read: it answers with the precise error.
    let Some(Parsed {
        query,
        operation_name,
        persisted,
        rest,
    }) = parsed
    else {
        return Verdict::Unchanged;
    };
    let Some(store) = store else {
        return match query {
            Some(_) => Verdict::Unchanged,
            None => Verdict::Answer(NOT_SUPPORTED),
        };
    };
    let hash = match check_persisted(&persisted) {
        Ok(h) => h,
        Err(e) => return Verdict::Reject(e),
    };
    let query = match (query, hash) {
        (Some(q), h) => {
            let digest = ring::digest::digest(&ring::digest::SHA256, q.as_bytes());
            if h.as_ref().map(<[u8; 32]>::as_slice) != Some(digest.as_ref()) {
                store.mismatch.inc();
                return Verdict::Reject(
                    Rejection::PersistedQueryHashMismatch
                        .because("provided sha does not match query"),
                );
            }
            // Only documents the site would accept take room in the store; the others are
            // refused below with their own error.
            if let Some(h) = h.filter(|_| acceptable(&q, operation_name.as_deref(), limits)) {
                store.queries.insert(h, Arc::from(q.as_str()));
                store.registered.inc();
            }
            q
        }
        (None, None) => {
            return Verdict::Reject(Rejection::InvalidRequest.because(
                "`extensions.persistedQuery.sha256Hash` must be a SHA-256 hash in hexadecimal",
            ))
        }
        (None, Some(h)) => match store.queries.get(&h) {
            Some(q) => {
                store.hit.inc();
                q.to_string()
            }
            None => {
                store.miss.inc();
                return Verdict::Answer(NOT_FOUND);
            }
        },
    };
    match rest {
        Rest::Json(mut map) => {
            let body = serde_json::value::to_raw_value(&query)
                .and_then(|q| {
                    map.insert("query".into(), q);
                    serde_json::to_vec(&map)
                })
                .map_err(|e| Rejection::InvalidRequest.because(e.to_string()));
            match body {
                Ok(b) => Verdict::Body(Bytes::from(b)),
                Err(e) => Verdict::Reject(e),
            }
        }
        Rest::Form(params, extensions) => {
            let mut out = form_urlencoded::Serializer::new(String::new());
            out.append_pair("query", &query);
            for (k, v) in &params {
                out.append_pair(k, v);
            }
            if !extensions.is_empty() {
                out.append_pair("extensions", &Value::Object(extensions).to_string());
            }
            Verdict::Query(out.finish())
        }
    }
}

/// The hash of a well-formed `persistedQuery` (`None`: not 64 hexadecimal digits).
fn check_persisted(persisted: &Value) -> Result<Option<[u8; 32]>, EdgeError> {
    let invalid = |m: &str| Rejection::InvalidRequest.because(m);
    let Value::Object(pq) = persisted else {
        return Err(invalid("`extensions.persistedQuery` must be an object"));
    };
    if pq.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(Rejection::PersistedQueryVersionNotSupported
            .because("Unsupported persisted query version"));
    }
    match pq.get("sha256Hash") {
        Some(Value::String(h)) => Ok(decode_hex(h)),
        _ => Err(invalid(
            "`extensions.persistedQuery.sha256Hash` must be a string",
        )),
    }
}

/// Whether the site would accept this document (it parses, names the operation, passes the
/// limits).
fn acceptable(query: &str, operation_name: Option<&str>, limits: &Limits) -> bool {
    crate::graphql::analyze_normalized(query, operation_name)
        .is_ok_and(|a| limits.check(&a.complexity).is_ok())
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests;
