//! Automatic persisted queries in `request_filter`: the request is expanded from the site's
//! store (graphql/apq.rs) before anything else reads it, or answered with Apollo's error.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::{Edge, RequestCtx, SiteRuntime};
use crate::graphql::apq::{resolve, Verdict};
use crate::metrics;

/// `request_filter`, right after the body or query string is read: `Some(bytes)` to go on with
/// (the full request, which the upstream gets too), `None` when the request was answered here.
pub async fn expand(
    edge: &Edge,
    session: &mut Session,
    ctx: &mut RequestCtx,
    site: &SiteRuntime,
    bytes: Bytes,
    is_get: bool,
) -> pingora::Result<Option<Bytes>> {
    // A request signed by the client (AWS_IAM) must reach the upstream as it was signed: the
    // site answers it as if APQ were off (Apollo's link then sends the full query, unhashed).
    let g = ctx.graphql_mut().expect("a GraphQL request");
    let store = edge.apq.site(site.index).filter(|_| !g.unverified_auth);
    match resolve(store, &site.config.limits, &bytes, is_get) {
        Verdict::Unchanged => Ok(Some(bytes)),
        Verdict::Body(body) => {
            g.upstream_body = Some(body.clone());
            Ok(Some(body))
        }
        Verdict::Query(qs) => {
            let bytes = Bytes::copy_from_slice(qs.as_bytes());
            g.upstream_query = Some(qs);
            Ok(Some(bytes))
        }
        Verdict::Answer(error) => {
            answer(session, ctx, &site.config.name, error).await?;
            Ok(None)
        }
        Verdict::Reject(e) => {
            edge.reject(session, ctx, e).await?;
            Ok(None)
        }
    }
}

/// Write Apollo's error, in Apollo's shape, with status 200 (counted as an edge rejection).
async fn answer(
    session: &mut Session,
    ctx: &mut RequestCtx,
    site: &str,
    (message, code): (&'static str, &'static str),
) -> pingora::Result<()> {
    ctx.rejected = Some(code);
    metrics::get()
        .rejections
        .with_label_values(&[site, code])
        .inc();
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    let body = Bytes::from(body.to_string());
    let mut h = ResponseHeader::build(200, Some(4))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body.len().to_string())?;
    // The next identical request may well succeed: nothing on the way may keep this answer.
    h.insert_header("cache-control", "no-store")?;
    for (k, v) in super::cors_headers(session, ctx) {
        h.append_header(k, v)?;
    }
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}
