//! `[cache]` and `[site.cache]`: the shared query cache's size, and a site's cache policy (rules
//! by operation name, root field and returned type, scopes, what to do with the upstream's and
//! the client's Cache-Control), as written in the file and validated.

use std::time::Duration;

use bytesize::ByteSize;
use http::HeaderName;
use serde::Deserialize;

use super::{value, KeyPath, Validator};

/// `[cache]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheFile {
    /// Memory for cached responses (keys, bodies and headers), for the whole process.
    pub max_size: ByteSize,
}

impl Default for CacheFile {
    fn default() -> Self {
        Self {
            max_size: ByteSize::mib(256),
        }
    }
}

/// `[site.cache]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SiteCacheFile {
    /// TTL of queries no rule matches; "0s": such queries are not cached.
    #[serde(with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Scope of queries cached by `default-ttl`.
    pub default_scope: ScopeFile,
    /// Stale-while-revalidate window of queries cached by `default-ttl`.
    #[serde(with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// How long past its TTL a response may be served when the upstream fails or times out.
    #[serde(with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// Request header naming the principal of per-principal scopes (until auth exists), e.g.
    /// "authorization" or "x-api-key". Its value is hashed, never stored.
    pub principal_header: Option<value::HeaderName>,
    /// Cookie naming the principal instead of a header.
    pub principal_cookie: Option<String>,
    /// Ignore the upstream's Cache-Control (no-store, private, max-age).
    pub ignore_upstream_cache_control: bool,
    /// Let a client's `Cache-Control: no-cache` fetch a fresh response (and refresh the entry).
    pub allow_client_no_cache: bool,
    /// Larger responses are not cached.
    pub max_entry_size: ByteSize,
    /// Upstream response headers kept in cached responses, besides Content-Type.
    pub keep_headers: Vec<value::HeaderName>,
    /// How long concurrent misses for one key wait for the first one's response.
    #[serde(with = "humantime_serde")]
    pub coalesce_wait: Duration,
    /// Caching rules; overlapping rules take the smallest TTL and the union of scopes.
    #[serde(rename = "rule")]
    pub rules: Vec<CacheRuleFile>,
    /// Fields identifying an entity of a type, for entity tags (default `id`).
    pub key_fields: std::collections::HashMap<String, Vec<String>>,
    /// What a mutation's response purges: "entity" (cached responses holding the entities it
    /// returns), "type" (every response holding their types), or "none".
    pub invalidate: InvalidateFile,
    /// Per mutation field: what it purges instead, and root fields purged with it.
    #[serde(rename = "mutation")]
    pub mutations: Vec<MutationRuleFile>,
}

impl Default for SiteCacheFile {
    fn default() -> Self {
        Self {
            default_ttl: Duration::ZERO,
            default_scope: ScopeFile::Public,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            principal_header: None,
            principal_cookie: None,
            ignore_upstream_cache_control: false,
            allow_client_no_cache: false,
            max_entry_size: ByteSize::mib(1),
            keep_headers: Vec::new(),
            coalesce_wait: Duration::from_secs(5),
            rules: Vec::new(),
            key_fields: Default::default(),
            invalidate: InvalidateFile::Entity,
            mutations: Vec::new(),
        }
    }
}

/// Whose data a cached response is: anyone's, or one principal's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScopeFile {
    #[default]
    Public,
    Principal,
}

/// What a mutation purges, as written (see `Invalidate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvalidateFile {
    #[default]
    Entity,
    Type,
    None,
}

/// One caching rule: it matches by exactly one of `operation`, `field` or `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheRuleFile {
    /// Operation name, e.g. "GetPost".
    #[serde(default)]
    pub operation: Option<String>,
    /// Root field, e.g. "Query.listPosts".
    #[serde(default)]
    pub field: Option<String>,
    /// A type returned anywhere in the response (by its `__typename`), e.g. "Post".
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    /// How long a response stays fresh (1s to 24h).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long after the TTL a stale response is served while a fresh one is fetched.
    #[serde(default, with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// `public` or `principal`.
    #[serde(default)]
    pub scope: ScopeFile,
}

/// One `[[site.cache.mutation]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MutationRuleFile {
    /// The mutation's root field, e.g. "deletePost".
    pub field: String,
    #[serde(default)]
    pub invalidate: Option<InvalidateFile>,
    /// Cached responses of these root fields (any arguments) are purged too, e.g. ["listPosts"].
    #[serde(default)]
    pub purge_fields: Vec<String>,
}

/// The longest TTL a rule may set.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Public,
    Principal,
}

impl From<ScopeFile> for Scope {
    fn from(s: ScopeFile) -> Self {
        match s {
            ScopeFile::Public => Self::Public,
            ScopeFile::Principal => Self::Principal,
        }
    }
}

/// Where the principal of a per-principal scope comes from (until auth provides one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalSource {
    Header(HeaderName),
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Operation(String),
    /// A root field of the Query type, without the `Query.` prefix.
    Field(String),
    Type(String),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: Matcher,
    pub ttl: Duration,
    pub swr: Duration,
    pub scope: Scope,
}

