//! What the edge answers itself when it refuses a request: a GraphQL-shaped error body with a
//! stable code, in AppSync's shape (`errorType`) and Apollo's (`extensions.code`) at once; and the
//! kinds of upstream failure it answers for (a leaf: anything may refuse a request).

use bytes::Bytes;

/// Every reason the edge answers a request itself, each with its HTTP status, its stable code
/// (the `rejections` metric's reason too) and AppSync's `errorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The Host header is not a host name with an optional port (400).
    InvalidHost,
    /// No site here for this Host, or not the one the TLS connection was made for (421).
    Misdirected,
    /// Not the site's GraphQL, real-time or WebSocket path (404).
    NotFound,
    /// A credential or routing header sent more than once (400).
    DuplicateHeader,
    /// A GET with a body (400).
    BodyNotAllowed,
    /// Not GET, POST or OPTIONS on the GraphQL path, or a mutation by GET (405).
    MethodNotAllowed,
    /// The body could not be read (broken framing) (400).
    BadRequestBody,
    /// Over the site's `max-body` or what the edge reads (413).
    BodyTooLarge,
    /// `timeouts.request-body` passed (408).
    RequestBodyTimeout,
    /// `timeouts.request-header` passed (408).
    RequestHeaderTimeout,
    /// Over `listeners.max-request-header` (431).
    RequestHeaderTooLarge,
    /// Not a GraphQL-over-HTTP request (JSON, members, content type) (400).
    InvalidRequest,
    /// An upgrade that is not a GET (400).
    WebsocketBadHandshake,
    /// A plain request on a WebSocket-only path (400).
    WebsocketRequired,
    /// An upgrade on a path that takes none (400).
    WebsocketNotAllowed,
    /// The real-time auth header is malformed (400).
    RealtimeBadHeader,
    /// A WebSocket from an Origin the site does not allow (403).
    OriginNotAllowed,
    /// Over the site's or a client's WebSocket connection cap (429).
    TooManyConnections,
    /// A browser request that could be a cross-site request forgery (400).
    CsrfPrevented,
    /// An APQ hash that does not match its query (400).
    PersistedQueryHashMismatch,
    /// An APQ version other than 1 (400).
    PersistedQueryVersionNotSupported,
    /// The document does not parse, has no operation to run, or breaks a `[site.limits]` rule:
    /// the GraphQL layer's code (`GRAPHQL_PARSE_FAILED`, `LIMIT_DEPTH`, ...) (400).
    Graphql(&'static str),
    /// No auth mode accepted the credentials: the mode's code (`API_KEY_INVALID`,
    /// `TOKEN_EXPIRED`, ...) (401).
    Unauthorized(&'static str),
    /// The upstream could not be reached or did not answer (502, 504).
    Upstream(FailureKind),
    /// pingora refused the request with this status before the edge saw it.
    Refused(u16),
    /// A failure of the edge's own (500).
    Internal,
}

impl Rejection {
    pub fn status(self) -> u16 {
        match self {
            Self::Misdirected => 421,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::BodyTooLarge => 413,
            Self::RequestBodyTimeout | Self::RequestHeaderTimeout => 408,
            Self::RequestHeaderTooLarge => 431,
            Self::OriginNotAllowed => 403,
            Self::TooManyConnections => 429,
            Self::Unauthorized(_) => 401,
            Self::Upstream(kind) => kind.status(),
            Self::Refused(status) => status,
            Self::Internal => 500,
            Self::InvalidHost
            | Self::DuplicateHeader
            | Self::BodyNotAllowed
            | Self::BadRequestBody
            | Self::InvalidRequest
            | Self::WebsocketBadHandshake
            | Self::WebsocketRequired
            | Self::WebsocketNotAllowed
            | Self::RealtimeBadHeader
            | Self::CsrfPrevented
            | Self::PersistedQueryHashMismatch
            | Self::PersistedQueryVersionNotSupported
            | Self::Graphql(_) => 400,
        }
    }

    /// The stable, machine-readable code clients get in `extensions.code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidHost => "INVALID_HOST",
            Self::Misdirected => "MISDIRECTED_REQUEST",
            Self::NotFound => "NOT_FOUND",
            Self::DuplicateHeader => "DUPLICATE_HEADER",
            Self::BodyNotAllowed => "BODY_NOT_ALLOWED",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::BadRequestBody => "BAD_REQUEST_BODY",
            Self::BodyTooLarge => "BODY_TOO_LARGE",
            Self::RequestBodyTimeout => "REQUEST_BODY_TIMEOUT",
            Self::RequestHeaderTimeout => "REQUEST_HEADER_TIMEOUT",
            Self::RequestHeaderTooLarge => "REQUEST_HEADER_TOO_LARGE",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::WebsocketBadHandshake => "WEBSOCKET_BAD_HANDSHAKE",
            Self::WebsocketRequired => "WEBSOCKET_REQUIRED",
            Self::WebsocketNotAllowed => "WEBSOCKET_NOT_ALLOWED",
            Self::RealtimeBadHeader => "REALTIME_BAD_HEADER",
            Self::OriginNotAllowed => "ORIGIN_NOT_ALLOWED",
            Self::TooManyConnections => "TOO_MANY_CONNECTIONS",
            Self::CsrfPrevented => "CSRF_PREVENTED",
            Self::PersistedQueryHashMismatch => "PERSISTED_QUERY_HASH_MISMATCH",
            Self::PersistedQueryVersionNotSupported => "PERSISTED_QUERY_VERSION_NOT_SUPPORTED",
            Self::Graphql(code) | Self::Unauthorized(code) => code,
            Self::Upstream(kind) => kind.code(),
            Self::Refused(status) if status < 500 => "BAD_REQUEST",
            Self::Refused(_) | Self::Internal => "INTERNAL_ERROR",
        }
    }

    /// AppSync's `errorType`.
    pub fn error_type(self) -> &'static str {
        match self.status() {
            400 | 405 | 408 | 413 | 415 | 431 => "BadRequestException",
            401 | 403 => "UnauthorizedException",
            404 | 421 => "NotFoundException",
            429 => "TooManyRequestsException",
            502..=504 => "ServiceUnavailableException",
            _ => "InternalFailureException",
        }
    }

    /// This refusal, told to the client with `message`.
    pub fn because(self, message: impl Into<String>) -> EdgeError {
        EdgeError {
            rejection: self,
            message: message.into(),
            headers: Vec::new(),
        }
    }
}

