//! The edge's `ProxyHttp`: each phase is a few lines that call into the module owning the
//! concern. pingora's phase chart, as graphfront uses it:
//!
//! | pingora phase                  | what happens                                          | module                 |
//! |--------------------------------|-------------------------------------------------------|------------------------|
//! | request_filter                 | route by Host/SNI; admit a real-time upgrade, or check, plan and maybe answer a GraphQL request | routing, [`upgrade`], [`graphql`] |
//! | upstream_peer                  | the site's resolved, pooled upstream (or real-time) peer | upstream            |
//! | fail_to_connect                | the next address of the upstream's name                | upstream               |
//! | upstream_request_filter        | path, Host, X-Forwarded-*, rewritten body or query, SigV4, cache headers | [`forward`], caching |
//! | request_body_filter            | the rewritten body; WebSocket frames from the client   | [`forward`], [`upgrade`] |
//! | upstream_response_filter       | upstream latency, cache and tag bookkeeping            | caching, tagging       |
//! | upstream_response_body_filter  | cache fill, entity tags, purges                        | caching, tagging       |
//! | response_filter                | CORS, `x-cache`, the 101 of an upgrade                 | cors, caching, [`upgrade`] |
//! | response_body_filter           | WebSocket frames to the client (1001 while stopping)   | [`upgrade`]            |
//! | fail_to_proxy                  | stale-if-error, or 502/504 as a GraphQL error          | caching, respond       |
//! | logging                        | metrics and one access-log event                       | access, [`upgrade`]    |

mod access;
mod admit;
pub(crate) mod analyse;
mod apq;
mod caching;
mod cors;
mod forward;
mod graphql;
pub mod respond;
mod tagging;
mod upgrade;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use crate::auth::Principal;
use crate::cache::ResponseCache;
use crate::config::Config;
use crate::graphql::OperationKind;
use crate::metrics;
use crate::realtime::Socket;
use crate::rejection::Rejection;
use crate::routing::SiteTable;
use crate::site::SiteRuntime;
use crate::upstream::FailureKind;
use respond::EdgeError;

/// The proxy: the sites, the table that routes names to them, and the response cache.
pub struct Edge {
    sites: Vec<Arc<SiteRuntime>>,
    table: SiteTable,
    access_log: bool,
    cache: Arc<ResponseCache>,
    /// Automatic persisted queries, per site.
    apq: crate::graphql::apq::Store,
    /// Total deadline for a request body the edge reads.
    request_body: std::time::Duration,
}

/// Per-request state shared by the phases.
pub struct RequestCtx {
    started: Instant,
    /// Counts the request in flight from `request_filter` until the context is dropped.
    in_flight: Option<metrics::InFlight>,
    /// The routed site.
    site: Option<Arc<SiteRuntime>>,
    /// For a request refused before it had a site: the site whose CORS headers it carries.
    headers_from: Option<Arc<SiteRuntime>>,
    /// What kind of request this is, with the state only that kind has.
    kind: Kind,
    /// The code of the edge's own answer, when it refused the request.
    rejected: Option<&'static str>,
    /// The upstream leg: when the request went, how it failed.
    upstream_sent: Option<Instant>,
    failure: Option<FailureKind>,
    connect_failures: usize,
}

/// What a request is, once `request_filter` has looked at it.
pub enum Kind {
    /// Not (yet) classified: refused early, or a CORS preflight answered at the edge.
    Pending,
    /// A request to the GraphQL path, analysed by the edge.
    Graphql(Graphql),
    /// A WebSocket that passed the handshake checks (AppSync real-time, or a path forwarded as
    /// is). Boxed: it holds both directions' decoders.
    Realtime(Box<Socket>),
    /// Forwarded without analysis (an OPTIONS preflight the site has no CORS policy for).
    Passthrough,
}

/// The state of a GraphQL request between the phases.
#[derive(Default)]
pub struct Graphql {
    operation: Option<OperationKind>,
    /// Who the auth pre-check accepted.
    principal: Option<Principal>,
    /// Auth accepted credentials only the upstream can verify (IAM): no cache.
    unverified_auth: bool,
    /// Boxed, like the other parts only some requests use: the context is moved with the
    /// request's futures, so its size is copied on every request.
    cache: Option<Box<caching::CacheState>>,
    cache_status: Option<caching::Status>,
    /// Whether the collected response was stored, or why not.
    stored: Option<Result<(), crate::cache::NotCached>>,
    /// The request body the upstream gets instead of the client's (the edge rewrote the
    /// request: a persisted query expanded, `__typename` added for cache tags).
    upstream_body: Option<bytes::Bytes>,
    /// The query string the upstream gets instead of the client's (GET).
    upstream_query: Option<String>,
    /// A GET that goes upstream as POST (`upstream_body` holds its JSON).
    get_as_post: bool,
    /// Whether this upstream attempt already sent `upstream_body`.
    body_replaced: bool,
    /// The response is tagged (a cached query, or a mutation that may purge).
    tags: Option<Box<tagging::Tagging>>,
}

