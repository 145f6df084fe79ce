//! One pass over a response's JSON, without building a tree: the types and entities in its
//! `data`, the objects its root fields returned, and (when stripping) the response written
//! again without the edge's own `__typename` field. Field order, and every value, are written
//! as they came (numbers as serde_json writes them).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::{type_name, Tag, TYPENAME_ALIAS};

/// An object a root field returned: its response key, type, and the fields it holds.
pub(super) struct RootObject {
    pub key: String,
    pub typename: Option<String>,
    pub fields: Vec<String>,
}

/// What the pass found and wrote. `'a`: the configuration and the response read.
pub(super) struct Walk<'a> {
    key_fields: &'a HashMap<String, Vec<String>>,
    /// Field names some type is keyed by: their scalar values are kept until the object's type
    /// is known (`__typename` may come after them).
    key_names: Vec<&'a str>,
    /// The response written again, when stripping.
    pub out: Vec<u8>,
    types: HashSet<Cow<'a, str>>,
    entities: HashSet<Tag>,
    /// Key field values of the objects being read, innermost last.
    captured: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Where an entity tag is built.
    scratch: String,
    pub roots: Vec<RootObject>,
    saw_data: bool,
    /// The response has `errors` (not null).
    pub errors: bool,
}

impl<'a> Walk<'a> {
    /// Walk `raw`, writing it again without the edge's field when `strip`. `None` when it is
    /// not a JSON object with `data`.
    pub fn run(
        raw: &'a [u8],
        strip: bool,
        key_fields: &'a HashMap<String, Vec<String>>,
    ) -> Option<Self> {
        let mut key_names: Vec<&str> = key_fields.values().flatten().map(String::as_str).collect();
        key_names.push("id");
        key_names.sort_unstable();
        key_names.dedup();
        let mut walk = Walk {
            key_fields,
            key_names,
            out: Vec::with_capacity(if strip { raw.len() } else { 0 }),
            types: HashSet::new(),
            entities: HashSet::new(),
            captured: Vec::new(),
            scratch: String::new(),
            roots: Vec::new(),
            saw_data: false,
            errors: false,
        };
        let mut de = serde_json::Deserializer::from_slice(raw);
        Node {
            walk: &mut walk,
            role: Role::Top,
            write: strip,
            capture: false,
        }
        .deserialize(&mut de)
        .ok()?;
        de.end().ok()?;
        walk.saw_data.then_some(walk)
    }

    /// The types found.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.types.iter().map(|t| &**t)
    }

    /// The types and entities found.
    pub fn tags(&mut self) -> HashSet<Tag> {
        let mut out = std::mem::take(&mut self.entities);
        out.extend(self.types.iter().map(|t| type_name(t)));
        out
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, v: &T) {
        // Writing a string, number or bool into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, v);
    }

    /// `,"key":` (without the comma for the first).
    fn key(&mut self, key: &str, first: &mut bool) {
        if !std::mem::take(first) {
            self.raw(b",");
        }
        self.json(key);
        self.raw(b":");
    }

    /// Tag an object of type `typename` holding the key values `self.captured[from..]`.
    fn tag(&mut self, typename: Cow<'a, str>, from: usize) {
        let default = ["id".to_string()];
        let keys = self
            .key_fields
            .get(&*typename)
            .map_or(&default[..], Vec::as_slice);
        let captured = &self.captured[from..];
        // The tag's text is built where it costs no allocation; stored once per entity,
        // however often the entity appears.
        let tag = &mut self.scratch;
        tag.clear();
        tag.push_str("entity:");
        tag.push_str(&typename);
        tag.push(':');
        let mut complete = !keys.is_empty();
        for (i, k) in keys.iter().enumerate() {
            match captured.iter().find(|(name, _)| name == k) {
                Some((_, v)) if complete => {
                    if i > 0 {
                        tag.push(',');
                    }
                    tag.push_str(v);
                }
                _ => complete = false,
            }
        }
        if complete && !self.entities.contains(tag.as_str()) {
            self.entities.insert(Tag::from(tag.as_str()));
        }
        if !self.types.contains(&*typename) {
            self.types.insert(typename);
        }
    }
}

/// What a value was, as far as the object holding it needs to know.
enum Seen<'a> {
    Null,
    /// A scalar's text, when it was asked for.
    Scalar(Cow<'a, str>),
    Other,
}

/// Where a value is in the response.
#[derive(Clone, PartialEq)]
enum Role {
    /// The response object.
    Top,
    /// Outside `data` (`errors`, `extensions`): written, not tagged.
    Outside,
    /// `data`.
    Data,
    /// What a root field returned, by response key.
    Root(String),
    Inner,
}

