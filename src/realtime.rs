//! AppSync real-time through the custom domain. The client puts its credentials, and the host
//! it believes it talks to, in a base64 JSON "auth header": in the `header` query parameter
//! (aws-appsync, older Amplify) or in a `header-<base64url>` subprotocol (Amplify v6), and again
//! in `extensions.authorization` of each `start` message. The edge checks them with the site's
//! auth modes and, when configured, rewrites `host` to the upstream API's, as AppSync's own
//! custom domains do.

pub mod auth_header;
pub mod frame;
pub mod stream;

use pingora::http::RequestHeader;
use serde_json::Value;

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};

use crate::auth::{self, check_headers, Outcome};
use crate::metrics;
use crate::rejection::EdgeError;
use crate::rejection::Rejection;
use crate::site::websockets::{ConnectionGuard, Refusal};
use crate::site::SiteRuntime;
pub use auth_header::{
    as_headers, auth_header, is_signed, set_host, write_back, AuthHeader, Carrier,
};
use frame::{close_frame, text_frame, Close};
use stream::{Advance, ClientStream, Limits, ServerStream, Stats, Verdict};

/// Whether `origin` may open a WebSocket (an empty allow-list allows any).
pub fn origin_allowed(origin: Option<&str>, allowed: &[String]) -> bool {
    match origin {
        None => true,
        Some(_) if allowed.is_empty() => true,
        Some(o) => {
            let o = o.trim_end_matches('/').to_ascii_lowercase();
            allowed.contains(&o)
        }
    }
}

/// An AppSync real-time `error` message for operation `id`.
pub fn error_message(id: &str, e: &EdgeError) -> String {
    serde_json::json!({
        "type": "error",
        "id": id,
        "payload": {"errors": [{
            "errorType": e.rejection.error_type(),
            "message": e.message,
            "errorCode": e.status(),
            "extensions": {"code": e.code()},
        }]}
    })
    .to_string()
}

/// A proxied WebSocket: its place in the connection count, and for AppSync real-time what the
/// handshake carried.
#[derive(Debug)]
pub struct Socket {
    _guard: ConnectionGuard,
    /// AppSync real-time (the site's `realtime-path`), not a path forwarded as is.
    pub appsync: bool,
    /// The auth header to send upstream, when it was rewritten.
    pub rewritten: Option<AuthHeader>,
    /// Whether `connection_init` was seen (AppSync).
    pub initialised: bool,
    /// Whether the site's auth accepted this connection (always, on a site without auth):
    /// until then only a `connection_init` whose payload carries credentials may pass.
    pub authenticated: bool,
    /// A close frame went to the client (stopping): nothing more goes to it.
    pub closing: bool,
    /// The path forwarded as is (`[site.websocket] paths`), on the upstream's origin.
    pub path: Option<String>,
    /// The upstream switched protocols: the connection is a proxied WebSocket.
    pub upgraded: bool,
    client: ClientStream,
    server: ServerStream,
}

/// What one chunk from the client becomes.
pub struct FromClient {
    /// The bytes for the upstream.
    pub forward: Bytes,
    /// Messages for the client (AppSync `error` for a refused `start`).
    pub replies: Vec<Bytes>,
    /// `connection_init` was in this chunk.
    pub initialised: bool,
}

/// How one client message is handled, decided before the chunk is forwarded.
enum Decision {
    Forward,
    Replace(String),
    Refuse(String),
}

impl Socket {
    /// Decode a chunk from the client: AppSync `start` messages are checked with the site's
    /// modes (their `extensions.authorization`) and get their `host` rewritten like the
    /// handshake; everything else passes byte for byte, within the size caps. The decoder stops
    /// at each complete text message, which waits for its verdict (a check may fetch a token
    /// issuer's keys).
    pub async fn client_chunk(
        &mut self,
        site: &SiteRuntime,
        chunk: &[u8],
    ) -> Result<FromClient, Close> {
        let mut rest = chunk;
        let mut out = BytesMut::with_capacity(chunk.len());
        let mut stats = Stats::default();
        let mut replies = Vec::new();
        let mut initialised = false;
        loop {
            let step = self.client.advance(&mut rest, &mut out, &mut stats)?;
            if !self.authenticated && !out.is_empty() {
                // A binary or control frame before the connection was authenticated.
                return Err(UNAUTHORIZED);
            }
            if step == Advance::Done {
                break;
            }
            let verdict = match self.client.pending_text() {
                Some(text) if !self.authenticated => {
                    let text = text.to_string();
                    self.authenticate(site, &text).await?;
                    Verdict::Forward
                }
                Some(text) => {
                    let text = text.to_string();
                    let (decision, init) = if self.appsync {
                        self.decide(site, &text).await
                    } else {
                        (self.decide_forwarded(site, &text), false)
                    };
                    initialised |= init;
                    match decision {
                        Decision::Forward => Verdict::Forward,
                        Decision::Replace(new) => Verdict::Replace(new),
                        Decision::Refuse(reply) => {
                            replies.push(text_frame(&reply, false));
                            Verdict::Drop
                        }
                    }
                }
                None if !self.authenticated => return Err(UNAUTHORIZED),
                None => Verdict::Forward,
            };
            self.client.judge(verdict, &mut out)?;
        }
        let c = &site.ws;
        c.messages_in.inc_by(stats.messages);
        c.bytes_in.inc_by(chunk.len() as u64);
        self.initialised |= initialised;
        Ok(FromClient {
            forward: out.freeze(),
            replies,
            initialised,
        })
    }