impl RequestCtx {
    fn graphql(&self) -> Option<&Graphql> {
        match &self.kind {
            Kind::Graphql(g) => Some(g),
            _ => None,
        }
    }

    fn graphql_mut(&mut self) -> Option<&mut Graphql> {
        match &mut self.kind {
            Kind::Graphql(g) => Some(g),
            _ => None,
        }
    }

    fn socket(&self) -> Option<&Socket> {
        match &self.kind {
            Kind::Realtime(s) => Some(s),
            _ => None,
        }
    }

    /// AppSync real-time: its own upstream endpoint, never signed by the edge.
    fn appsync_realtime(&self) -> bool {
        self.socket().is_some_and(|s| s.appsync)
    }
}

/// Connection attempts per request when the upstream's name has several addresses.
const MAX_CONNECT_ATTEMPTS: usize = 3;

impl Edge {
    pub fn new(
        config: &Config,
        cache: Arc<ResponseCache>,
    ) -> Result<Self, crate::upstream::UpstreamError> {
        let global_ca = match &config.upstream_ca_file {
            Some(p) => crate::upstream::read_ca_file(p)?,
            None => Vec::new(),
        };
        let sites = config
            .sites
            .iter()
            .enumerate()
            .map(|(i, s)| SiteRuntime::new(i, s.clone(), config.dns_ttl, &global_ca).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            sites,
            table: SiteTable::new(config.sites.iter().map(|s| s.as_ref())),
            access_log: config.access_log,
            cache,
            apq: crate::graphql::apq::Store::new(&config.sites),
            request_body: config.clients.request_body,
        })
    }

    fn count_upstream_failure(&self, ctx: &mut RequestCtx, e: &Error) {
        let kind = ctx.failure.unwrap_or_else(|| FailureKind::of(e));
        ctx.failure = Some(kind);
        if let Some(site) = &ctx.site {
            metrics::get()
                .upstream_errors
                .with_label_values(&[&site.config.name, kind.label()])
                .inc();
        }
    }

    /// Answer `e` (counted, with the site's CORS headers): the request is done.
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        e: EdgeError,
    ) -> pingora::Result<bool> {
        ctx.rejected = Some(e.code());
        if admit::is_chunked(session) || !session.is_body_done() {
            // What follows an unread chunked body is never parsed as a request of its own
            // (analyse::read_post closes after a broken one).
            session.set_keepalive(None);
        }
        let site = ctx.site.as_ref().map_or("none", |s| s.config.name.as_str());
        metrics::get()
            .rejections
            .with_label_values(&[site, e.code()])
            .inc();
        answer(session, ctx, e).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            in_flight: None,
            site: None,
            headers_from: None,
            kind: Kind::Pending,
            rejected: None,
            upstream_sent: None,
            failure: None,
            connect_failures: 0,
        }
    }

    /// Route, then admit a real-time upgrade or handle a GraphQL request.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        ctx.in_flight = Some(metrics::InFlight::start());
        let Some(site) = self.admit(session, ctx).await? else {
            return Ok(true);
        };
        match upgrade::path_kind(session, &site) {
            Ok(upgrade::PathKind::WebSocket { appsync, forwarded }) => {
                upgrade::admit(self, session, ctx, &site, appsync, forwarded).await
            }
            Ok(upgrade::PathKind::Graphql) => graphql::handle(self, session, ctx, &site).await,
            Err(e) => self.reject(session, ctx, e).await,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let site = ctx
            .site
            .as_ref()
            .expect("request_filter routed the request");
        let upstream = if ctx.appsync_realtime() {
            &site.realtime
        } else {
            &site.upstream
        };
        let mut peer = upstream.peer().await.map_err(|e| {
            ctx.failure = Some(FailureKind::Dns);
            Error::explain(ErrorType::Custom("dns"), e.to_string())
        })?;
        if ctx.socket().is_some() {
            // A subscription may be quiet; the upstream's keep-alives (AppSync: every minute)
            // keep it open.
            peer.options.read_timeout = Some(site.config.websocket.idle_timeout);
        }
        Ok(peer)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // A name with several addresses (AppSync has many; `localhost` may be ::1 and
        // 127.0.0.1): try the next one before failing the request.
        ctx.connect_failures += 1;
        let addresses = ctx.site.as_ref().map_or(1, |s| {
            if ctx.appsync_realtime() {
                &s.realtime
            } else {
                &s.upstream
            }
            .address_count()
        });
        let retryable = matches!(
            FailureKind::of(&e),
            FailureKind::Connect | FailureKind::Timeout
        );
        if retryable && ctx.connect_failures < addresses.min(MAX_CONNECT_ATTEMPTS) {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        forward::upstream_request(session, upstream_request, ctx)?;
        if let Some(g) = ctx.graphql() {
            caching::upstream_request(g, upstream_request);
        }
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let (Some(site), Some(sent)) = (&ctx.site, ctx.upstream_sent) {
            site.upstream_seconds.observe(sent.elapsed().as_secs_f64());
        }
        let (Some(site), Kind::Graphql(g)) = (&ctx.site, &mut ctx.kind) else {
            return Ok(());
        };
        tagging::response_header(session, g, upstream_response);
        caching::upstream_response(site, g, upstream_response)
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<std::time::Duration>> {
        let (Some(site), Kind::Graphql(g)) = (&ctx.site, &mut ctx.kind) else {
            return Ok(None);
        };
        tagging::response_body(&self.cache, site, g, body, end_of_stream);
        caching::upstream_body(&self.cache, session, site, g, body, end_of_stream);
        Ok(None)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        for (k, v) in cors_headers(session, ctx) {
            upstream_response.insert_header(k, v)?;
        }
        if session.is_upgrade_req() {
            upgrade::response(ctx, upstream_response);
        }
        match ctx.graphql() {
            Some(g) => caching::response(session, g, upstream_response),
            None => Ok(()),
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let upstream_side = ctx.failure.is_some() || e.esource() == &pingora::ErrorSource::Upstream;
        // pingora does not reuse the client's connection after a failure: the answer says it
        // closes, so a keep-alive client does not send its next request into a closed one.
        session.set_keepalive(None);
        if upstream_side {
            self.count_upstream_failure(ctx, e);
            if let (Some(site), Kind::Graphql(g)) = (ctx.site.clone(), &mut ctx.kind) {
                if caching::serve_stale_on_error(session, &site, g).await {
                    return FailToProxy {
                        error_code: 200,
                        can_reuse_downstream: false,
                    };
                }
            }
        }
        let refusal = if upstream_side {
            let kind = ctx.failure.unwrap_or(FailureKind::Other);
            Rejection::Upstream(kind).because(upstream_message(kind))
        } else if is_client_abort(e) {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        } else {
            match e.etype() {
                ErrorType::HTTPStatus(s) if *s < 500 => {
                    Rejection::Refused(*s).because("the request could not be processed")
                }
                ErrorType::HTTPStatus(s) => Rejection::Refused(*s).because("internal error"),
                _ if e.esource() == &pingora::ErrorSource::Downstream => {
                    Rejection::Refused(400).because("the request could not be read")
                }
                _ => Rejection::Internal.because("internal error"),
            }
        };
        // Once the response has started, the client can only see the connection close.
        let code = if session.response_written().is_some() {
            0
        } else {
            let status = refusal.status();
            let _ = answer(session, ctx, refusal).await;
            status
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        match &mut ctx.kind {
            Kind::Graphql(g) => {
                forward::replace_body(g, body, end_of_stream);
                Ok(())
            }
            Kind::Realtime(socket) => {
                let site = ctx.site.as_ref().expect("routed");
                upgrade::from_client(session, site, socket, body).await
            }
            Kind::Pending | Kind::Passthrough => Ok(()),
        }
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<std::time::Duration>> {
        if let (Some(site), Kind::Realtime(socket)) = (&ctx.site, &mut ctx.kind) {
            upgrade::to_client(session, site, socket, body);
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.in_flight = None;
        upgrade::ended(session, e, ctx);
        access::record(session, e, ctx, self.access_log);
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, e: &Error) -> bool {
        // Upstream failures are counted and logged once by the access log; client aborts are
        // routine at the edge.
        ctx.failure.is_some() || ctx.rejected.is_some() || is_client_abort(e)
    }
}

/// The CORS headers this request's Origin gets from its site (none without a policy).
/// Write an answer of the edge's own, with the response headers its site adds to every answer
/// (CORS): the one path for every error the edge writes.
async fn answer(session: &mut Session, ctx: &RequestCtx, mut e: EdgeError) -> pingora::Result<()> {
    e.headers.extend(cors_headers(session, ctx));
    respond::send(&e, session).await
}

fn cors_headers(session: &Session, ctx: &RequestCtx) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let site = ctx.site.as_ref().or(ctx.headers_from.as_ref());
    match site.and_then(|s| s.config.cors.as_ref()) {
        Some(c) => c.headers_for(session.req_header().headers.get(http::header::ORIGIN)),
        None => Vec::new(),
    }
}

/// The client went away mid-request: nothing to answer, nothing to log as an error.
fn is_client_abort(e: &Error) -> bool {
    e.esource() == &pingora::ErrorSource::Downstream
        && matches!(
            e.etype(),
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed
        )
}

fn upstream_message(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Timeout => "the upstream GraphQL API did not answer in time",
        FailureKind::Dns => "the upstream GraphQL API's host name could not be resolved",
        FailureKind::Tls => "the upstream GraphQL API's TLS certificate was not accepted",
        _ => "the upstream GraphQL API could not be reached",
    }
}
