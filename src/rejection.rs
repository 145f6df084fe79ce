//! What the edge answers itself when it refuses a request: a GraphQL-shaped error body with a
//! stable code, in AppSync's shape (`errorType`) and Apollo's (`extensions.code`) at once.

use bytes::Bytes;

/// An error answered by the edge itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeError {
    pub status: u16,
    /// Stable, machine-readable code (`GRAPHQL_PARSE_FAILED`, `UPSTREAM_TIMEOUT`, ...).
    pub code: &'static str,
    pub message: String,
    /// Extra response headers (e.g. `Allow` on 405, CORS).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl EdgeError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((
            http::HeaderName::from_static(name),
            http::HeaderValue::from_static(value),
        ));
        self
    }

    /// AppSync's `errorType` for this status.
    pub fn error_type(&self) -> &'static str {
        match self.status {
            400 | 405 | 408 | 413 | 415 | 431 => "BadRequestException",
            401 | 403 => "UnauthorizedException",
            404 | 421 => "NotFoundException",
            429 => "TooManyRequestsException",
            502..=504 => "ServiceUnavailableException",
            _ => "InternalFailureException",
        }
    }

    pub fn body(&self) -> Bytes {
        let body = serde_json::json!({
            "errors": [{
                "message": self.message,
                "errorType": self.error_type(),
                "extensions": { "code": self.code },
            }]
        });
        Bytes::from(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_both_shapes() {
        let e = EdgeError::new(400, "GRAPHQL_PARSE_FAILED", "Syntax Error: \"x\"");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["errors"][0]["errorType"], "BadRequestException");
        assert_eq!(v["errors"][0]["extensions"]["code"], "GRAPHQL_PARSE_FAILED");
        assert_eq!(v["errors"][0]["message"], "Syntax Error: \"x\"");
    }
}
