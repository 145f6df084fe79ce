//! The admin listener (loopback by default): `/metrics`, `/healthz`, `/readyz`, and the admin API
//! (`GET /admin/certificates`, `POST /admin/certificates/reload`, `POST /admin/purge`). With an
//! `[admin]` token, each needs it as a bearer token; without one, purges are off, and the
//! listing and reloads are open to local tools (the listener is on loopback by default) but not
//! to browsers (a request carrying `Origin` or `Sec-Fetch-Site` cannot reload).

mod purge;

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::acme::{Challenges, Manager};
use crate::cache::ResponseCache;
use crate::config::{CertSource, Config};
use crate::metrics;
use crate::tls::CertStore;

pub struct AdminApp {
    pub config: Arc<Config>,
    pub certs: Arc<CertStore>,
    pub cache: Arc<ResponseCache>,
    /// Present when a site takes its certificate from ACME.
    pub acme: Option<Arc<Manager>>,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("static header names and values")
}

fn json(status: u16, v: serde_json::Value) -> Response<Vec<u8>> {
    respond(status, "application/json", v.to_string().into_bytes())
}

fn error(status: u16, message: &str) -> Response<Vec<u8>> {
    json(status, serde_json::json!({ "error": message }))
}

/// `None` when the request carries the `[admin]` token, or none is configured; otherwise
/// the 401 to answer (`action`, for the log line).
fn token_refusal(
    config: &Config,
    session: &ServerSession,
    action: &str,
) -> Option<Response<Vec<u8>>> {
    config.admin_api.token.as_ref()?;
    let presented = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let (message, challenge) = match presented {
        Some(token) if config.admin_api.accepts(token) => return None,
        Some(_) => {
            tracing::warn!("admin: {action} refused: wrong bearer token");
            ("wrong bearer token", "Bearer error=\"invalid_token\"")
        }
        None => ("send Authorization: Bearer <token>", "Bearer"),
    };
    let mut r = error(401, message);
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static(challenge),
    );
    Some(r)
}

/// Without an `[admin]` token, a call that changes state is refused when a browser sent it
/// (it carries `Origin` or `Sec-Fetch-Site`): a page on any site could otherwise post to the
/// loopback listener with a simple cross-origin request. Scripts and curl send neither.
fn browser_refusal(config: &Config, session: &ServerSession) -> Option<Response<Vec<u8>>> {
    if config.admin_api.token.is_some() {
        return None;
    }
    let headers = &session.req_header().headers;
    let from_browser = headers.contains_key(http::header::ORIGIN)
        || headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() != b"none");
    from_browser.then(|| {
        tracing::warn!("admin: a state-changing call from a browser was refused (no [admin] token is configured)");
        error(
            403,
            "admin calls from a browser need the [admin] token; configure one",
        )
    })
}

impl AdminApp {
    /// Ready when every site has a certificate to serve and the process is not stopping.
    fn readiness(&self) -> Response<Vec<u8>> {
        if crate::server::lifecycle::draining() {
            return json(503, serde_json::json!({"ready": false, "draining": true}));
        }
        let missing: Vec<&str> = self
            .config
            .sites
            .iter()
            .enumerate()
            .filter(|(i, _)| self.certs.current(*i).is_none())
            .map(|(_, s)| s.name.as_str())
            .collect();
        if missing.is_empty() {
            json(200, serde_json::json!({"ready": true}))
        } else {
            json(
                503,
                serde_json::json!({"ready": false, "sites_without_certificate": missing}),
            )
        }
    }

    /// Each site's certificate: where it comes from, when it expires, and for ACME sites the
    /// order state (failures, last error, next attempt, renewal time).
    fn certificates(&self) -> Response<Vec<u8>> {
        let sites: Vec<serde_json::Value> = self
            .config
            .sites
            .iter()
            .enumerate()
            .map(|(i, site)| {
                let cert = self.certs.current(i);
                let source = match site.certificate {
                    CertSource::Files { .. } => "files",
                    CertSource::Acme { .. } => "acme",
                };
                serde_json::json!({
                    "site": site.name,
                    "domains": site.domains,
                    "source": source,
                    "serving": cert.is_some(),
                    "not_after": cert.as_ref().map(|c| c.not_after),
                    "acme": self.acme.as_ref().and_then(|m| m.status(i)),
                })
            })
            .collect();
        json(200, serde_json::json!({ "sites": sites }))
    }

    fn reload_certificates(&self) -> Response<Vec<u8>> {
        let (replaced, errors) = self.certs.reload_from_files(&self.config, true);
        let status = if errors.is_empty() { 200 } else { 500 };
        json(
            status,
            serde_json::json!({"replaced": replaced, "errors": errors}),
        )
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        match (method.as_str(), path.as_str()) {
            ("GET", "/metrics") => {
                self.cache.publish_gauges();
                self.certs.publish_gauges();
                respond(200, "text/plain; version=0.0.4", metrics::render())
            }
            ("GET", "/healthz") => respond(200, "text/plain", b"ok\n".to_vec()),
            ("GET", "/readyz") => self.readiness(),
            ("GET", "/admin/certificates") => {
                match token_refusal(&self.config, session, "certificate listing") {
                    Some(refused) => refused,
                    None => self.certificates(),
                }
            }
            ("POST", "/admin/certificates/reload") => {
                let refusal = token_refusal(&self.config, session, "certificate reload")
                    .or_else(|| browser_refusal(&self.config, session));
                match refusal {
                    Some(refused) => {
                        // The body is not read: close rather than drain it.
                        session.set_keepalive(None);
                        refused
                    }
                    None => self.reload_certificates(),
                }
            }
            ("POST", "/admin/purge") => purge::handle(&self.config, &self.cache, session).await,
            (_, "/admin/purge") => {
                let mut r = json(405, serde_json::json!({"error": "use POST"}));
                r.headers_mut()
                    .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
                r
            }
            _ => json(404, serde_json::json!({"error": "not found"})),
        }
    }
}

/// Port 80: a permanent redirect to the same URL over https for the sites served here.
pub struct RedirectApp {
    pub table: crate::routing::SiteTable,
    /// The https port to redirect to, when it is not 443.
    pub https_port: Option<u16>,
    /// ACME HTTP-01 answers, served before any redirect.
    pub challenges: Arc<Challenges>,
}

#[async_trait]
impl ServeHttp for RedirectApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if let Some((site, answer)) = self.challenges.http_answer(req.uri.path()) {
            tracing::info!(site = %site, "acme: answered an http-01 validation");
            return respond(200, "text/plain", answer.into_bytes());
        }
        let authority = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let host = crate::routing::host_of(authority);
        if self.table.lookup(host).is_none() {
            return json(
                404,
                serde_json::json!({"errors": [{"message": "no site is served for this Host", "extensions": {"code": "NOT_FOUND"}}]}),
            );
        }
        let port = self.https_port.map(|p| format!(":{p}")).unwrap_or_default();
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let location = format!("https://{host}{port}{path}");
        Response::builder()
            .status(308)
            .header(http::header::LOCATION, location)
            .header(http::header::CONTENT_LENGTH, 0)
            .body(Vec::new())
            .expect("valid redirect")
    }
}
