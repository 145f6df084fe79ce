//! The edge's `ProxyHttp`: each phase calls into the module that owns the concern.
//!
//! | pingora phase            | what happens                          | module              |
//! |--------------------------|---------------------------------------|---------------------|
//! | request_filter           | route by Host/SNI, GraphQL pre-check  | routing, analyse    |
//! | upstream_peer            | resolved, pooled upstream peer        | upstream            |
//! | upstream_request_filter  | path, Host, X-Forwarded-*             | forward             |
//! | upstream_response_filter | upstream latency                      | metrics             |
//! | fail_to_proxy            | 502/504 as a GraphQL error            | respond, upstream   |
//! | logging                  | metrics and one access-log event      | access              |

mod access;
pub(crate) mod analyse;
mod apq;
mod caching;
mod cors;
mod forward;
pub mod respond;
mod tagging;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};

use crate::cache::ResponseCache;
use crate::config::Config;
use crate::graphql::OperationKind;
use crate::metrics;
use crate::rejection::Rejection;
use crate::routing::{host_of, SiteTable};
use crate::site::SiteRuntime;
use crate::tls::TlsInfo;
use crate::upstream::FailureKind;
use crate::{auth, realtime};
use analyse::Raw;
use respond::EdgeError;

/// The proxy: the sites, the table that routes names to them, and the response cache.
pub struct Edge {
    sites: Vec<Arc<SiteRuntime>>,
    table: SiteTable,
    access_log: bool,
    cache: Arc<ResponseCache>,
    /// Automatic persisted queries, per site.
    apq: apq::Store,
    /// Total deadline for a request body the edge reads.
    request_body: std::time::Duration,
}

