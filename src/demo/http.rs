//! The demo API over HTTP: GraphQL over HTTP (POST and GET) at `/graphql`, subscriptions over
//! WebSocket (graphql-transport-ws and graphql-ws) at `/graphql/ws`, served on h1 and h2, plain
//! or TLS; and a recorder of every request received, for tests to assert on.

use std::sync::{Arc, Mutex};

use async_graphql::http::{GraphQLPlaygroundConfig, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::body::Body;
use axum::extract::{Request, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;

use super::{DemoSchema, Principal};

/// Test knobs of the demo API: `x-demo-status: 503` answers with that status, and each
/// `x-demo-response-header: name: value` is added to the response.
async fn graphql(
    State(schema): State<DemoSchema>,
    headers: HeaderMap,
    req: GraphQLRequest,
) -> Response {
    let mut req = req.into_inner();
    if let Some(p) = headers.get("x-principal").and_then(|v| v.to_str().ok()) {
        req = req.data(Principal(p.to_string()));
    }
    let mut resp = GraphQLResponse::from(schema.execute(req).await).into_response();
    if let Some(status) = headers
        .get("x-demo-status")
        .and_then(|v| v.to_str().ok()?.parse::<u16>().ok())
        .and_then(|s| http::StatusCode::from_u16(s).ok())
    {
        *resp.status_mut() = status;
    }
    for v in headers.get_all("x-demo-response-header") {
        let parsed = v
            .to_str()
            .ok()
            .and_then(|v| v.split_once(':'))
            .and_then(|(n, v)| {
                Some((
                    http::HeaderName::try_from(n.trim()).ok()?,
                    http::HeaderValue::try_from(v.trim()).ok()?,
                ))
            });
        if let Some((n, v)) = parsed {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

async fn subscriptions(
    State(schema): State<DemoSchema>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    use futures_util::StreamExt;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            let (sink, stream) = socket.split();
            let stream = stream.map(|m| m.map(appsync_start));
            GraphQLWebSocket::new_with_pair(sink, stream, schema, protocol).serve()
        })
}

/// AppSync's `start` carries the request as a JSON string in `payload.data` (and its
/// authorization in `payload.extensions`); graphql-ws wants it as `payload` itself. The demo
/// API takes both, so AppSync clients can subscribe through the edge.
fn appsync_start(m: axum::extract::ws::Message) -> axum::extract::ws::Message {
    use axum::extract::ws::Message;
    let Message::Text(text) = &m else {
        return m;
    };
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
        return m;
    };
    let request = match v["payload"]["data"].as_str() {
        Some(data) if v["type"] == "start" => serde_json::from_str::<serde_json::Value>(data),
        _ => return m,
    };
    match request {
        Ok(request) => {
            v["payload"] = request;
            Message::Text(v.to_string().into())
        }
        Err(_) => m,
    }
}

async fn playground() -> impl IntoResponse {
    axum::response::Html(async_graphql::http::playground_source(
        GraphQLPlaygroundConfig::new("/graphql").subscription_endpoint("/graphql/realtime"),
    ))
}

/// The demo API's routes.
pub fn router(schema: DemoSchema) -> Router {
    Router::new()
        .route("/graphql", get(graphql).post(graphql))
        .route("/graphql/ws", get(subscriptions))
        .route("/playground", get(playground))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(schema)
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Every request the router received, in order.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<RecordedRequest>>>);

impl Recorder {
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }
    pub fn count(&self) -> usize {
        self.0.lock().map_or(0, |r| r.len())
    }
    pub fn clear(&self) {
        if let Ok(mut r) = self.0.lock() {
            r.clear();
        }
    }
}

async fn record(State(recorder): State<Recorder>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 1 << 20).await {
        Ok(b) => b,
        Err(_) => return (http::StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB").into_response(),
    };
    if let Ok(mut r) = recorder.0.lock() {
        r.push(RecordedRequest {
            method: parts.method.to_string(),
            uri: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_string(), |p| p.to_string()),
            version: parts.version,
            headers: parts.headers.clone(),
            body: body.clone(),
        });
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The demo API with every request recorded.
pub fn router_with_recorder(schema: DemoSchema, recorder: Recorder) -> Router {
    router(schema).layer(middleware::from_fn_with_state(recorder, record))
}

/// A rustls server configuration (ring) for `serve`; `alpn_h2` offers h2 before http/1.1.
pub fn tls_server_config(
    cert_pem: &str,
    key_pem: &str,
    alpn_h2: bool,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("no private key in PEM: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = if alpn_h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// Serve `router` on `listener` (h1 with upgrades, and h2), over TLS when `tls` is given.
/// Dropping the future closes the listener and every connection it accepted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            Some(_) = connections.join_next() => continue,
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let result = match acceptor {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(tls), service)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "demo API: TLS handshake failed");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "demo API: connection error");
            }
        });
    }
}
