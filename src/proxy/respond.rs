//! Answers written at the edge: GraphQL-shaped error bodies with a stable code, in AppSync's
//! shape (`errorType`) and Apollo's (`extensions.code`) at once.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

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

    /// Write the whole response. Errors writing mean the client went away; nothing to do.
    pub async fn send(&self, session: &mut Session) -> pingora::Result<()> {
        let body = self.body();
        let mut h = ResponseHeader::build(self.status, Some(4))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header("cache-control", "no-store")?;
        for (k, v) in &self.headers {
            h.append_header(k.clone(), v.clone())?;
        }
        // A client too slow with its body (408) is not waited for again.
        if !session.is_body_done() && (self.status == 408 || !drain_body(session).await) {
            // The unread rest would be taken for the next request: close after answering.
            session.set_keepalive(None);
        }
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(())
    }
}

/// Read and drop what is left of the request body (bounded), so the client, still sending,
/// reads our answer instead of a connection reset. Returns whether the body was finished.
async fn drain_body(session: &mut Session) -> bool {
    const LIMIT: usize = 1024 * 1024;
    const TIME: std::time::Duration = std::time::Duration::from_secs(2);
    let drain = async {
        let mut read = 0;
        while read <= LIMIT {
            match session.read_request_body().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
        false
    };
    tokio::time::timeout(TIME, drain).await.unwrap_or(false)
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
