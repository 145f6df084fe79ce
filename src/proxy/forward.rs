//! The request as the upstream sees it: the upstream's path and Host, and the
//! X-Forwarded-* headers that tell it who the client was.

use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::config::Endpoint;

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
