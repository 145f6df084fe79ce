//! A request to the site's GraphQL path, in order: the auth pre-check, CSRF, the method and
//! the body (read whole), persisted queries, the plan (parse, limits, operation, cache key),
//! the HTTP authorizer, then the cache; what is not answered here goes upstream rewritten
//! as planned.

use std::sync::Arc;

use pingora::proxy::Session;

use super::analyse::{self, Raw};
use super::{apq, caching, cors, forward, tagging, Edge, Graphql, Kind, RequestCtx};
use crate::auth;
use crate::cache::NotCached;
use crate::rejection::{EdgeError, Rejection};
use crate::site::SiteRuntime;

/// Check, plan and maybe answer the request: `true` when the edge answered it.
pub async fn handle(
    edge: &Edge,
    session: &mut Session,
    ctx: &mut RequestCtx,
    site: &Arc<SiteRuntime>,
) -> pingora::Result<bool> {
    let mut g = Graphql::default();
    let authenticated = authenticate(session, &mut g, site).await;
    ctx.kind = Kind::Graphql(g);
    let authorizer_token = match authenticated {
        Ok(token) => token,
        Err(e) => return edge.reject(session, ctx, e).await,
    };
    let method = session.req_header().method.clone();
    if matches!(method, http::Method::GET | http::Method::POST) && !session.is_upgrade_req() {
        if let Err(e) = cors::check_csrf(session, &site.config) {
            return edge.reject(session, ctx, e).await;
        }
    }
    let raw = match method {
        http::Method::POST => analyse::read_post(session, &site.config, edge.request_body).await,
        http::Method::GET => Ok(analyse::read_get(session)),
        // CORS preflights are the upstream's to answer for now.
        http::Method::OPTIONS => {
            ctx.kind = Kind::Passthrough;
            return Ok(false);
        }
        _ => Err(Rejection::MethodNotAllowed
            .because("GraphQL takes POST (and GET for queries)")
            .with_header("allow", "GET, POST, OPTIONS")),
    };
    let (bytes, is_get) = match raw {
        Ok(Raw::Body(b)) => (b, false),
        Ok(Raw::Query(q)) => (q, true),
        Err(e) => return edge.reject(session, ctx, e).await,
    };
    // Automatic persisted queries (proxy/apq.rs): from here on `bytes` is the full request.
    let Some(bytes) = apq::expand(edge, session, ctx, site, bytes, is_get).await? else {
        return Ok(true);
    };
    let g = ctx.graphql().expect("a GraphQL request");
    let plan = analyse::plan(
        &edge.cache,
        site,
        session,
        g.principal.as_deref(),
        &bytes,
        is_get,
    )
    .and_then(|p| {
        if is_get {
            analyse::check_get(&p).map(|()| p)
        } else {
            Ok(p)
        }
    });
    let plan = match plan {
        Ok(p) => p,
        Err(e) => return edge.reject(session, ctx, e).await,
    };
    ctx.graphql_mut().expect("a GraphQL request").operation = Some(plan.kind);
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
            return edge.reject(session, ctx, e).await;
        }
    }
    let g = ctx.graphql_mut().expect("a GraphQL request");
    if g.unverified_auth {
        caching::bypass(site, g, NotCached::UnverifiedAuth);
        tagging::read_only(g, &plan, &bytes, is_get);
        return Ok(false);
    }
    let served = caching::lookup(&edge.cache, site, session, g, &plan, bytes.clone()).await?;
    if served {
        return Ok(true);
    }
    tagging::prepare_upstream(g, &plan, &bytes, is_get);
    if is_get && site.config.get_as_post {
        let qs = match g.upstream_query.take() {
            Some(q) => bytes::Bytes::from(q),
            None => bytes.clone(),
        };
        match forward::get_as_post_body(&qs) {
            Ok(body) => {
                g.upstream_body = Some(body);
                g.get_as_post = true;
            }
            Err(e) => return edge.reject(session, ctx, e).await,
        }
    }
    caching::sent_upstream(g);
    Ok(false)
}

/// The site's auth modes on the request's credentials: who it is (kept in `g`), and the token
/// an HTTP authorizer still has to judge once the operation is known.
async fn authenticate(
    session: &Session,
    g: &mut Graphql,
    site: &SiteRuntime,
) -> Result<Option<String>, EdgeError> {
    let Some(modes) = &site.auth else {
        return Ok(None);
    };
    match auth::check_headers(&session.req_header().headers, &site.config.name, modes).await {
        auth::Outcome::Accepted(a) => {
            g.unverified_auth = !a.verified;
            g.principal = Some(a.principal);
            Ok(None)
        }
        auth::Outcome::Authorizer { token, principal } => {
            g.principal = Some(principal);
            Ok(Some(token))
        }
        auth::Outcome::Rejected(e) => Err(e),
    }
}
