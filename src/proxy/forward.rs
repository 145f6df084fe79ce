//! The request as the upstream sees it: the upstream's path and Host, the X-Forwarded-*
//! headers that tell it who the client was, the body or query string the edge rewrote, and
//! the edge's SigV4 signature.

use std::time::SystemTime;

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use super::{Graphql, Kind, RequestCtx};
use crate::config::Endpoint;
use crate::realtime;
use crate::rejection::Rejection;

/// `upstream_request_filter`: the request header the upstream gets.
pub fn upstream_request(
    session: &Session,
    req: &mut RequestHeader,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    let appsync = ctx.appsync_realtime();
    let RequestCtx { site, kind, .. } = ctx;
    let site = site.as_ref().expect("routed");
    let endpoint = if appsync {
        site.realtime.endpoint()
    } else {
        site.upstream.endpoint()
    };
    rewrite(session, req, endpoint)?;
    match &mut *kind {
        Kind::Graphql(g) => rewritten(req, g, endpoint)?,
        Kind::Realtime(socket) => {
            if let Some(path) = &socket.path {
                // Forwarded as is: same path (and query) on the upstream's origin.
                let uri = match req.uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path.clone(),
                };
                if let Ok(uri) = http::Uri::try_from(uri) {
                    req.set_uri(uri);
                }
            }
            // Frames are read on the way: no compression may be negotiated.
            req.remove_header(&http::header::SEC_WEBSOCKET_EXTENSIONS);
            if let Some(header) = &socket.rewritten {
                realtime::write_back(req, header)?;
            }
        }
        Kind::Pending | Kind::Passthrough => {}
    }
    if let (Some(signing), false) = (&site.config.upstream_signing, appsync) {
        // The body the upstream gets: the edge's rewrite, or the client's as read.
        let rewritten = match &*kind {
            Kind::Graphql(g) => g.upstream_body.clone(),
            _ => None,
        };
        let body = rewritten.unwrap_or_else(|| {
            session
                .as_downstream()
                .get_retry_buffer()
                .unwrap_or_default()
        });
        crate::upstream::sigv4::sign_upstream(req, &body, signing, SystemTime::now())
            .map_err(|e| Error::explain(ErrorType::InternalError, e))?;
    }
    Ok(())
}

/// A GraphQL request's rewrites: GET sent as POST, the rewritten body or query string.
fn rewritten(req: &mut RequestHeader, g: &mut Graphql, endpoint: &Endpoint) -> pingora::Result<()> {
    if g.get_as_post {
        as_post(req, endpoint)?;
    }
    if let Some(new) = &g.upstream_body {
        g.body_replaced = false;
        req.remove_header(&http::header::TRANSFER_ENCODING);
        req.insert_header(http::header::CONTENT_LENGTH, new.len().to_string())?;
    }
    if let Some(q) = &g.upstream_query {
        let uri = format!("{}?{q}", req.uri.path());
        let uri = http::Uri::try_from(uri)
            .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "upstream query", e))?;
        req.set_uri(uri);
    }
    Ok(())
}

/// `request_body_filter` of a request whose whole body the edge read: the upstream gets the
/// rewritten body in place of the first chunk, and nothing after it (a GET sent as POST has no
/// chunk: the body goes with the end of the request).
pub fn replace_body(g: &mut Graphql, body: &mut Option<bytes::Bytes>, end_of_stream: bool) {
    let Some(new) = &g.upstream_body else {
        return;
    };
    if body.is_some() || (end_of_stream && !g.body_replaced) {
        *body = (!g.body_replaced).then(|| new.clone());
        g.body_replaced = true;
    }
}

/// Rewrite the upstream request for `endpoint`, keeping the client's query string.
pub fn rewrite(
    session: &Session,
    req: &mut RequestHeader,
    endpoint: &Endpoint,
) -> pingora::Result<()> {
    let original_host = req.uri.authority().map(|a| a.to_string()).or_else(|| {
        req.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    });
    let uri = match req.uri.query() {
        Some(q) if !q.is_empty() => {
            let sep = if endpoint.path.contains('?') {
                '&'
            } else {
                '?'
            };
            let path = format!("{}{sep}{q}", endpoint.path);
            http::Uri::builder()
                .path_and_query(path)
                .build()
                .map_err(|e| {
                    pingora::Error::because(
                        pingora::ErrorType::InvalidHTTPHeader,
                        "upstream path",
                        e,
                    )
                })?
        }
        _ => endpoint.path_uri.clone(),
    };
    req.set_uri(uri);
    req.insert_header(http::header::HOST, endpoint.host_header.as_str())?;
    // Some servers fold `_` into `-` (`Content_Length`, `Transfer_Encoding`): such a header
    // could frame or route the request differently upstream than the edge read it.
    let underscored: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    for name in underscored {
        req.remove_header(&name);
    }

    if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
        let ip = client.ip().to_string();
        let xff = match req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
            _ => ip,
        };
        req.insert_header("x-forwarded-for", xff)?;
    }
    req.insert_header("x-forwarded-proto", "https")?;
    if let Some(h) = original_host {
        req.insert_header("x-forwarded-host", h)?;
    }
    Ok(())
}

/// A GraphQL GET's query string as the equivalent POST body (`query`, `operationName`,
/// `variables`, `extensions`), for upstreams that take POST only (AppSync).
pub fn get_as_post_body(query_string: &[u8]) -> Result<bytes::Bytes, super::respond::EdgeError> {
    let qs = std::str::from_utf8(query_string)
        .map_err(|_| Rejection::InvalidRequest.because("the query string is not UTF-8"))?;
    let req = crate::graphql::GraphqlRequest::from_query_string(qs)
        .map_err(crate::rejection::EdgeError::from)?;
    let mut body = serde_json::Map::new();
    body.insert("query".into(), req.query.into());
    if let Some(name) = req.operation_name {
        body.insert("operationName".into(), name.into());
    }
    if let Some(v) = req.variables {
        body.insert("variables".into(), v.into());
    }
    if let Some(e) = req.extensions {
        body.insert("extensions".into(), e.into());
    }
    Ok(serde_json::Value::Object(body).to_string().into())
}

/// The upstream request for a GET sent on as POST: the endpoint's path, a JSON body (its
/// length is set with the body).
pub fn as_post(req: &mut RequestHeader, endpoint: &Endpoint) -> pingora::Result<()> {
    req.set_method(http::Method::POST);
    req.set_uri(endpoint.path_uri.clone());
    req.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    Ok(())
}