/// One value: written (if `write`), tagged (inside `data`); a scalar's text is returned when
/// `capture` asks for it.
struct Node<'w, 'a> {
    walk: &'w mut Walk<'a>,
    role: Role,
    write: bool,
    capture: bool,
}

impl<'a> DeserializeSeed<'a> for Node<'_, 'a> {
    type Value = Seen<'a>;

    fn deserialize<D: de::Deserializer<'a>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a> Node<'_, 'a> {
    fn scalar<T: serde::Serialize + ToString + ?Sized>(self, v: &T) -> Seen<'a> {
        if self.write {
            self.walk.json(v);
        }
        if self.capture {
            Seen::Scalar(Cow::Owned(v.to_string()))
        } else {
            Seen::Other
        }
    }
}

impl<'a> Visitor<'a> for Node<'_, 'a> {
    type Value = Seen<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a GraphQL response")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.scalar(&v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.scalar(&v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.scalar(&v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // As serde_json writes and shows a float (a non-finite one is null, as it writes it).
        match serde_json::Number::from_f64(v) {
            Some(n) => Ok(self.scalar(&n)),
            None => self.visit_unit(),
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.scalar(v))
    }

    fn visit_borrowed_str<E>(self, v: &'a str) -> Result<Self::Value, E> {
        if self.write {
            self.walk.json(v);
        }
        Ok(if self.capture {
            Seen::Scalar(Cow::Borrowed(v))
        } else {
            Seen::Other
        })
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        if self.write {
            self.walk.raw(b"null");
        }
        Ok(Seen::Null)
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let Node {
            walk, role, write, ..
        } = self;
        let role = if role == Role::Outside {
            Role::Outside
        } else {
            Role::Inner
        };
        if write {
            walk.raw(b"[");
        }
        let mut first = true;
        loop {
            let item = Node {
                walk: &mut *walk,
                role: role.clone(),
                write,
                capture: false,
            };
            if seq.next_element_seed(Element(item, !first))?.is_none() {
                break;
            }
            first = false;
        }
        if write {
            walk.raw(b"]");
        }
        Ok(Seen::Other)
    }

    fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Node {
            walk, role, write, ..
        } = self;
        if write {
            walk.raw(b"{");
        }
        let tagged = !matches!(role, Role::Top | Role::Outside);
        let mut first = true;
        let mut typename: Option<Cow<'a, str>> = None;
        let from = walk.captured.len();
        let mut fields: Vec<String> = Vec::new();
        while let Some(key) = map.next_key_seed(Str)? {
            if matches!(role, Role::Root(_)) {
                fields.push(key.to_string());
            }
            if tagged && (key == "__typename" || key == TYPENAME_ALIAS) {
                // The client's own `__typename` is written; the edge's field never is.
                let keep = write && key == "__typename";
                if keep {
                    walk.key(&key, &mut first);
                }
                let seen = map.next_value_seed(Node {
                    walk: &mut *walk,
                    role: Role::Inner,
                    write: keep,
                    capture: true,
                })?;
                if let Seen::Scalar(t) = seen {
                    typename = Some(t);
                }
                continue;
            }
            let child_role = match &role {
                Role::Top if key == "data" => {
                    walk.saw_data = true;
                    Role::Data
                }
                Role::Top | Role::Outside => Role::Outside,
                Role::Data => Role::Root(key.to_string()),
                Role::Root(_) | Role::Inner => Role::Inner,
            };
            let capture = tagged && walk.key_names.binary_search(&&*key).is_ok();
            if write {
                walk.key(&key, &mut first);
            }
            let value = map.next_value_seed(Node {
                walk: &mut *walk,
                role: child_role,
                write,
                capture,
            })?;
            match value {
                Seen::Scalar(v) => walk.captured.push((key, v)),
                Seen::Other if role == Role::Top && key == "errors" => walk.errors = true,
                _ => {}
            }
        }
        if write {
            walk.raw(b"}");
        }
        if let Role::Root(key) = role {
            walk.roots.push(RootObject {
                key,
                typename: typename.as_ref().map(|t| t.to_string()),
                fields,
            });
        }
        if let Some(t) = typename {
            walk.tag(t, from);
        }
        walk.captured.truncate(from);
        Ok(Seen::Other)
    }
}

/// An array element, after a comma when it is not the first (only called when there is one).
struct Element<'w, 'a>(Node<'w, 'a>, bool);

impl<'a> DeserializeSeed<'a> for Element<'_, 'a> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'a>>(self, d: D) -> Result<(), D::Error> {
        let Element(node, comma) = self;
        if comma && node.write {
            node.walk.raw(b",");
        }
        node.deserialize(d).map(drop)
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Str;

impl<'de> DeserializeSeed<'de> for Str {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Str {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}
