//! Cache tags on the request path. For a cached query, and for a mutation on a site that
//! caches, the upstream gets the document with the edge's own `__typename` field
//! (`tags::TYPENAME_ALIAS`) in every field's selection set that has no plain one; the response
//! then names the types and entities it holds (the cache entry's tags, or what the mutation
//! purges), and the edge's field is removed before the client, or the cache, sees the
//! response.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::value::RawValue;
use serde_json::Value;

use super::Graphql;
use crate::cache::key::Decision;
use crate::cache::tags::{self, Tag, Typed};
use crate::cache::{RequestPlan, ResponseCache};
use crate::config::cache::Invalidate;
use crate::graphql::OperationKind;
use crate::site::SiteRuntime;

/// Responses larger than this are passed through unrewritten (and untagged).
const REWRITE_LIMIT: usize = 8 * 1024 * 1024;

/// A request whose response is tagged, in the request context.
pub struct Tagging {
    /// How to strip what the upstream got for tagging from the response; `None` once the
    /// response turned out not to be one to tag. A background refresh of the entry uses it too.
    pub typed: Option<Arc<Typed>>,
    /// The response body collected so far.
    rewrite: Option<BytesMut>,
    /// Tags of the cache entry being filled.
    pub entry_tags: Vec<Tag>,
    /// A mutation's root fields (its response purges what it changed).
    mutation_fields: Vec<String>,
    /// The request (JSON body or query string), when root field arguments may name entities:
    /// its variables are read if the response needs them.
    request: Option<(Bytes, bool)>,
    /// What tagging read from the response, for the cache's rules.
    pub read: Option<crate::cache::Read>,
}

/// The operation's own tags: its name and root fields.
pub fn base_tags(plan: &RequestPlan) -> Vec<Tag> {
    let mut out: Vec<Tag> = plan.root_fields.iter().map(|f| tags::field(f)).collect();
    if let Some(name) = &plan.operation_name {
        out.push(tags::operation(name));
    }
    out
}

/// After the cache did not answer: give the upstream the document with the edge's
/// `__typename`s. A cached query whose document cannot be read for types is still tagged with
/// its operation and root fields.
pub fn prepare_upstream(g: &mut Graphql, plan: &RequestPlan, raw: &Bytes, is_get: bool) {
    let cached = matches!(plan.decision, Decision::Cache(_));
    let typed = plan.typed.clone();
    if typed.is_none() && !cached {
        return;
    }
    if let Some(query) = typed.as_ref().and_then(|t| t.query.as_ref()) {
        if is_get {
            g.upstream_query = Some(with_query_param(raw, query));
        } else {
            match with_query_field(raw, query) {
                Some(body) => g.upstream_body = Some(body),
                None => return,
            }
        }
    }
    g.tags = Some(Tagging::new(plan, typed, raw, is_get));
}

/// A request forwarded as it came (signed by the client, which only the upstream can verify):
/// a mutation's response is still read for the entities it returns, from the `__typename`s
/// the client asked for itself, and purges them.
pub fn read_only(g: &mut Graphql, plan: &RequestPlan, raw: &Bytes, is_get: bool) {
    let Some(typed) = plan.typed.as_ref() else {
        return;
    };
    if plan.kind != OperationKind::Mutation {
        return;
    }
    let as_sent = Typed {
        query: None,
        root_args: typed.root_args.clone(),
    };
    g.tags = Some(Tagging::new(plan, Some(Arc::new(as_sent)), raw, is_get));
}

impl Tagging {
    /// The tagging of `plan`'s response, read with `typed`.
    fn new(plan: &RequestPlan, typed: Option<Arc<Typed>>, raw: &Bytes, is_get: bool) -> Box<Self> {
        let mutation = plan.kind == OperationKind::Mutation;
        let request = typed
            .as_ref()
            .filter(|t| !t.root_args.is_empty())
            .map(|_| (raw.clone(), is_get));
        Box::new(Tagging {
            typed,
            rewrite: None,
            // A mutation's response is not stored: it purges, by its root fields.
            entry_tags: if mutation {
                Vec::new()
            } else {
                base_tags(plan)
            },
            mutation_fields: if mutation {
                plan.root_fields.clone()
            } else {
                Vec::new()
            },
            request,
            read: None,
        })
    }
}