    /// Count a chunk from the upstream.
    pub fn upstream_chunk(&mut self, site: &SiteRuntime, chunk: &[u8]) {
        let stats = self.server.feed(chunk);
        site.ws.messages_out.inc_by(stats.messages);
        site.ws.bytes_out.inc_by(chunk.len() as u64);
    }

    async fn decide(&self, site: &SiteRuntime, text: &str) -> (Decision, bool) {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
            return (Decision::Forward, false);
        };
        match message.get("type").and_then(Value::as_str) {
            Some("connection_init") => return (Decision::Forward, true),
            // graphql-transport-ws to a realtime upstream that speaks it.
            Some("subscribe") => return (self.decide_forwarded(site, text), false),
            Some("start") => {}
            _ => return (Decision::Forward, false),
        }
        let id = message
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // `payload.data` holds the GraphQL request as a JSON string.
        let data = message
            .get("payload")
            .and_then(|p| p.get("data"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let request = serde_json::from_str::<Value>(&data).ok();
        let query = request
            .as_ref()
            .and_then(|r| r.get("query"))
            .and_then(Value::as_str);
        let name = request
            .as_ref()
            .and_then(|r| r.get("operationName"))
            .and_then(Value::as_str);
        let operation = check_operation(site, query, name);
        if let Some(modes) = &site.auth {
            let authorization = message
                .get("payload")
                .and_then(|p| p.get("extensions"))
                .and_then(|e| e.get("authorization"))
                .and_then(Value::as_object);
            let refused = match authorization {
                None => Some(
                    Rejection::Unauthorized("AUTHORIZATION_MISSING")
                        .because("the start message carries no extensions.authorization"),
                ),
                Some(fields) => {
                    let headers = as_headers(fields);
                    match check_headers(&headers, &site.config.name, modes).await {
                        Outcome::Accepted(_) => None,
                        // The authorizer decides on the operation, as for requests.
                        Outcome::Authorizer { token, .. } => {
                            match (&operation, &modes.authorizer) {
                                (Ok(op), Some(authorizer)) => {
                                    let verdict = authorizer
                                        .check(
                                            &token,
                                            data.as_bytes(),
                                            false,
                                            op.kind,
                                            &op.root_fields,
                                            &headers,
                                        )
                                        .await;
                                    auth::authorizer_outcome(&site.config.name, verdict).err()
                                }
                                // An operation the edge refuses is answered below.
                                (Err(_), _) => None,
                                (Ok(_), None) => Some(
                                    Rejection::Unauthorized("AUTHORIZER_UNAVAILABLE")
                                        .because("no authorizer can decide on this operation"),
                                ),
                            }
                        }
                        Outcome::Rejected(e) => Some(e),
                    }
                }
            };
            if let Some(e) = refused {
                count_refused(site, "start_auth");
                return (Decision::Refuse(error_message(&id, &e)), false);
            }
        }
        if let Err(e) = operation {
            count_refused(site, "operation");
            return (Decision::Refuse(error_message(&id, &e)), false);
        }
        site.ws.subscriptions.inc();
        let authorization = message
            .get_mut("payload")
            .and_then(|p| p.get_mut("extensions"))
            .and_then(|e| e.get_mut("authorization"))
            .and_then(Value::as_object_mut);
        let rewrite = site.config.websocket.rewrite_host;
        match authorization {
            Some(fields) if rewrite && !is_signed(fields) => {
                if set_host(fields, &site.config.upstream.host_header) {
                    (Decision::Replace(Value::Object(message).to_string()), false)
                } else {
                    (Decision::Forward, false)
                }
            }
            _ => (Decision::Forward, false),
        }
    }

    /// The first message on a forwarded path of a site with auth, when the handshake carried no
    /// accepted credentials: a `connection_init` whose payload (or its `headers` member) holds
    /// them, as graphql-ws clients send `connectionParams`. Anything else closes with 4401; a
    /// payload the site's modes refuse closes with 4403.
    async fn authenticate(&mut self, site: &SiteRuntime, text: &str) -> Result<(), Close> {
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
            return Err(UNAUTHORIZED);
        };
        if message.get("type").and_then(Value::as_str) != Some("connection_init") {
            return Err(UNAUTHORIZED);
        }
        let payload = message.get("payload").and_then(Value::as_object);
        let fields = payload
            .and_then(|p| p.get("headers"))
            .and_then(Value::as_object)
            .or(payload);
        let (Some(fields), Some(modes)) = (fields, &site.auth) else {
            return Err(FORBIDDEN);
        };
        match check_headers(&as_headers(fields), &site.config.name, modes).await {
            Outcome::Accepted(_) => {
                self.authenticated = true;
                Ok(())
            }
            Outcome::Authorizer { .. } | Outcome::Rejected(_) => Err(FORBIDDEN),
        }
    }