/// Per-request state shared by the phases.
pub struct RequestCtx {
    started: Instant,
    /// Counts the request in flight from `request_filter` until the request ends.
    in_flight: Option<metrics::InFlight>,
    /// For a request refused before it had a site: the site whose CORS headers it carries.
    headers_from: Option<Arc<SiteRuntime>>,
    site: Option<Arc<SiteRuntime>>,
    operation: Option<OperationKind>,
    realtime: bool,
    upstream_sent: Option<Instant>,
    failure: Option<FailureKind>,
    rejected: Option<&'static str>,
    /// Boxed, like the other parts only some requests use: the context is moved with the
    /// request's futures, so its size is copied on every request.
    cache: Option<Box<caching::CacheState>>,
    cache_status: Option<caching::Status>,
    /// Whether the collected response was stored, or why not.
    stored: Option<Result<(), &'static str>>,
    connect_failures: usize,
    /// Who the auth pre-check accepted.
    principal: Option<auth::Principal>,
    /// The upstream switched protocols: this session is a proxied WebSocket.
    websocket: bool,
    /// Auth accepted credentials only the upstream can verify (IAM): no cache.
    unverified_auth: bool,
    /// A WebSocket upgrade that passed the handshake checks.
    socket: Option<Box<realtime::Socket>>,
    /// The path of a WebSocket forwarded as is (`websocket.paths`).
    ws_path: Option<String>,
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
            apq: apq::Store::new(&config.sites),
            request_body: config.clients.request_body,
        })
    }

    /// The site for this request, or why there is none (421: wrong host for this connection),
    /// with the site whose response headers (CORS) the refusal carries: the one the Host
    /// names, else the one the TLS connection was made for.
    fn route(
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

    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        e: EdgeError,
    ) -> pingora::Result<bool> {
        ctx.rejected = Some(e.code());
        if is_chunked(session) || !session.is_body_done() {
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
            headers_from: None,
            site: None,
            operation: None,
            realtime: false,
            socket: None,
            ws_path: None,
            upstream_body: None,
            upstream_query: None,
            get_as_post: false,
            body_replaced: false,
            tags: None,
            upstream_sent: None,
            failure: None,
            rejected: None,
            cache: None,
            cache_status: None,
            stored: None,
            connect_failures: 0,
            principal: None,
            websocket: false,
            unverified_auth: false,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        ctx.in_flight = Some(metrics::InFlight::start());
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
                return self.reject(session, ctx, e).await;
            }
        };
        ctx.site = Some(site.clone());
        if let Some(policy) = &site.config.cors {
            if cors::preflight(session, policy).await? {
                return Ok(true);
            }
        }
        if let Err(e) = single_credentials(&session.req_header().headers) {
            return self.reject(session, ctx, e).await;
        }
        let get = session.req_header().method == http::Method::GET;
        if get && !session.as_downstream_mut().is_body_empty() {
            // Only the query string of a GET is checked: a body would reach the upstream
            // unread (and a WebSocket handshake has none).
            let e = Rejection::BodyNotAllowed.because("a GET request carries no body");
            return self.reject(session, ctx, e).await;
        }
        let path = session.req_header().uri.path();
        let appsync = path == site.config.realtime_path;
        let other_ws = site.config.websocket.paths.iter().any(|p| p == path);
        let upgrade = session.is_upgrade_req();
        if upgrade && !get {
            let e =
                Rejection::WebsocketBadHandshake.because("a WebSocket handshake is a GET request");
            return self.reject(session, ctx, e).await;
        }
        if appsync || other_ws || upgrade {
            if !upgrade {
                let e =
                    Rejection::WebsocketRequired.because("this path takes WebSocket upgrades only");
                return self.reject(session, ctx, e).await;
            }
            if !appsync && !other_ws {
                let e = Rejection::WebsocketNotAllowed.because("WebSocket upgrades are accepted only on this site's real-time path and its configured websocket paths");
                return self.reject(session, ctx, e).await;
            }
            let client = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            return match realtime::open(session.req_header(), client, &site, appsync).await {
                Ok(socket) => {
                    ctx.realtime = appsync;
                    ctx.ws_path = other_ws.then(|| path.to_string());
                    // Until connection_init (AppSync) the client must speak; then it may stay
                    // silent as long as the subscription lives.
                    session.set_read_timeout(
                        appsync.then_some(site.config.websocket.connection_init_timeout),
                    );
                    ctx.socket = Some(Box::new(socket));
                    Ok(false)
                }
                Err((reason, e)) => {
                    metrics::get()
                        .websocket_rejections
                        .with_label_values(&[&site.config.name, reason])
                        .inc();
                    self.reject(session, ctx, e).await
                }
            };
        }
        if path != site.config.graphql_path {
            let e = Rejection::NotFound.because(format!("no GraphQL endpoint at {path}"));
            return self.reject(session, ctx, e).await;
        }
        let mut authorizer_token = None;
        if let Some(modes) = &site.auth {
            match auth::check(session, &site.config.name, modes).await {
                auth::Outcome::Accepted(a) => {
                    ctx.unverified_auth = !a.verified;
                    ctx.principal = Some(a.principal);
                }
                auth::Outcome::Authorizer { token, principal } => {
                    ctx.principal = Some(principal);
                    authorizer_token = Some(token);
                }
                auth::Outcome::Rejected(e) => return self.reject(session, ctx, e).await,
            }
        }
        let method = session.req_header().method.clone();
        if matches!(method, http::Method::GET | http::Method::POST) && !session.is_upgrade_req() {
            if let Err(e) = cors::check_csrf(session, &site.config) {
                return self.reject(session, ctx, e).await;
            }
        }
        let raw = match method {
            http::Method::POST => {
                analyse::read_post(session, &site.config, self.request_body).await
            }
            http::Method::GET => Ok(analyse::read_get(session)),
            // CORS preflights are the upstream's to answer for now.
            http::Method::OPTIONS => return Ok(false),
            _ => Err(Rejection::MethodNotAllowed
                .because("GraphQL takes POST (and GET for queries)")
                .with_header("allow", "GET, POST, OPTIONS")),
        };
        let (bytes, is_get) = match raw {
            Ok(Raw::Body(b)) => (b, false),
            Ok(Raw::Query(q)) => (q, true),
            Err(e) => return self.reject(session, ctx, e).await,
        };
        // Automatic persisted queries (proxy/apq.rs): from here on `bytes` is the full request.
        let Some(bytes) = apq::expand(self, session, ctx, &site, bytes, is_get).await? else {
            return Ok(true);
        };
        let principal = ctx.principal.as_deref();
        let plan =
            analyse::plan(&self.cache, &site, session, principal, &bytes, is_get).and_then(|p| {
                if is_get {
                    analyse::check_get(&p).map(|()| p)
                } else {
                    Ok(p)
                }
            });
        let plan = match plan {
            Ok(p) => p,
            Err(e) => return self.reject(session, ctx, e).await,
        };
        ctx.operation = Some(plan.kind);
        if let (Some(token), Some(authorizer)) = (
            authorizer_token,
            site.auth.as_ref().and_then(|a| a.authorizer.as_ref()),
        ) {
            let verdict = authorizer
                .check(
                    &token,
                    &bytes,
                    is_get,
                    plan.kind,
                    &plan.root_fields,
                    &session.req_header().headers,
                )
                .await;
            if let Err(e) = auth::authorizer_outcome(&site.config.name, verdict) {
                return self.reject(session, ctx, e).await;
            }
        }
        if ctx.unverified_auth {
            caching::bypass(&site, ctx, "unverified-auth");
            tagging::read_only(ctx, &plan, &bytes, is_get);
            return Ok(false);
        }
        let served =
            caching::lookup(&self.cache, &site, session, ctx, &plan, bytes.clone()).await?;
        if !served {
            tagging::prepare_upstream(ctx, &plan, &bytes, is_get);
            if is_get && site.config.get_as_post {
                let qs = match ctx.upstream_query.take() {
                    Some(q) => bytes::Bytes::from(q),
                    None => bytes.clone(),
                };
                match forward::get_as_post_body(&qs) {
                    Ok(body) => {
                        ctx.upstream_body = Some(body);
                        ctx.get_as_post = true;
                    }
                    Err(e) => return self.reject(session, ctx, e).await,
                }
            }
            caching::sent_upstream(ctx);
        }
        Ok(served)
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
        let upstream = if ctx.realtime {
            &site.realtime
        } else {
            &site.upstream
        };
        let mut peer = upstream.peer().await.map_err(|e| {
            ctx.failure = Some(FailureKind::Dns);
            Error::explain(ErrorType::Custom("dns"), e.to_string())
        })?;
        if ctx.socket.is_some() {
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
            if ctx.realtime {
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
        let site = ctx.site.as_ref().expect("routed");
        let endpoint = if ctx.realtime {
            site.realtime.endpoint()
        } else {
            site.upstream.endpoint()
        };
        forward::rewrite(session, upstream_request, endpoint)?;
        if ctx.get_as_post {
            forward::as_post(upstream_request, endpoint)?;
        }
        if let Some(path) = &ctx.ws_path {
            // Forwarded as is: same path (and query) on the upstream's origin.
            let uri = match upstream_request.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            if let Ok(uri) = http::Uri::try_from(uri) {
                upstream_request.set_uri(uri);
            }
        }
        if let Some(socket) = &ctx.socket {
            // Frames are read on the way: no compression may be negotiated.
            upstream_request.remove_header(&http::header::SEC_WEBSOCKET_EXTENSIONS);
            if let Some(header) = &socket.rewritten {
                realtime::write_back(upstream_request, header)?;
            }
        }
        if let Some(new) = &ctx.upstream_body {
            ctx.body_replaced = false;
            upstream_request.remove_header(&http::header::TRANSFER_ENCODING);
            upstream_request.insert_header(http::header::CONTENT_LENGTH, new.len().to_string())?;
        }
        if let Some(q) = &ctx.upstream_query {
            let uri = format!("{}?{q}", upstream_request.uri.path());
            let uri = http::Uri::try_from(uri)
                .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "upstream query", e))?;
            upstream_request.set_uri(uri);
        }
        if let (Some(signing), false) = (&site.config.upstream_signing, ctx.realtime) {
            let body = ctx.upstream_body.clone().unwrap_or_else(|| {
                session
                    .as_downstream()
                    .get_retry_buffer()
                    .unwrap_or_default()
            });
            crate::upstream::sigv4::sign_upstream(
                upstream_request,
                &body,
                signing,
                SystemTime::now(),
            )
            .map_err(|e| Error::explain(ErrorType::InternalError, e))?;
        }
        caching::upstream_request(ctx, upstream_request);
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
        tagging::response_header(session, ctx, upstream_response);
        caching::upstream_response(ctx, upstream_response)
    }

    fn upstream_response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<std::time::Duration>> {
        if let Some(site) = ctx.site.clone() {
            tagging::response_body(&self.cache, &site, ctx, body, end_of_stream);
        }
        caching::upstream_body(&self.cache, session, ctx, body, end_of_stream);
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
            let upgraded = upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS;
            count_websocket(ctx, if upgraded { "upgraded" } else { "refused" });
            if upgraded {
                ctx.websocket = true;
                metrics::get().websocket_open.inc();
            }
        }
        caching::response(session, ctx, upstream_response)
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
            if caching::serve_stale_on_error(session, ctx).await {
                return FailToProxy {
                    error_code: 200,
                    can_reuse_downstream: false,
                };
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

    /// WebSocket bytes from the client, once upgraded: decoded, checked (AppSync `start`),
    /// capped; a refused `start` is answered with AppSync's `error` message and not forwarded,
    /// a stream over the caps or breaking the protocol is closed with its close code.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(new) = &ctx.upstream_body {
            // The whole body was read at the edge; the upstream gets the rewritten one in
            // place of the first chunk, and nothing after it (a GET sent as POST has no
            // chunk: the body goes with the end of the request).
            if body.is_some() || (end_of_stream && !ctx.body_replaced) {
                *body = (!ctx.body_replaced).then(|| new.clone());
                ctx.body_replaced = true;
            }
            return Ok(());
        }
        let (Some(socket), Some(site)) = (ctx.socket.as_mut(), ctx.site.as_ref()) else {
            return Ok(());
        };
        if !session.was_upgraded() {
            return Ok(());
        }
        let Some(chunk) = body.take() else {
            return Ok(());
        };
        if socket.closing {
            // The client answers our close; pass it on so the upstream closes too.
            *body = Some(chunk);
            return Ok(());
        }
        match socket.client_chunk(site, &chunk).await {
            Ok(from) => {
                if from.initialised {
                    session.set_read_timeout(None);
                }
                for reply in from.replies {
                    session.write_response_body(Some(reply), false).await?;
                }
                if crate::server::lifecycle::draining() {
                    let close = socket.close_for_client(1001, "the edge is restarting");
                    session.write_response_body(Some(close), false).await?;
                }
                *body = Some(from.forward);
                Ok(())
            }
            Err(close) => {
                let reason = match close.code {
                    1009 => "too_big",
                    4401 | 4403 => "auth",
                    _ => "protocol",
                };
                metrics::get()
                    .websocket_rejections
                    .with_label_values(&[&site.config.name, reason])
                    .inc();
                let frame = socket.close_for_client(close.code, close.reason);
                session.write_response_body(Some(frame), true).await?;
                Error::e_explain(
                    ErrorType::Custom("websocket_closed"),
                    format!("websocket closed by the edge: {close}"),
                )
            }
        }
    }

    /// WebSocket bytes to the client: counted; while stopping, followed by a close (1001) so
    /// clients reconnect elsewhere.
    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<std::time::Duration>> {
        let (Some(socket), Some(site)) = (ctx.socket.as_mut(), ctx.site.as_ref()) else {
            return Ok(None);
        };
        if !session.was_upgraded() {
            return Ok(None);
        }
        if socket.closing {
            // Nothing may follow our close frame.
            *body = None;
            return Ok(None);
        }
        if let Some(chunk) = body.as_ref() {
            socket.upstream_chunk(site, chunk);
        }
        if crate::server::lifecycle::draining() {
            let close = socket.close_for_client(1001, "the edge is restarting");
            let mut out = bytes::BytesMut::new();
            if let Some(chunk) = body.take() {
                out.extend_from_slice(&chunk);
            }
            out.extend_from_slice(&close);
            *body = Some(out.freeze());
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let m = metrics::get();
        ctx.in_flight = None;
        if let (Some(socket), Some(site), Some(e)) = (&ctx.socket, &ctx.site, e) {
            if !socket.initialised && matches!(e.etype(), ErrorType::ReadTimedout) {
                m.websocket_rejections
                    .with_label_values(&[&site.config.name, "init_timeout"])
                    .inc();
            }
        }
        if ctx.websocket {
            m.websocket_open.dec();
        } else if session.is_upgrade_req() && ctx.failure.is_some() {
            count_websocket(ctx, "failed");
        }
        access::record(session, e, ctx, self.access_log);
    }

    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, e: &Error) -> bool {
        // Upstream failures are counted and logged once by the access log; client aborts are
        // routine at the edge.
        ctx.failure.is_some() || ctx.rejected.is_some() || is_client_abort(e)
    }
}

fn count_websocket(ctx: &RequestCtx, outcome: &str) {
    if let Some(site) = &ctx.site {
        metrics::get()
            .websocket_connections
            .with_label_values(&[&site.config.name, outcome])
            .inc();
    }
}

/// Whether the request's body is chunked (HTTP/1.1 `Transfer-Encoding`).
fn is_chunked(session: &Session) -> bool {
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
