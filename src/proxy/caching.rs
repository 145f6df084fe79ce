//! The cache in the request path: lookup and hits in `request_filter`, filling from the
//! upstream response, stale-while-revalidate refreshes and stale-if-error.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::{Graphql, SiteRuntime};
use crate::cache::key::{CachePlan, Decision, RequestPlan};
use crate::cache::refresh::{RefreshRequest, REPLAYED_HEADERS};
use crate::cache::{fill, Entry, Freshness, Leader, Lookup, NotCached, ResponseCache};
use crate::metrics;

/// The cache outcome of a request, as `x-cache` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Hit,
    Stale,
    Miss,
    Pass(NotCached),
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Miss => "miss",
            Self::Pass(_) => "pass",
        }
    }
    fn header(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Stale => "STALE",
            Self::Miss => "MISS",
            Self::Pass(_) => "PASS",
        }
    }
}

/// A cacheable request on its way upstream.
pub struct CacheState {
    plan: CachePlan,
    leader: Option<Leader>,
    raw: Bytes,
    /// The response being collected for storing, with its upstream headers.
    fill: Option<(BytesMut, http::HeaderMap)>,
    /// An expired entry to serve if the upstream fails (stale-if-error).
    fallback: Option<Arc<Entry>>,
    /// The upstream failed with a 5xx: its body is replaced by this entry's.
    replacing: Option<Arc<Entry>>,
    /// The query string the upstream got, when the edge rewrote it (GET).
    upstream_query: Option<String>,
    /// A GET the upstream got as POST, `raw` its body.
    as_post: bool,
    /// The cache's purge count when the lookup missed.
    generation: u64,
}

/// Asked for with this request header, PASS responses say why in `x-cache-reason`.
pub const DEBUG_HEADER: &str = "x-graphfront-cache-debug";

/// Answer from the cache when possible (`Ok(true)`), else prepare to fill it.
/// The request goes upstream around the cache: a PASS with `reason`, where the site caches at
/// all (elsewhere no `x-cache` is reported).
pub fn bypass(site: &SiteRuntime, g: &mut Graphql, reason: NotCached) {
    if site.config.cache.enabled() {
        g.cache_status = Some(Status::Pass(reason));
    }
}

pub async fn lookup(
    cache: &Arc<ResponseCache>,
    site: &Arc<SiteRuntime>,
    session: &mut Session,
    g: &mut Graphql,
    plan: &RequestPlan,
    raw: Bytes,
) -> pingora::Result<bool> {
    let cp = match &plan.decision {
        Decision::Pass(reason) => {
            g.cache_status = Some(Status::Pass(*reason));
            return Ok(false);
        }
        Decision::Cache(cp) => cp,
    };
    let policy = &site.config.cache;
    let refetch = policy.allow_client_no_cache && client_says_no_cache(session);
    let leader = if refetch {
        cache.claim_refresh(&cp.key)
    } else {
        match cache.lookup(&cp.key, policy.coalesce_wait).await {
            Lookup::Hit(entry, Freshness::Fresh) => {
                g.cache_status = Some(Status::Hit);
                write_entry(session, site, &entry, Status::Hit).await?;
                return Ok(true);
            }
            Lookup::Hit(entry, _) => {
                g.cache_status = Some(Status::Stale);
                write_entry(session, site, &entry, Status::Stale).await?;
                refresh_in_background(cache, site, cp, &entry);
                return Ok(true);
            }
            Lookup::Lead(leader) => Some(leader),
            Lookup::Miss => None,
        }
    };
    // An expired entry still within stale-if-error answers if the upstream fails.
    let fallback = cache
        .get(&cp.key)
        .filter(|e| e.stored.elapsed() < e.ttl + e.stale_if_error);
    g.cache_status = Some(Status::Miss);
    g.cache = Some(Box::new(CacheState {
        plan: cp.clone(),
        leader,
        raw,
        fill: None,
        fallback,
        replacing: None,
        upstream_query: None,
        as_post: false,
        generation: cache.purge_generation(),
    }));
    Ok(false)
}

/// The request goes upstream: a background refresh sends what the upstream got (the
/// rewritten body, when the edge rewrote it).
pub fn sent_upstream(g: &mut Graphql) {
    let Some(state) = g.cache.as_mut() else {
        return;
    };
    if let Some(body) = &g.upstream_body {
        state.raw = body.clone();
    }
    state.upstream_query = g.upstream_query.clone();
    state.as_post = g.get_as_post;
}

fn client_says_no_cache(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
        })
}