    /// An operation on a forwarded path (graphql-transport-ws `subscribe`, graphql-ws `start`):
    /// checked like a request on the GraphQL path (parse, operation selection, the site's
    /// limits), refused with the dialect's `error` message.
    fn decide_forwarded(&self, site: &SiteRuntime, text: &str) -> Decision {
        let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
            return Decision::Forward;
        };
        let kind = message.get("type").and_then(Value::as_str);
        if !matches!(kind, Some("subscribe" | "start")) {
            return Decision::Forward;
        }
        let id = message.get("id").and_then(Value::as_str).unwrap_or("");
        let payload = message.get("payload");
        let query = payload.and_then(|p| p.get("query")).and_then(Value::as_str);
        let name = payload
            .and_then(|p| p.get("operationName"))
            .and_then(Value::as_str);
        match check_operation(site, query, name) {
            Ok(_) => Decision::Forward,
            Err(e) => {
                count_refused(site, "operation");
                let errors = serde_json::json!([{
                    "message": e.message,
                    "extensions": {"code": e.code()},
                }]);
                let reply = if kind == Some("subscribe") {
                    serde_json::json!({"type": "error", "id": id, "payload": errors})
                } else {
                    serde_json::json!({"type": "error", "id": id, "payload": errors[0]})
                };
                Decision::Refuse(reply.to_string())
            }
        }
    }

    /// A close frame for the client (server frames are not masked).
    pub fn close_for_client(&mut self, code: u16, reason: &str) -> Bytes {
        self.closing = true;
        close_frame(code, reason, false)
    }
}

/// Closes for a forwarded path's connection before it is authenticated, with
/// graphql-transport-ws's codes: a message other than `connection_init`, or credentials the
/// site refused.
const UNAUTHORIZED: Close = Close {
    code: 4401,
    reason: "Unauthorized",
};
const FORBIDDEN: Close = Close {
    code: 4403,
    reason: "Forbidden",
};

fn count_refused(site: &SiteRuntime, reason: &str) {
    metrics::get()
        .websocket_rejections
        .with_label_values(&[&site.config.name, reason])
        .inc();
}

/// The checks a GraphQL request on the site's GraphQL path gets (parse, operation selection,
/// the site's limits), for an operation sent over a WebSocket.
fn check_operation(
    site: &SiteRuntime,
    query: Option<&str>,
    operation_name: Option<&str>,
) -> Result<crate::graphql::Operation, EdgeError> {
    let query =
        query.ok_or_else(|| Rejection::InvalidRequest.because("the operation carries no query"))?;
    let analysis =
        crate::graphql::analyze_normalized(query, operation_name).map_err(EdgeError::from)?;
    site.config.limits.admit(&analysis.complexity)?;
    Ok(analysis.op)
}

