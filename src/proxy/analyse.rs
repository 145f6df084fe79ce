//! The GraphQL pre-check of `request_filter`: read the operation from the POST body (≤ 64 KiB,
//! replayed upstream from pingora's retry buffer) or the GET query string, and classify it.

use bytes::BytesMut;
use pingora::proxy::Session;

use super::respond::EdgeError;
use crate::config::{Site, ANALYSED_BODY_LIMIT};
use crate::graphql::{self, GraphqlRequest, Operation, OperationKind};

/// What the edge learnt about a request.
#[derive(Debug)]
pub enum Analysis {
    /// A parsed, classified operation.
    Operation(Operation),
    /// A body too large to analyse, forwarded as is.
    Unanalysed,
}

fn graphql_error(e: graphql::GraphqlError) -> EdgeError {
    EdgeError::new(400, e.code(), e.to_string())
}

/// Analyse a GraphQL-over-HTTP POST.
pub async fn post(session: &mut Session, site: &Site) -> Result<Analysis, EdgeError> {
    let declared = content_length(session)?;
    if let (Some(len), Some(max)) = (declared, site.max_body) {
        if len > max {
            return Err(too_large(max));
        }
    }
    if declared.is_some_and(|len| len > ANALYSED_BODY_LIMIT as u64) {
        return Ok(Analysis::Unanalysed);
    }
    // The retry buffer keeps what we read so pingora can send it upstream afterwards.
    session.as_downstream_mut().enable_retry_buffering();
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024) as usize);
    while let Some(chunk) = session.read_request_body().await.map_err(|e| {
        EdgeError::new(
            400,
            "BAD_REQUEST_BODY",
            format!("cannot read the request body: {e}"),
        )
    })? {
        body.extend_from_slice(&chunk);
        if body.len() > ANALYSED_BODY_LIMIT {
            // Only a body without Content-Length gets here; it cannot be replayed upstream.
            return Err(EdgeError::new(
                413,
                "BODY_TOO_LARGE",
                format!(
                    "a request body without Content-Length may be at most {ANALYSED_BODY_LIMIT} bytes"
                ),
            ));
        }
    }
    if let Some(max) = site.max_body {
        if body.len() as u64 > max {
            return Err(too_large(max));
        }
    }
    let request = GraphqlRequest::from_json(&body).map_err(graphql_error)?;
    classify(&request)
}

/// Analyse a GraphQL-over-HTTP GET: only queries may be sent this way.
pub fn get(session: &Session) -> Result<Analysis, EdgeError> {
    let qs = session.req_header().uri.query().unwrap_or("");
    let request = GraphqlRequest::from_query_string(qs).map_err(graphql_error)?;
    let analysis = classify(&request)?;
    if let Analysis::Operation(op) = &analysis {
        if op.kind != OperationKind::Query {
            return Err(EdgeError::new(
                405,
                "METHOD_NOT_ALLOWED",
                format!("a {} cannot be sent with GET; use POST", op.kind.as_str()),
            )
            .with_header("allow", "POST"));
        }
    }
    Ok(analysis)
}

fn classify(request: &GraphqlRequest) -> Result<Analysis, EdgeError> {
    graphql::analyze(&request.query, request.operation_name.as_deref())
        .map(Analysis::Operation)
        .map_err(graphql_error)
}

fn content_length(session: &Session) -> Result<Option<u64>, EdgeError> {
    match session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
    {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| EdgeError::new(400, "BAD_REQUEST_BODY", "invalid Content-Length")),
    }
}

fn too_large(max: u64) -> EdgeError {
    EdgeError::new(
        413,
        "BODY_TOO_LARGE",
        format!("the request body is larger than this site's limit of {max} bytes"),
    )
}