/// An answer of the edge's own: why, in words for the client, and extra response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeError {
    pub rejection: Rejection,
    pub message: String,
    /// Extra response headers (e.g. `Allow` on 405, CORS).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl EdgeError {
    pub fn status(&self) -> u16 {
        self.rejection.status()
    }

    pub fn code(&self) -> &'static str {
        self.rejection.code()
    }

    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static(value),
        ));
        self
    }

    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({
            "errors": [{
                "message": self.message,
                "errorType": self.rejection.error_type(),
                "extensions": { "code": self.code() },
            }]
        });
        Bytes::from(body.to_string())
    }
}

/// How an upstream failure is reported: a bounded metric label, a status and a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Dns,
    Connect,
    Tls,
    Timeout,
    Closed,
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 6] = [
        Self::Dns,
        Self::Connect,
        Self::Tls,
        Self::Timeout,
        Self::Closed,
        Self::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Other => "other",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::Timeout => 504,
            _ => 502,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Timeout => "UPSTREAM_TIMEOUT",
            Self::Dns => "UPSTREAM_DNS_FAILED",
            Self::Tls => "UPSTREAM_TLS_FAILED",
            _ => "UPSTREAM_UNAVAILABLE",
        }
    }

    /// Classify a pingora error raised while talking to the upstream.
    pub fn of(e: &pingora::Error) -> Self {
        use pingora::ErrorType::*;
        match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => Self::Timeout,
            ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError => {
                Self::Connect
            }
            TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => Self::Tls,
            ConnectionClosed | ReadError | WriteError | H2Error | InvalidHTTPHeader => Self::Closed,
            Custom("dns") => Self::Dns,
            _ => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_both_shapes() {
        let e = Rejection::Graphql("GRAPHQL_PARSE_FAILED").because("Syntax Error: \"x\"");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["errors"][0]["errorType"], "BadRequestException");
        assert_eq!(v["errors"][0]["extensions"]["code"], "GRAPHQL_PARSE_FAILED");
        assert_eq!(v["errors"][0]["message"], "Syntax Error: \"x\"");
    }

    #[test]
    fn statuses_codes_and_error_types_agree() {
        let cases = [
            (
                Rejection::Misdirected,
                421,
                "MISDIRECTED_REQUEST",
                "NotFoundException",
            ),
            (
                Rejection::BodyTooLarge,
                413,
                "BODY_TOO_LARGE",
                "BadRequestException",
            ),
            (
                Rejection::RequestHeaderTooLarge,
                431,
                "REQUEST_HEADER_TOO_LARGE",
                "BadRequestException",
            ),
            (
                Rejection::OriginNotAllowed,
                403,
                "ORIGIN_NOT_ALLOWED",
                "UnauthorizedException",
            ),
            (
                Rejection::TooManyConnections,
                429,
                "TOO_MANY_CONNECTIONS",
                "TooManyRequestsException",
            ),
            (
                Rejection::Unauthorized("API_KEY_INVALID"),
                401,
                "API_KEY_INVALID",
                "UnauthorizedException",
            ),
            (
                Rejection::Upstream(FailureKind::Timeout),
                504,
                "UPSTREAM_TIMEOUT",
                "ServiceUnavailableException",
            ),
            (
                Rejection::Refused(400),
                400,
                "BAD_REQUEST",
                "BadRequestException",
            ),
            (
                Rejection::Refused(502),
                502,
                "INTERNAL_ERROR",
                "ServiceUnavailableException",
            ),
            (
                Rejection::Internal,
                500,
                "INTERNAL_ERROR",
                "InternalFailureException",
            ),
        ];
        for (r, status, code, error_type) in cases {
            assert_eq!(
                (r.status(), r.code(), r.error_type()),
                (status, code, error_type),
                "{r:?}"
            );
        }
    }
}