async fn write_entry(
    session: &mut Session,
    site: &SiteRuntime,
    e: &Entry,
    status: Status,
) -> pingora::Result<()> {
    // The stored header already says HIT.
    let mut h = e.header.clone();
    if let Some(cors) = &site.config.cors {
        let origin = session.req_header().headers.get(http::header::ORIGIN);
        for (k, v) in cors.headers_for(origin) {
            h.insert_header(k, v)?;
        }
    }
    if status != Status::Hit {
        h.insert_header("x-cache", status.header())?;
    }
    h.insert_header(http::header::AGE, e.age_secs().to_string())?;
    session.write_response_header(Box::new(h), false).await?;
    session
        .write_response_body(Some(e.body.clone()), true)
        .await
}

fn refresh_in_background(
    cache: &Arc<ResponseCache>,
    site: &Arc<SiteRuntime>,
    plan: &CachePlan,
    entry: &Entry,
) {
    let (Some(req), Some(refresher)) = (entry.refresh.clone(), site.refresher.clone()) else {
        return;
    };
    let Some(leader) = cache.claim_refresh(&plan.key) else {
        return; // a fetch for this key is already under way
    };
    let (cache, site, plan) = (cache.clone(), site.clone(), plan.clone());
    let generation = cache.purge_generation();
    tokio::spawn(async move {
        let result = match refresher.fetch(&req).await {
            Ok((status, headers, body)) => fill::check_header(status, &headers)
                .and_then(|()| {
                    // Tagged and stripped like the response it refreshes.
                    let (body, read, tags) = match &req.typed {
                        Some(typed) => {
                            let key_fields = &site.config.cache.key_fields;
                            let p = crate::cache::tags::process(
                                &body,
                                typed,
                                &|| refreshed_variables(&req),
                                key_fields,
                            )
                            .ok_or(NotCached::NotJson)?;
                            let mut tags = req.tags.clone();
                            tags.extend(p.tags);
                            (p.body.unwrap_or(body), Some(p.read), tags)
                        }
                        None => (body, None, req.tags.clone()),
                    };
                    fill::entry(
                        &site.config.cache,
                        &plan,
                        site.index,
                        &headers,
                        body,
                        read,
                        Some(req),
                        tags,
                    )
                })
                .and_then(|entry| cache.insert_unless_purged(plan.key, entry, generation))
                .map_or("refused", |()| "stored"),
            Err(e) => {
                tracing::warn!(site = %site.config.name, error = %e, "background refresh failed");
                "failed"
            }
        };
        metrics::get()
            .cache_refreshes
            .with_label_values(&[&site.config.name, result])
            .inc();
        drop(leader);
    });
}

/// The variables of a background refresh: in its JSON body, or in the query string of a GET.
fn refreshed_variables(req: &RefreshRequest) -> Option<crate::cache::tags::Variables> {
    if req.method == http::Method::GET {
        let (_, query) = req.path_and_query.split_once('?')?;
        super::tagging::variables_of(query.as_bytes(), true)
    } else {
        super::tagging::variables_of(&req.body, false)
    }
}

/// `upstream_request_filter`: ask for an unencoded response, which every client can be served.
pub fn upstream_request(g: &Graphql, req: &mut pingora::http::RequestHeader) {
    // A response the edge caches, or reads for tags (a mutation that purges), must be readable;
    // a request signed by the client goes as it came (its headers may be signed).
    if g.cache.is_some() || (g.tags.is_some() && !g.unverified_auth) {
        req.remove_header(&http::header::ACCEPT_ENCODING);
    }
}

/// `upstream_response_filter`: decide whether to collect the response, or to replace a 5xx
/// with a stale entry.
pub fn upstream_response(
    site: &SiteRuntime,
    g: &mut Graphql,
    resp: &mut ResponseHeader,
) -> pingora::Result<()> {
    let Some(state) = g.cache.as_mut() else {
        return Ok(());
    };
    let status = resp.status.as_u16();
    // Replace a 5xx only when a body follows (the stale body is sent in its place at its end).
    let has_body = resp.headers.get(http::header::CONTENT_LENGTH).map_or(
        resp.headers.contains_key(http::header::TRANSFER_ENCODING),
        |v| v.as_bytes() != b"0",
    );
    if status >= 500 && has_body {
        if let Some(stale) = state.fallback.take().filter(|e| e.usable_on_error()) {
            let mut h = stale.header.clone();
            h.insert_header("x-cache", "STALE")?;
            h.insert_header(http::header::AGE, stale.age_secs().to_string())?;
            *resp = h;
            state.replacing = Some(stale);
            g.cache_status = Some(Status::Stale);
            return Ok(());
        }
    }
    let max = site.config.cache.max_entry_size;
    let too_big = resp
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|len| len > max);
    match fill::check_header(status, &resp.headers) {
        Ok(()) if too_big => g.cache_status = Some(Status::Pass(NotCached::BodySize)),
        Ok(()) => state.fill = Some((BytesMut::new(), resp.headers.clone())),
        Err(reason) => g.cache_status = Some(Status::Pass(reason)),
    }
    Ok(())
}

