//! What holds for every request before its kind matters: the route (Host and SNI), pipelining
//! and draining, a CORS preflight, credentials sent once, no body on a GET.

use std::sync::Arc;

use pingora::proxy::Session;

use super::{cors, Edge, RequestCtx};
use crate::rejection::{EdgeError, Rejection};
use crate::routing::host_of;
use crate::site::SiteRuntime;
use crate::tls::TlsInfo;

impl Edge {
    /// The site for this request, or why there is none (421: wrong host for this connection),
    /// with the site whose response headers (CORS) the refusal carries: the one the Host
    /// names, else the one the TLS connection was made for.
    pub(super) fn route(
        &self,
        session: &Session,
    ) -> Result<Arc<SiteRuntime>, (EdgeError, Option<Arc<SiteRuntime>>)> {
        let req = session.req_header();
        let authority = req
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers.get(http::header::HOST)?.to_str().ok())
            .unwrap_or("");
        let host = host_of(authority);
        let sni_site = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|d| d.extension.get::<TlsInfo>())
            .and_then(|t| t.sni_site);
        let site = |i: Option<usize>| i.map(|i| self.sites[i].clone());
        if host.is_empty() && !authority.is_empty() {
            let e = Rejection::InvalidHost.because(
                "the Host header is not a host name with an optional port from 1 to 65535",
            );
            return Err((e, site(sni_site)));
        }
        let by_host = self.table.lookup(host);
        match (by_host, sni_site) {
            (Some(h), Some(s)) if h != s => Err((
                Rejection::Misdirected.because("the Host header names a site other than the one this TLS connection was made for"),
                site(Some(h)),
            )),
            (Some(h), _) => Ok(self.sites[h].clone()),
            (None, s) => Err((
                Rejection::Misdirected.because("no site is served for this Host"),
                site(s),
            )),
        }
    }

    /// What holds for every request before its kind matters: pipelining, draining, the route,
    /// a CORS preflight, credentials sent once, no body on a GET. `None` when it was answered.
    pub(super) async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<Arc<SiteRuntime>>> {
        let chunked = is_chunked(session);
        if let pingora::protocols::http::ServerSession::H1(h1) = session.as_downstream_mut() {
            // Requests pipelined behind this one are answered in order, not dropped; but not
            // behind a chunked body, where a client and the edge could disagree on its end:
            // then pingora closes the connection after the answer.
            h1.set_pipelining_enabled(!chunked);
        }
        if crate::server::lifecycle::draining() {
            session.set_keepalive(None);
        }
        let site = match self.route(session) {
            Ok(site) => site,
            Err((e, headers_from)) => {
                ctx.headers_from = headers_from;
                self.reject(session, ctx, e).await?;
                return Ok(None);
            }
        };
        ctx.site = Some(site.clone());
        if let Some(policy) = &site.config.cors {
            if cors::preflight(session, policy).await? {
                return Ok(None);
            }
        }
        let refusal = single_credentials(&session.req_header().headers)
            .err()
            .or_else(|| {
                let get = session.req_header().method == http::Method::GET;
                // Only the query string of a GET is checked: a body would reach the upstream
                // unread (and a WebSocket handshake has none).
                (get && !session.as_downstream_mut().is_body_empty())
                    .then(|| Rejection::BodyNotAllowed.because("a GET request carries no body"))
            });
        if let Some(e) = refusal {
            self.reject(session, ctx, e).await?;
            return Ok(None);
        }
        Ok(Some(site))
    }
}

/// Whether the request's body is chunked (HTTP/1.1 `Transfer-Encoding`).
pub(super) fn is_chunked(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .contains_key(http::header::TRANSFER_ENCODING)
}

/// Headers that carry a credential or decide where a request goes: the edge checks one
/// value, so a request carrying one of them twice is refused rather than forwarded with both.
const SINGLE_HEADERS: [&str; 6] = [
    "x-api-key",
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "host",
];

fn single_credentials(headers: &http::HeaderMap) -> Result<(), EdgeError> {
    for name in SINGLE_HEADERS {
        let mut values = headers.get_all(name).iter();
        if values.next().is_some() && values.next().is_some() {
            return Err(Rejection::DuplicateHeader.because(format!(
                "the request carries the {name} header more than once"
            )));
        }
    }
    Ok(())
}
