//! `[site.limits]`: the operation limits checked at the edge, as written in the file and as
//! the GraphQL analysis takes them.

use serde::Deserialize;

/// Operation limits; 0 means no limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsFile {
    /// Deepest selection (`{ a { b } }` is 2), fragments expanded.
    #[serde(default = "default_max_depth")]
    pub max_depth: u32,
    /// Aliased fields, fragments expanded.
    #[serde(default = "default_max_aliases")]
    pub max_aliases: u64,
    /// Fields at the root of the operation.
    #[serde(default = "default_max_root_fields")]
    pub max_root_fields: u32,
    /// All fields, each fragment counted where it is spread.
    #[serde(default = "default_max_fields")]
    pub max_fields: u64,
    /// Directives on one field, fragment spread or inline fragment.
    #[serde(default = "default_max_directives")]
    pub max_directives_per_field: u32,
    /// Lexical tokens of the document.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Allow `__schema` and `__type` (introspection).
    #[serde(default = "default_true")]
    pub introspection: bool,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_depth: default_max_depth(),
            max_aliases: default_max_aliases(),
            max_root_fields: default_max_root_fields(),
            max_fields: default_max_fields(),
            max_directives_per_field: default_max_directives(),
            max_tokens: default_max_tokens(),
            introspection: true,
        }
    }
}

fn default_max_depth() -> u32 {
    32
}

fn default_max_aliases() -> u64 {
    100
}

fn default_max_root_fields() -> u32 {
    50
}

fn default_max_fields() -> u64 {
    5000
}

fn default_max_directives() -> u32 {
    10
}

fn default_max_tokens() -> u32 {
    15000
}

fn default_true() -> bool {
    true
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
