//! `[site.limits]`: the operation limits checked at the edge, as written in the file and as
//! the GraphQL analysis takes them.

use serde::Deserialize;

/// Operation limits; 0 means no limit.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsFile {
    /// Deepest selection (`{ a { b } }` is 2), fragments expanded.
    pub max_depth: u32,
    /// Aliased fields, fragments expanded.
    pub max_aliases: u64,
    /// Fields at the root of the operation.
    pub max_root_fields: u32,
    /// All fields, each fragment counted where it is spread.
    pub max_fields: u64,
    /// Directives on one field, fragment spread or inline fragment.
    pub max_directives_per_field: u32,
    /// Lexical tokens of the document.
    pub max_tokens: u32,
    /// Allow `__schema` and `__type` (introspection).
    pub introspection: bool,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_aliases: 100,
            max_root_fields: 50,
            max_fields: 5000,
            max_directives_per_field: 10,
            max_tokens: 15000,
            introspection: true,
        }
    }
}

pub(super) fn limits_of(l: &LimitsFile) -> crate::graphql::Limits {
    fn some<T: PartialEq + Default>(v: T) -> Option<T> {
        (v != T::default()).then_some(v)
    }
    crate::graphql::Limits {
        max_depth: some(l.max_depth),
        max_aliases: some(l.max_aliases),
        max_root_fields: some(l.max_root_fields),
        max_fields: some(l.max_fields),
        max_directives: some(l.max_directives_per_field),
        max_tokens: some(l.max_tokens),
        introspection: l.introspection,
    }
}
