//! Turning an upstream response into a cache entry, or saying why not (a bounded reason).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use pingora::http::ResponseHeader;

use super::key::CachePlan;
use super::policy;
use super::refresh::RefreshRequest;
use super::{Entry, NotCached, Read};
use crate::config::cache::CachePolicy;

/// Whether the upstream response header allows caching at all (before the body arrives).
pub fn check_header(status: u16, headers: &http::HeaderMap) -> Result<(), NotCached> {
    if status != 200 {
        return Err(NotCached::Status);
    }
    if headers.contains_key(http::header::SET_COOKIE) {
        return Err(NotCached::SetCookie);
    }
    if headers.contains_key(http::header::CONTENT_ENCODING) {
        // Requests planned for caching are sent without Accept-Encoding; an encoded answer
        // anyway could not be served to every client.
        return Err(NotCached::Encoded);
    }
    let vary_ok = headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .all(|v| {
            v.trim().eq_ignore_ascii_case("accept-encoding")
                || v.trim().eq_ignore_ascii_case("origin")
        });
    if !vary_ok {
        return Err(NotCached::Vary);
    }
    Ok(())
}

/// Build the entry for a complete 200 response, or the reason it is not cached. `read`: what
/// reading the body already found (tagged responses are read while they are tagged); without
/// it the body is parsed here.
#[allow(clippy::too_many_arguments)]
pub fn entry(
    policy: &CachePolicy,
    plan: &CachePlan,
    site: usize,
    headers: &http::HeaderMap,
    body: Bytes,
    read: Option<Read>,
    refresh: Option<Arc<RefreshRequest>>,
    tags: Vec<super::tags::Tag>,
) -> Result<Entry, NotCached> {
    if body.len() > policy.max_entry_size {
        return Err(NotCached::BodySize);
    }
    let read = match read {
        Some(r) => r,
        None => Read::parse(&body)?,
    };
    if read.errors {
        return Err(NotCached::Errors);
    }
    let cache_control = headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok());
    let (ttl, swr) = policy::store(policy, plan, &read.typenames, cache_control)?;

    let mut header = ResponseHeader::build(200, Some(4 + policy.keep_headers.len()))
        .map_err(|_| NotCached::Header)?;
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(http::HeaderValue::from_static("application/json"));
    header
        .insert_header(http::header::CONTENT_TYPE, content_type)
        .map_err(|_| NotCached::Header)?;
    for name in &policy.keep_headers {
        for v in headers.get_all(name) {
            header
                .append_header(name.clone(), v.clone())
                .map_err(|_| NotCached::Header)?;
        }
    }
    header
        .insert_header(http::header::CONTENT_LENGTH, body.len().to_string())
        .map_err(|_| NotCached::Header)?;
    // Hits are the common case: their header is ready to send but for `age`.
    header
        .insert_header("x-cache", "HIT")
        .map_err(|_| NotCached::Header)?;
    Ok(Entry {
        header,
        body,
        stored: Instant::now(),
        stored_at: SystemTime::now(),
        ttl,
        swr,
        stale_if_error: policy.stale_if_error,
        refresh,
        site,
        tags,
        purged: Default::default(),
        removed: Default::default(),
    })
}