/// The handshake checks, before anything goes upstream: Origin, connection limits, and for
/// AppSync real-time the site's auth modes on the auth header (rewriting its `host` when the
/// site says so).
pub async fn open(
    req: &RequestHeader,
    client: Option<IpAddr>,
    site: &SiteRuntime,
    appsync: bool,
) -> Result<Socket, Refusal> {
    let policy = &site.config.websocket;
    let origin = req
        .headers
        .get(http::header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    if !origin_allowed(origin, &policy.allowed_origins) {
        return Err((
            "origin",
            Rejection::OriginNotAllowed.because("WebSockets from this origin are not allowed"),
        ));
    }
    let mut header = if appsync {
        auth_header(req).map_err(|e| ("bad_header", e))?
    } else {
        None
    };
    if let (true, Some(modes)) = (appsync, &site.auth) {
        let Some(h) = &header else {
            return Err((
                "auth",
                Rejection::Unauthorized("AUTHORIZATION_MISSING").because("the real-time handshake carries no auth header (`header` parameter or `header-` subprotocol)",
                ),
            ));
        };
        match check_headers(&as_headers(&h.fields), &site.config.name, modes).await {
            Outcome::Accepted(_) | Outcome::Authorizer { .. } => {}
            Outcome::Rejected(e) => return Err(("auth", e)),
        }
    }
    // A path forwarded as is (graphql-ws, graphql-transport-ws) on a site with auth: the
    // handshake's own headers, else the `connection_init` payload, must carry credentials
    // the site's modes accept before any message is forwarded.
    let authenticated = match (appsync, &site.auth) {
        // Only modes the edge decides: the HTTP authorizer is asked about operations, and a
        // forwarded path's messages are not shown to it.
        (false, Some(modes)) => matches!(
            check_headers(&req.headers, &site.config.name, modes).await,
            Outcome::Accepted(_)
        ),
        _ => true,
    };
    let rewritten = match &mut header {
        Some(h) if policy.rewrite_host && !is_signed(&h.fields) => {
            set_host(&mut h.fields, &site.config.upstream.host_header).then(|| h.clone())
        }
        _ => None,
    };
    let guard = site.websockets.open(client, policy)?;
    let limits = Limits {
        max_frame: policy.max_frame,
        max_message: policy.max_message,
    };
    Ok(Socket {
        _guard: guard,
        appsync,
        rewritten,
        initialised: !appsync,
        authenticated,
        closing: false,
        path: None,
        upgraded: false,
        client: ClientStream::new(limits),
        server: ServerStream::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use http::header::SEC_WEBSOCKET_PROTOCOL;
    use serde_json::Map;

    fn request(uri: &str, protocols: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        if let Some(p) = protocols {
            r.insert_header(SEC_WEBSOCKET_PROTOCOL, p).unwrap();
        }
        r
    }

    const JSON: &str = r#"{"host":"api.example.com","x-api-key":"da2-~~~~"}"#;

    #[test]
    fn the_query_parameter_is_read_with_raw_or_encoded_base64() {
        let b64 = STANDARD.encode(JSON);
        assert!(b64.contains('+') && b64.contains('='));
        let encoded: String = form_urlencoded::byte_serialize(b64.as_bytes()).collect();
        for q in [b64.clone(), encoded] {
            let r = request(&format!("/graphql/realtime?header={q}&payload=e30="), None);
            let h = auth_header(&r).unwrap().unwrap();
            assert_eq!(h.carrier, Carrier::Query);
            assert_eq!(h.fields["x-api-key"], "da2-~~~~");
        }
    }

    #[test]
    fn the_subprotocol_wins_and_is_written_back_in_place() {
        let proto = format!("graphql-ws, header-{}", URL_SAFE_NO_PAD.encode(JSON));
        let mut r = request("/graphql/realtime", Some(&proto));
        let mut h = auth_header(&r).unwrap().unwrap();
        assert_eq!(h.carrier, Carrier::Subprotocol);
        assert!(set_host(
            &mut h.fields,
            "abc.appsync-api.eu-west-1.amazonaws.com"
        ));
        write_back(&mut r, &h).unwrap();
        let back = auth_header(&r).unwrap().unwrap();
        assert_eq!(
            back.fields["host"],
            "abc.appsync-api.eu-west-1.amazonaws.com"
        );
        assert_eq!(back.fields["x-api-key"], "da2-~~~~");
        let sent = r.headers[SEC_WEBSOCKET_PROTOCOL].to_str().unwrap();
        assert!(sent.starts_with("graphql-ws, header-"), "{sent}");
    }

    #[test]
    fn the_query_is_rewritten_keeping_other_parameters() {
        let q = STANDARD.encode(JSON);
        let mut r = request(&format!("/graphql/realtime?header={q}&payload=e30="), None);
        let mut h = auth_header(&r).unwrap().unwrap();
        set_host(&mut h.fields, "up.test");
        write_back(&mut r, &h).unwrap();
        assert!(r.uri.query().unwrap().ends_with("&payload=e30="));
        assert_eq!(auth_header(&r).unwrap().unwrap().fields["host"], "up.test");
    }

    #[test]
    fn broken_headers_are_refused_with_a_code() {
        for uri in [
            "/r?header=!!!",
            "/r?header=WzFd", // [1]: not an object
        ] {
            let e = auth_header(&request(uri, None)).unwrap_err();
            assert_eq!((e.status(), e.code()), (400, "REALTIME_BAD_HEADER"));
        }
        assert_eq!(
            auth_header(&request("/r?payload=e30=", None)).unwrap(),
            None
        );
    }

    #[test]
    fn signed_headers_are_recognised_and_origins_checked() {
        let mut m = Map::new();
        m.insert(
            "Authorization".into(),
            "AWS4-HMAC-SHA256 Credential=x".into(),
        );
        assert!(is_signed(&m));
        let allowed = vec!["https://app.example.com".to_string()];
        assert!(origin_allowed(None, &allowed));
        assert!(origin_allowed(Some("https://APP.example.com/"), &allowed));
        assert!(!origin_allowed(Some("https://evil.test"), &allowed));
        assert!(origin_allowed(Some("https://evil.test"), &[]));
    }
}
