//! Cache tags: what a cached response answers, so it can be purged by what changed. Each entry
//! is tagged with its operation name, its root fields, the types in it and every entity
//! (`__typename` + key fields) it holds.

use std::sync::Arc;

/// One tag, e.g. `entity:Post:1`.
pub type Tag = Arc<str>;

pub fn operation(name: &str) -> Tag {
    format!("op:{name}").into()
}

pub fn field(name: &str) -> Tag {
    format!("field:{name}").into()
}

pub fn type_name(name: &str) -> Tag {
    format!("type:{name}").into()
}

pub fn entity(type_name: &str, id: &str) -> Tag {
    format!("entity:{type_name}:{id}").into()
}