#[derive(Debug, Clone)]
pub struct CachePolicy {
    pub default_ttl: Duration,
    pub default_scope: Scope,
    pub default_swr: Duration,
    pub stale_if_error: Duration,
    pub principal: Option<PrincipalSource>,
    pub ignore_upstream_cache_control: bool,
    pub allow_client_no_cache: bool,
    pub max_entry_size: usize,
    pub keep_headers: Vec<HeaderName>,
    pub coalesce_wait: Duration,
    pub rules: Vec<Rule>,
    /// Entity key fields by type (default `id`).
    pub key_fields: std::collections::HashMap<String, Vec<String>>,
    /// What a mutation purges, by default and per mutation root field.
    pub invalidate: Invalidate,
    pub mutations: std::collections::HashMap<String, MutationRule>,
}

/// What a mutation's response purges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidate {
    /// Cached responses holding an entity the mutation returned.
    Entity,
    /// Cached responses holding any object of a type the mutation returned.
    Type,
    None,
}

impl From<InvalidateFile> for Invalidate {
    fn from(f: InvalidateFile) -> Self {
        match f {
            InvalidateFile::Entity => Self::Entity,
            InvalidateFile::Type => Self::Type,
            InvalidateFile::None => Self::None,
        }
    }
}

/// One mutation root field's own invalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationRule {
    pub invalidate: Invalidate,
    /// Root fields whose cached responses are purged too.
    pub purge_fields: Vec<String>,
}

impl CachePolicy {
    /// Whether anything of this site can be cached at all.
    pub fn enabled(&self) -> bool {
        !self.default_ttl.is_zero() || !self.rules.is_empty()
    }
}

impl Validator<'_> {
    /// `has_auth`: the site authenticates callers, who are then the principals.
    pub(super) fn cache_policy(
        &mut self,
        at: KeyPath,
        f: &SiteCacheFile,
        has_auth: bool,
    ) -> CachePolicy {
        let principal = match (&f.principal_header, &f.principal_cookie) {
            (Some(_), Some(_)) => {
                self.problem(
                    at.key("principal-cookie"),
                    "set principal-header or principal-cookie, not both",
                );
                None
            }
            (Some(h), None) => self
                .header_name(at.key("principal-header"), h)
                .map(PrincipalSource::Header),
            (None, Some(c)) if c.is_empty() || c.contains([';', '=', ' ']) => {
                self.problem(
                    at.key("principal-cookie"),
                    format!("`{c}` is not a cookie name"),
                );
                None
            }
            (None, Some(c)) => Some(PrincipalSource::Cookie(c.clone())),
            (None, None) => None,
        };
        if f.default_ttl > MAX_TTL {
            self.problem(at.key("default-ttl"), "must be at most 24h");
        }
        let mut rules = Vec::new();
        for (i, r) in f.rules.iter().enumerate() {
            let rat = at.key("rule").index(i);
            let matcher = match (&r.operation, &r.field, &r.type_name) {
                (Some(o), None, None) => Some(Matcher::Operation(o.clone())),
                (None, Some(field), None) => match field.split_once('.') {
                    Some(("Query", name)) if !name.is_empty() => {
                        Some(Matcher::Field(name.to_string()))
                    }
                    _ => {
                        self.problem(
                            rat.key("field"),
                            format!("`{field}`: write a Query root field as Query.fieldName"),
                        );
                        None
                    }
                },
                (None, None, Some(t)) => Some(Matcher::Type(t.clone())),
                _ => {
                    self.problem(
                        rat.clone(),
                        "a rule names exactly one of operation, field or type",
                    );
                    None
                }
            };
            if r.ttl.is_zero() || r.ttl > MAX_TTL {
                self.problem(rat.key("ttl"), "must be between 1s and 24h");
            }
            if let Some(matcher) = matcher {
                rules.push(Rule {
                    matcher,
                    ttl: r.ttl,
                    swr: r.stale_while_revalidate,
                    scope: r.scope.into(),
                });
            }
        }
        let needs_principal = rules.iter().any(|r| r.scope == Scope::Principal)
            || (!f.default_ttl.is_zero() && f.default_scope == ScopeFile::Principal);
        if needs_principal
            && !has_auth
            && principal.is_none()
            && f.principal_cookie.is_none()
            && f.principal_header.is_none()
        {
            self.problem(
                at.key("principal-header"),
                "a principal scope is used: configure [site.auth], or name the principal-header or principal-cookie",
            );
        }
        let mut keep_headers = Vec::new();
        for (i, h) in f.keep_headers.iter().enumerate() {
            let at = at.key("keep-headers").index(i);
            match self.header_name(at.clone(), h) {
                Some(n) if n == http::header::SET_COOKIE => {
                    self.problem(at, "set-cookie is never cached");
                }
                Some(n) => keep_headers.push(n),
                None => {}
            }
        }
        CachePolicy {
            default_ttl: f.default_ttl,
            default_scope: f.default_scope.into(),
            default_swr: f.stale_while_revalidate,
            stale_if_error: f.stale_if_error,
            principal,
            ignore_upstream_cache_control: f.ignore_upstream_cache_control,
            allow_client_no_cache: f.allow_client_no_cache,
            max_entry_size: f.max_entry_size.as_u64().min(usize::MAX as u64) as usize,
            keep_headers,
            coalesce_wait: f.coalesce_wait,
            rules,
            key_fields: f.key_fields.clone(),
            invalidate: f.invalidate.into(),
            mutations: f
                .mutations
                .iter()
                .map(|m| {
                    (
                        m.field.clone(),
                        MutationRule {
                            invalidate: m.invalidate.unwrap_or(f.invalidate).into(),
                            purge_fields: m.purge_fields.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}
