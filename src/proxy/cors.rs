//! CORS and CSRF at the edge: preflights answered for configured origins, CORS headers on
//! every response to an allowed origin, and Apollo-style CSRF prevention.

use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::respond::EdgeError;
use crate::config::cors::Cors;
use crate::config::Site;
use crate::rejection::Rejection;

impl Cors {
    /// The `Access-Control-Allow-Origin` value for this request's Origin, if allowed.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match &self.origins {
            None if !self.credentials => Some(HeaderValue::from_static("*")),
            None => Some(origin.clone()),
            Some(list) => {
                let o = origin.to_str().ok()?;
                list.iter()
                    .any(|a| a.eq_ignore_ascii_case(o))
                    .then(|| origin.clone())
            }
        }
    }

    /// Response headers for a request from `origin` (empty when not allowed).
    pub fn headers_for(&self, origin: Option<&HeaderValue>) -> Vec<(HeaderName, HeaderValue)> {
        let Some(allowed) = origin.and_then(|o| self.allow_origin(o)) else {
            return Vec::new();
        };
        let mut h = vec![
            (http::header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed),
            (http::header::VARY, HeaderValue::from_static("Origin")),
        ];
        if self.credentials {
            h.push((
                http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(e) = &self.expose {
            h.push((http::header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
        }
        h
    }
}

/// A preflight (`OPTIONS` with `Access-Control-Request-Method`), answered here when the site
/// has a CORS policy: 204 with the policy for an allowed origin, 403 otherwise.
pub async fn preflight(session: &mut Session, cors: &Cors) -> pingora::Result<bool> {
    let req = session.req_header();
    if req.method != http::Method::OPTIONS
        || !req
            .headers
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return Ok(false);
    }
    let allowed = cors.headers_for(req.headers.get(http::header::ORIGIN));
    let status = if allowed.is_empty() { 403 } else { 204 };
    let mut h = ResponseHeader::build(status, Some(8))?;
    for (k, v) in allowed {
        h.append_header(k, v)?;
    }
    if status == 204 {
        h.insert_header(
            http::header::ACCESS_CONTROL_ALLOW_METHODS,
            cors.methods.clone(),
        )?;
        h.insert_header(
            http::header::ACCESS_CONTROL_ALLOW_HEADERS,
            cors.headers.clone(),
        )?;
        h.insert_header(http::header::ACCESS_CONTROL_MAX_AGE, cors.max_age.clone())?;
    }
    h.insert_header(http::header::CONTENT_LENGTH, "0")?;
    session.write_response_header(Box::new(h), true).await?;
    Ok(true)
}

/// Refuse what a browser could send cross-site without a preflight: GET or POST with no or a
/// simple content type, and none of the site's required headers.
pub fn check_csrf(session: &Session, site: &Site) -> Result<(), EdgeError> {
    if !site.csrf {
        return Ok(());
    }
    let req = session.req_header();
    let simple_type = match req.headers.get(http::header::CONTENT_TYPE) {
        None => true,
        Some(v) => {
            let essence = v
                .to_str()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim();
            [
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ]
            .iter()
            .any(|s| essence.eq_ignore_ascii_case(s))
        }
    };
    if !simple_type
        || site
            .csrf_required_headers
            .iter()
            .any(|h| req.headers.contains_key(h))
    {
        return Ok(());
    }
    Err(Rejection::CsrfPrevented.because(format!(
            "this request was blocked as a potential cross-site request forgery: send Content-Type: application/json, or one of these headers: {}",
            site.csrf_required_headers.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
        )))
}