/// The request's variables (for entities named by root field arguments).
pub fn variables_of(raw: &[u8], is_get: bool) -> Option<serde_json::Map<String, Value>> {
    let text = if is_get {
        form_urlencoded::parse(raw)
            .find(|(k, _)| k == "variables")
            .map(|(_, v)| v.into_owned())?
    } else {
        let mut v: serde_json::Map<String, Value> = serde_json::from_slice(raw).ok()?;
        return match v.remove("variables")? {
            Value::Object(m) => Some(m),
            _ => None,
        };
    };
    match serde_json::from_str(&text).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The JSON body with `query` replaced; every other member is sent as it came, byte for byte
/// (a number in the variables keeps every digit).
fn with_query_field(raw: &[u8], query: &str) -> Option<Bytes> {
    let mut v: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(raw).ok()?;
    v.insert("query".into(), serde_json::value::to_raw_value(query).ok()?);
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

/// The query string with `query` replaced.
fn with_query_param(raw: &[u8], query: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(raw) {
        if k == "query" {
            out.append_pair("query", query);
        } else {
            out.append_pair(&k, &v);
        }
    }
    out.finish()
}

/// `upstream_response_filter`: a response to tag is collected whole. One to strip as well is
/// held until then, and its length changes; any other streams on while a copy is collected.
pub fn response_header(session: &Session, g: &mut Graphql, resp: &mut ResponseHeader) {
    let Some(t) = g.tags.as_mut() else {
        return;
    };
    let Some(typed) = &t.typed else {
        return;
    };
    if resp.status != http::StatusCode::OK
        || resp.headers.contains_key(http::header::CONTENT_ENCODING)
    {
        t.typed = None;
        return;
    }
    if typed.strips() {
        resp.remove_header(&http::header::CONTENT_LENGTH);
        if session.req_header().version == http::Version::HTTP_11 {
            let _ = resp.insert_header(http::header::TRANSFER_ENCODING, "chunked");
        }
    }
    t.rewrite = Some(BytesMut::new());
}

/// `upstream_response_body_filter`, before the cache sees the body: collect it, then tag,
/// strip, and (for a mutation) purge what it changed.
pub fn response_body(
    cache: &ResponseCache,
    site: &SiteRuntime,
    g: &mut Graphql,
    body: &mut Option<Bytes>,
    end: bool,
) {
    let Some(t) = g.tags.as_deref_mut() else {
        return;
    };
    let (Some(buf), Some(typed)) = (t.rewrite.as_mut(), t.typed.as_ref()) else {
        return;
    };
    // Held until it is complete when it is rewritten, and for a mutation, so that its purge
    // is done before the client has all of it (else a client reading its own write at once
    // could still be answered from the cache). Anything else streams on, a copy collected.
    let held = typed.strips() || !t.mutation_fields.is_empty();
    if held {
        if let Some(chunk) = body.take() {
            buf.extend_from_slice(&chunk);
        }
    } else if let Some(chunk) = body.as_ref() {
        buf.extend_from_slice(chunk);
    }
    if buf.len() > REWRITE_LIMIT {
        // Too large to hold: what came so far goes on unchanged, and so does the rest.
        if held {
            *body = Some(buf.split().freeze());
        }
        t.rewrite = None;
        t.typed = None;
        return;
    }
    if !end {
        return;
    }
    let raw = t.rewrite.take().unwrap_or_default().freeze();
    // Kept: a background refresh of the entry tags and strips the same way.
    let Some(typed) = t.typed.clone() else {
        return;
    };
    let request = t.request.take();
    let variables = || {
        let (raw, is_get) = request.as_ref()?;
        variables_of(raw, *is_get)
    };
    let processed = tags::process(&raw, &typed, &variables, &site.config.cache.key_fields);
    let Some(processed) = processed else {
        if held {
            *body = Some(raw);
        }
        return;
    };
    if held {
        *body = Some(processed.body.unwrap_or(raw));
    }
    if !t.mutation_fields.is_empty() {
        invalidate(cache, site, &t.mutation_fields, &processed.tags);
    }
    t.entry_tags.extend(processed.tags);
    t.read = Some(processed.read);
}

/// Purge what a mutation changed, as the site's policy says.
fn invalidate(
    cache: &ResponseCache,
    site: &SiteRuntime,
    mutation_fields: &[String],
    found: &HashSet<Tag>,
) {
    let policy = &site.config.cache;
    let mut purge: Vec<Tag> = Vec::new();
    for field in mutation_fields {
        let (mode, fields) = match policy.mutations.get(field) {
            Some(rule) => (rule.invalidate, &rule.purge_fields[..]),
            None => (policy.invalidate, &[][..]),
        };
        let prefix = match mode {
            Invalidate::Entity => Some("entity:"),
            Invalidate::Type => Some("type:"),
            Invalidate::None => None,
        };
        if let Some(prefix) = prefix {
            purge.extend(found.iter().filter(|t| t.starts_with(prefix)).cloned());
        }
        purge.extend(fields.iter().map(|f| tags::field(f)));
    }
    if purge.is_empty() {
        return;
    }
    let n = cache.purge_mutation(site.index, &purge);
    tracing::debug!(site = %site.config.name, purged = n, "mutation purged cached responses");
}
