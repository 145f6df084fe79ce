//! The GraphQL pre-check of `request_filter`: read the operation from the POST body (≤ 64 KiB,
//! replayed upstream from pingora's retry buffer; larger bodies are refused, never forwarded
//! unchecked) or the GET query string, and plan it: parse,
//! classify, decide about the cache. Plans are memoized by the raw request's hash, so repeated
//! requests skip JSON and GraphQL parsing.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::respond::EdgeError;
use super::SiteRuntime;
use crate::cache::key::{digest, document_key, raw_key, Decision, RequestPlan};
use crate::cache::{policy, Analysed, ResponseCache};
use crate::config::{Site, ANALYSED_BODY_LIMIT};
use crate::graphql::{self, GraphqlRequest, OperationKind};
use crate::rejection::Rejection;

/// The request as read: what the operation is parsed from.
pub enum Raw {
    /// A POST body.
    Body(Bytes),
    /// A GET query string.
    Query(Bytes),
}

/// Read a GraphQL-over-HTTP POST body.
pub async fn read_post(
    session: &mut Session,
    site: &Site,
    deadline: std::time::Duration,
) -> Result<Raw, EdgeError> {
    let declared = content_length(session)?;
    if let (Some(len), Some(max)) = (declared, site.max_body) {
        if len > max {
            return Err(too_large(max));
        }
    }
    if declared.is_some_and(|len| len > ANALYSED_BODY_LIMIT as u64) {
        // Every request the edge forwards is checked, and the edge can hold and replay at
        // most `ANALYSED_BODY_LIMIT` bytes of a body on pingora's path: a larger body is
        // refused unread rather than forwarded unchecked.
        return Err(over_analysed_limit());
    }
    // The retry buffer keeps what we read so pingora can send it upstream afterwards.
    session.as_downstream_mut().enable_retry_buffering();
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024) as usize);
    let read = async {
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() > ANALYSED_BODY_LIMIT {
                        // Only a body without Content-Length gets here.
                        return Err(over_analysed_limit());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(Rejection::BadRequestBody
                        .because(format!("cannot read the request body: {e}")))
                }
            }
        }
    };
    // A total deadline: pingora's own timer restarts with every chunk.
    let read = match tokio::time::timeout(deadline, read).await {
        Ok(read) => read,
        Err(_) => {
            crate::metrics::get()
                .client_limits
                .with_label_values(&["request_body_timeout"])
                .inc();
            Err(Rejection::RequestBodyTimeout.because(format!(
                "the request body did not arrive within {deadline:?}"
            )))
        }
    };
    if let Err(e) = read {
        // Broken or unfinished framing: nothing after it may be parsed as a request of its own.
        session.set_keepalive(None);
        return Err(e);
    }
    if let Some(max) = site.max_body {
        if body.len() as u64 > max {
            return Err(too_large(max));
        }
    }
    Ok(Raw::Body(body.freeze()))
}

/// The GET query string.
pub fn read_get(session: &Session) -> Raw {
    let qs = session.req_header().uri.query().unwrap_or("");
    Raw::Query(Bytes::copy_from_slice(qs.as_bytes()))
}

/// The plan for this request: memoized, or parsed and decided now.
pub fn plan(
    cache: &ResponseCache,
    site: &SiteRuntime,
    session: &Session,
    authenticated: Option<&str>,
    bytes: &Bytes,
    is_get: bool,
) -> Result<Arc<RequestPlan>, EdgeError> {
    let policy = &site.config.cache;
    let req = session.req_header();
    // The caller per-principal scopes are keyed on: who auth accepted, or (without auth on
    // this site) the configured header or cookie.
    let principal = match (authenticated, &site.config.auth) {
        (Some(p), _) => Some(p.as_bytes()),
        (None, None) => policy::principal_of(policy, &req.headers),
        (None, Some(_)) => None,
    };
    let method: &[u8] = if is_get { b"GET" } else { b"POST" };
    let memo = raw_key(site.index, method, principal, bytes);
    if let Some(plan) = cache.plan(&memo) {
        return Ok(plan);
    }
    let request = if is_get {
        let qs = std::str::from_utf8(bytes)
            .map_err(|_| Rejection::InvalidRequest.because("the query string is not UTF-8"))?;
        GraphqlRequest::from_query_string(qs)
    } else {
        GraphqlRequest::from_json(bytes)
    }
    .map_err(EdgeError::from)?;
    let op_name = request.operation_name.as_deref();
    let doc_key = document_key(&request.query, op_name);
    let analysed = match cache.document(&doc_key) {
        Some(a) => a,
        None => {
            let analysis =
                graphql::analyze_normalized(&request.query, op_name).map_err(EdgeError::from)?;
            let a = Arc::new(Analysed {
                op: analysis.op,
                normalized: digest(&analysis.normalized),
                complexity: analysis.complexity,
            });
            cache.remember_document(doc_key, a.clone());
            a
        }
    };
    // Limits differ per site; the measure is the document's.
    site.config.limits.admit(&analysed.complexity)?;
    let op = &analysed.op;
    let decision = policy::plan(
        site.index,
        policy,
        op,
        &analysed.normalized,
        request.variables.as_ref(),
        principal,
    );
    let tagged = match (&decision, op.kind) {
        (Decision::Cache(_), _) => true,
        // Only when the response can purge something: else the rewrite would be for nothing.
        (_, OperationKind::Mutation) => {
            policy.enabled()
                && (policy.invalidate != crate::config::cache::Invalidate::None
                    || !policy.mutations.is_empty())
        }
        _ => false,
    };
    let typed = if tagged {
        crate::cache::tags::typed(doc_key, &request.query, op_name)
    } else {
        None
    };
    let plan = Arc::new(RequestPlan {
        kind: op.kind,
        operation_name: op.name.clone(),
        root_fields: op.root_fields.clone(),
        decision,
        typed,
    });
    cache.remember_plan(memo, plan.clone());
    Ok(plan)
}

/// Only queries may be sent with GET.
pub fn check_get(plan: &RequestPlan) -> Result<(), EdgeError> {
    if plan.kind == OperationKind::Query {
        return Ok(());
    }
    Err(Rejection::MethodNotAllowed
        .because(format!(
            "a {} cannot be sent with GET; use POST",
            plan.kind.as_str()
        ))
        .with_header("allow", "POST"))
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
            .ok_or_else(|| Rejection::BadRequestBody.because("invalid Content-Length")),
    }
}

fn over_analysed_limit() -> EdgeError {
    Rejection::BodyTooLarge.because(format!(
        "request bodies may be at most {ANALYSED_BODY_LIMIT} bytes"
    ))
}

fn too_large(max: u64) -> EdgeError {
    Rejection::BodyTooLarge.because(format!(
        "the request body is larger than this site's limit of {max} bytes"
    ))
}
