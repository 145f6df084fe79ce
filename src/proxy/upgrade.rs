//! WebSockets through the edge: which paths take an upgrade, the handshake checks
//! (`realtime::open`), then each direction's frames while pingora relays them, and the
//! connection's metrics when it ends.

use std::sync::Arc;

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use super::{Edge, Kind, RequestCtx};
use crate::metrics;
use crate::realtime::{self, Socket};
use crate::rejection::{EdgeError, Rejection};
use crate::site::SiteRuntime;

/// What the request's path takes.
pub enum PathKind {
    /// A WebSocket upgrade: AppSync real-time (`realtime-path`) or forwarded as is (`forwarded`,
    /// a `[site.websocket] paths` entry).
    WebSocket { appsync: bool, forwarded: bool },
    /// The GraphQL endpoint.
    Graphql,
}

/// Where this request goes, or why nowhere: an upgrade is a GET on a WebSocket path, and a
/// WebSocket path takes nothing else.
pub fn path_kind(session: &Session, site: &SiteRuntime) -> Result<PathKind, EdgeError> {
    let req = session.req_header();
    let path = req.uri.path();
    let appsync = path == site.config.realtime_path;
    let forwarded = site.config.websocket.paths.iter().any(|p| p == path);
    let upgrade = session.is_upgrade_req();
    if upgrade && req.method != http::Method::GET {
        return Err(
            Rejection::WebsocketBadHandshake.because("a WebSocket handshake is a GET request")
        );
    }
    if appsync || forwarded || upgrade {
        if !upgrade {
            return Err(
                Rejection::WebsocketRequired.because("this path takes WebSocket upgrades only")
            );
        }
        if !appsync && !forwarded {
            return Err(Rejection::WebsocketNotAllowed.because(
                "WebSocket upgrades are accepted only on this site's real-time path and its configured websocket paths",
            ));
        }
        return Ok(PathKind::WebSocket { appsync, forwarded });
    }
    if path != site.config.graphql_path {
        return Err(Rejection::NotFound.because(format!("no GraphQL endpoint at {path}")));
    }
    Ok(PathKind::Graphql)
}

/// The handshake checks (auth header, Origin, connection caps); on success the upgrade goes
/// upstream.
pub async fn admit(
    edge: &Edge,
    session: &mut Session,
    ctx: &mut RequestCtx,
    site: &Arc<SiteRuntime>,
    appsync: bool,
    forwarded: bool,
) -> pingora::Result<bool> {
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    match realtime::open(session.req_header(), client, site, appsync).await {
        Ok(mut socket) => {
            socket.path = forwarded.then(|| session.req_header().uri.path().to_string());
            // Until connection_init (AppSync) the client must speak; then it may stay silent
            // as long as the subscription lives.
            session
                .set_read_timeout(appsync.then_some(site.config.websocket.connection_init_timeout));
            ctx.kind = Kind::Realtime(Box::new(socket));
            Ok(false)
        }
        Err((reason, e)) => {
            metrics::get()
                .websocket_rejections
                .with_label_values(&[&site.config.name, reason])
                .inc();
            edge.reject(session, ctx, e).await
        }
    }
}

/// The upstream's answer to an upgrade: counted; a 101 opens the WebSocket.
pub fn response(ctx: &mut RequestCtx, resp: &ResponseHeader) {
    let upgraded = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    count(ctx, if upgraded { "upgraded" } else { "refused" });
    if let (true, Kind::Realtime(socket)) = (upgraded, &mut ctx.kind) {
        socket.upgraded = true;
        metrics::get().websocket_open.inc();
    }
}

/// WebSocket bytes from the client, once upgraded: decoded, checked (AppSync `start`),
/// capped; a refused `start` is answered with AppSync's `error` message and not forwarded,
/// a stream over the caps or breaking the protocol is closed with its close code.
pub async fn from_client(
    session: &mut Session,
    site: &SiteRuntime,
    socket: &mut Socket,
    body: &mut Option<bytes::Bytes>,
) -> pingora::Result<()> {
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
pub fn to_client(
    session: &Session,
    site: &SiteRuntime,
    socket: &mut Socket,
    body: &mut Option<bytes::Bytes>,
) {
    if !session.was_upgraded() {
        return;
    }
    if socket.closing {
        // Nothing may follow our close frame.
        *body = None;
        return;
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
}

/// The connection's end, in `logging`: a client that never sent `connection_init`, the open
/// gauge, an upgrade the upstream failed.
pub fn ended(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    let m = metrics::get();
    if let (Some(socket), Some(site), Some(e)) = (ctx.socket(), &ctx.site, e) {
        if !socket.initialised && matches!(e.etype(), ErrorType::ReadTimedout) {
            m.websocket_rejections
                .with_label_values(&[&site.config.name, "init_timeout"])
                .inc();
        }
    }
    if ctx.socket().is_some_and(|s| s.upgraded) {
        m.websocket_open.dec();
    } else if session.is_upgrade_req() && ctx.failure.is_some() {
        count(ctx, "failed");
    }
}

fn count(ctx: &RequestCtx, outcome: &str) {
    if let Some(site) = &ctx.site {
        metrics::get()
            .websocket_connections
            .with_label_values(&[&site.config.name, outcome])
            .inc();
    }
}