/// `response_filter`: tell the client what the cache did.
pub fn response(session: &Session, g: &Graphql, resp: &mut ResponseHeader) -> pingora::Result<()> {
    let Some(status) = g.cache_status else {
        return Ok(());
    };
    if status == Status::Stale {
        return Ok(()); // set with the replaced header
    }
    resp.insert_header("x-cache", status.header())?;
    if let Status::Pass(reason) = status {
        if session.req_header().headers.contains_key(DEBUG_HEADER) {
            resp.insert_header("x-cache-reason", reason.label())?;
        }
    }
    Ok(())
}

/// `upstream_response_body_filter`: collect the body; store it at the end and wake the
/// requests waiting for it.
pub fn upstream_body(
    cache: &ResponseCache,
    session: &Session,
    site: &SiteRuntime,
    g: &mut Graphql,
    body: &mut Option<Bytes>,
    end: bool,
) {
    let Some(state) = g.cache.as_mut() else {
        return;
    };
    if let Some(stale) = &state.replacing {
        *body = end.then(|| stale.body.clone());
        return;
    }
    let Some((buf, _)) = state.fill.as_mut() else {
        return;
    };
    if let Some(chunk) = body {
        buf.extend_from_slice(chunk);
        if buf.len() > site.config.cache.max_entry_size {
            state.fill = None;
            g.stored = Some(Err(NotCached::BodySize));
            return;
        }
    }
    if !end {
        return;
    }
    let Some((buf, headers)) = state.fill.take() else {
        return;
    };
    let policy = &site.config.cache;
    let (tags, read) = g
        .tags
        .as_mut()
        .map(|t| (std::mem::take(&mut t.entry_tags), t.read.take()))
        .unwrap_or_default();
    let refresh = (!state.plan.swr.is_zero() || !policy.default_swr.is_zero()).then(|| {
        let mut r = refresh_request(session, site, state);
        r.typed = g.tags.as_ref().and_then(|t| t.typed.clone());
        r.tags = tags
            .iter()
            .filter(|t| t.starts_with("op:") || t.starts_with("field:"))
            .cloned()
            .collect();
        Arc::new(r)
    });
    let result = fill::entry(
        policy,
        &state.plan,
        site.index,
        &headers,
        buf.freeze(),
        read,
        refresh,
        tags,
    )
    .and_then(|entry| cache.insert_unless_purged(state.plan.key, entry, state.generation));
    // Waiters look again now.
    state.leader = None;
    g.stored = Some(result);
}

fn refresh_request(session: &Session, site: &SiteRuntime, state: &CacheState) -> RefreshRequest {
    let (raw, upstream_query) = (&state.raw, state.upstream_query.as_deref());
    let req = session.req_header();
    let mut headers = http::HeaderMap::new();
    for name in REPLAYED_HEADERS {
        for v in req.headers.get_all(*name) {
            headers.append(*name, v.clone());
        }
    }
    if let Some(crate::config::cache::PrincipalSource::Header(h)) = &site.config.cache.principal {
        for v in req.headers.get_all(h) {
            headers.append(h.clone(), v.clone());
        }
    }
    if let Some(c) = req.headers.get(http::header::COOKIE) {
        headers.insert(http::header::COOKIE, c.clone());
    }
    if state.as_post {
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    let is_get = req.method == http::Method::GET && !state.as_post;
    let up = &site.config.upstream;
    let path_and_query = match upstream_query.or(req.uri.query()) {
        Some(q) if is_get && !q.is_empty() => format!("{}?{q}", up.path),
        _ => up.path.clone(),
    };
    RefreshRequest {
        method: if state.as_post {
            http::Method::POST
        } else {
            req.method.clone()
        },
        path_and_query,
        headers,
        body: if is_get { Bytes::new() } else { raw.clone() },
        typed: None,
        tags: Vec::new(),
    }
}

/// `fail_to_proxy`: serve the stale entry instead of an error, when there is one.
pub async fn serve_stale_on_error(
    session: &mut Session,
    site: &SiteRuntime,
    g: &mut Graphql,
) -> bool {
    let fallback = g.cache.as_mut().and_then(|s| s.fallback.take());
    let Some(stale) = fallback.filter(|e| e.usable_on_error()) else {
        return false;
    };
    if session.response_written().is_some() {
        return false;
    }
    g.cache_status = Some(Status::Stale);
    write_entry(session, site, &stale, Status::Stale)
        .await
        .is_ok()
}

/// Record the cache outcome in metrics (in `logging`).
pub fn observe(site: &SiteRuntime, g: &Graphql) {
    let Some(status) = g.cache_status else {
        return;
    };
    site.cache_requests(status.label()).inc();
    let reason = match (status, g.stored) {
        (Status::Pass(r), _) => Some(r),
        (_, Some(Err(r))) => Some(r),
        _ => None,
    };
    if let Some(r) = reason {
        metrics::get()
            .cache_passes
            .with_label_values(&[&site.config.name, r.label()])
            .inc();
    }
}
