//! One access-log event and the request metrics per request. Never logs query strings,
//! bodies, tokens or cookies: only the path, the classification and the outcome.

use pingora::proxy::Session;
use pingora::Error;

use super::RequestCtx;

pub fn record(session: &Session, e: Option<&Error>, ctx: &RequestCtx, log: bool) {
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let seconds = ctx.started.elapsed().as_secs_f64();
    let site = ctx.site.as_deref();
    let graphql = ctx.graphql();
    let operation = graphql.and_then(|g| g.operation);
    if let Some(site) = site {
        let bytes = (session.body_bytes_read(), session.body_bytes_sent());
        site.observe(operation, status, seconds, bytes);
        if let Some(g) = graphql {
            super::caching::observe(site, g);
        }
    }
    if !log {
        return;
    }
    let req = session.req_header();
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let upstream_ms = ctx
        .upstream_sent
        .map(|t| t.elapsed().as_secs_f64() * 1000.0);
    tracing::info!(
        target: "access",
        site = site.map_or("-", |s| s.config.name.as_str()),
        client = %client,
        method = %req.method,
        path = req.uri.path(),
        version = ?req.version,
        status,
        operation = operation.map_or("-", |o| o.as_str()),
        realtime = ctx.appsync_realtime(),
        rejected = ctx.rejected.unwrap_or("-"),
        cache = graphql
            .and_then(|g| g.cache_status)
            .map_or("-", |c| c.label()),
        upstream_failure = ctx.failure.map_or("-", |f| f.label()),
        error = e.map(|e| e.etype().as_str()).unwrap_or("-"),
        duration_ms = seconds * 1000.0,
        upstream_ms,
        bytes_out = session.body_bytes_sent(),
    );
}
