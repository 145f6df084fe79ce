//! Cache tags: what a cached response answers, so it can be purged by what changed. Each entry
//! is tagged with its operation name, its root fields, the types in it and every entity
//! (`__typename` + key fields) it holds.

use std::sync::Arc;

/// A request's variables.
pub type Variables = serde_json::Map<String, serde_json::Value>;

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

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use graphql_parser::query::{
    parse_query, Definition, Document, Field, OperationDefinition, Selection, SelectionSet,
};
use serde_json::Value;

mod walk;
use walk::{RootObject, Walk};

/// Where the client asked for `__typename`, by response key, from the root of `data`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shape {
    typename: bool,
    children: HashMap<String, Shape>,
}

/// A document prepared for tagging: the text the upstream gets (`__typename` in every nested
/// selection set), and the shape the client asked for.
#[derive(Debug)]
pub struct Typed {
    /// The rewritten document; `None` when the client's already asks for every `__typename`.
    pub query: Option<String>,
    pub shape: Shape,
    /// Root fields' scalar arguments (`getPost(id: $id)`): an object a root field returns
    /// without its key fields is still the entity its arguments name.
    pub root_args: Vec<RootArg>,
}

impl Typed {
    /// Whether responses change shape: the upstream got `__typename`s the client did not
    /// ask for.
    pub fn strips(&self) -> bool {
        self.query.is_some()
    }
}

/// One root field's arguments, by response key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootArg {
    pub key: String,
    pub args: Vec<(String, ArgValue)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    Literal(String),
    Variable(String),
}

/// Fragment spreads are followed this deep (cycles are refused by the limits anyway).
const MAX_SPREAD_DEPTH: usize = 32;

/// Typed documents by document key (query text and operation name digest).
static TYPED: LazyLock<moka::sync::Cache<[u8; 32], Option<Arc<Typed>>>> = LazyLock::new(|| {
    moka::sync::Cache::builder()
        .max_capacity(10_000)
        .time_to_idle(std::time::Duration::from_secs(3600))
        .build()
});

/// [`prepare`], memoized by `doc_key`.
pub fn typed(doc_key: [u8; 32], query: &str, operation_name: Option<&str>) -> Option<Arc<Typed>> {
    TYPED.get_with(doc_key, || prepare(query, operation_name).map(Arc::new))
}

/// Add `__typename` to every nested selection set of `query` (operations and fragments), and
/// note where the client asked for it. `None` when the document does not parse (the request is
/// refused before this matters) or has no operation named `operation_name`.
pub fn prepare(query: &str, operation_name: Option<&str>) -> Option<Typed> {
    let mut doc: Document<'_, String> = parse_query(query).ok()?;
    let (shape, root_args) = shape_of(&doc, operation_name)?;
    let mut changed = false;
    for def in &mut doc.definitions {
        match def {
            Definition::Operation(op) => {
                let top = match op {
                    OperationDefinition::SelectionSet(s) => s,
                    OperationDefinition::Query(q) => &mut q.selection_set,
                    OperationDefinition::Mutation(m) => &mut m.selection_set,
                    OperationDefinition::Subscription(s) => &mut s.selection_set,
                };
                // The root object is not an entity: its fields' sets get `__typename`.
                for item in &mut top.items {
                    changed |= inject_into(item);
                }
            }
            Definition::Fragment(f) => changed |= inject(&mut f.selection_set),
        }
    }
    Some(Typed {
        query: changed.then(|| doc.to_string()),
        shape,
        root_args,
    })
}

fn inject_into(item: &mut Selection<'_, String>) -> bool {
    match item {
        Selection::Field(f) if !f.selection_set.items.is_empty() => inject(&mut f.selection_set),
        Selection::Field(_) | Selection::FragmentSpread(_) => false,
        Selection::InlineFragment(i) => {
            let mut changed = false;
            for item in &mut i.selection_set.items {
                changed |= inject_into(item);
            }
            changed
        }
    }
}

fn inject(set: &mut SelectionSet<'_, String>) -> bool {
    let mut changed = false;
    for item in &mut set.items {
        changed |= inject_into(item);
    }
    let has = set
        .items
        .iter()
        .any(|i| matches!(i, Selection::Field(f) if f.name == "__typename" && f.alias.is_none()));
    if !has {
        set.items.push(Selection::Field(Field {
            position: set.span.0,
            alias: None,
            name: "__typename".to_string(),
            arguments: Vec::new(),
            directives: Vec::new(),
            selection_set: SelectionSet {
                span: set.span,
                items: Vec::new(),
            },
        }));
        changed = true;
    }
    changed
}

fn shape_of(
    doc: &Document<'_, String>,
    operation_name: Option<&str>,
) -> Option<(Shape, Vec<RootArg>)> {
    let mut fragments = HashMap::new();
    let mut operations = Vec::new();
    for def in &doc.definitions {
        match def {
            Definition::Fragment(f) => {
                fragments.insert(f.name.as_str(), &f.selection_set);
            }
            Definition::Operation(op) => operations.push(op),
        }
    }
    let name_of = |op: &OperationDefinition<'_, String>| match op {
        OperationDefinition::SelectionSet(_) => None,
        OperationDefinition::Query(q) => q.name.clone(),
        OperationDefinition::Mutation(m) => m.name.clone(),
        OperationDefinition::Subscription(s) => s.name.clone(),
    };
    let op = match operation_name {
        Some(n) => operations
            .into_iter()
            .find(|o| name_of(o).as_deref() == Some(n))?,
        None if operations.len() == 1 => operations[0],
        None => return None,
    };
    let top = match op {
        OperationDefinition::SelectionSet(s) => s,
        OperationDefinition::Query(q) => &q.selection_set,
        OperationDefinition::Mutation(m) => &m.selection_set,
        OperationDefinition::Subscription(s) => &s.selection_set,
    };
    let mut shape = Shape::default();
    add(&mut shape, top, &fragments, 0);
    Some((shape, root_args(top)))
}

fn root_args(top: &SelectionSet<'_, String>) -> Vec<RootArg> {
    use graphql_parser::query::Value as Gql;
    top.items
        .iter()
        .filter_map(|item| match item {
            Selection::Field(f) if !f.arguments.is_empty() => Some(RootArg {
                key: f.alias.clone().unwrap_or_else(|| f.name.clone()),
                args: f
                    .arguments
                    .iter()
                    .filter_map(|(name, v)| {
                        let v = match v {
                            Gql::String(s) | Gql::Enum(s) => ArgValue::Literal(s.clone()),
                            Gql::Int(n) => ArgValue::Literal(n.as_i64()?.to_string()),
                            Gql::Variable(v) => ArgValue::Variable(v.clone()),
                            _ => return None,
                        };
                        Some((name.clone(), v))
                    })
                    .collect(),
            }),
            _ => None,
        })
        .collect()
}

/// Entities named by root field arguments whose objects came back without their key fields.
/// `variables` reads the request's variables; it is called only when one is needed, at most
/// once.
fn root_entities(
    roots: &[RootObject],
    typed: &Typed,
    variables: &dyn Fn() -> Option<Variables>,
    key_fields: &HashMap<String, Vec<String>>,
) -> Vec<Tag> {
    let mut loaded: Option<Option<Variables>> = None;
    let mut out = Vec::new();
    for root in &typed.root_args {
        let Some(obj) = roots.iter().find(|r| r.key == root.key) else {
            continue;
        };
        let Some(t) = &obj.typename else {
            continue;
        };
        let key = match key_fields.get(t).map(Vec::as_slice) {
            Some([one]) => one.as_str(),
            Some(_) => continue,
            None => "id",
        };
        if obj.fields.iter().any(|f| f == key) {
            continue; // tagged from the object itself
        }
        let value = root
            .args
            .iter()
            .find(|(n, _)| n == key)
            .and_then(|(_, v)| match v {
                ArgValue::Literal(s) => Some(s.clone()),
                ArgValue::Variable(name) => {
                    scalar(loaded.get_or_insert_with(variables).as_ref()?.get(name)?)
                }
            });
        if let Some(id) = value {
            out.push(entity(t, &id));
        }
    }
    out
}

fn add(
    shape: &mut Shape,
    set: &SelectionSet<'_, String>,
    fragments: &HashMap<&str, &SelectionSet<'_, String>>,
    depth: usize,
) {
    for item in &set.items {
        match item {
            Selection::Field(f) => {
                let key = f.alias.as_ref().unwrap_or(&f.name);
                if key == "__typename" {
                    shape.typename = true;
                } else if !f.selection_set.items.is_empty() {
                    let child = shape.children.entry(key.clone()).or_default();
                    add(child, &f.selection_set, fragments, depth);
                }
            }
            Selection::FragmentSpread(s) if depth < MAX_SPREAD_DEPTH => {
                if let Some(set) = fragments.get(s.fragment_name.as_str()) {
                    add(shape, set, fragments, depth + 1);
                }
            }
            Selection::FragmentSpread(_) => {}
            Selection::InlineFragment(i) => add(shape, &i.selection_set, fragments, depth),
        }
    }
}

/// A response read by [`process`].
pub struct Processed {
    /// The body the client gets, when it is not the upstream's (`__typename`s removed).
    pub body: Option<bytes::Bytes>,
    /// The types and entities in its `data`.
    pub tags: HashSet<Tag>,
    /// What the cache's rules read from it (so the cache does not parse it again).
    pub read: super::fill::Read,
}

/// Tag a complete response and strip the `__typename`s the client did not ask for (when the
/// client asked for every one, the body stays as it came). `None` when it is not a JSON object
/// with `data`. One pass, no tree: see `walk`.
pub fn process(
    raw: &[u8],
    typed: &Typed,
    variables: &dyn Fn() -> Option<Variables>,
    key_fields: &HashMap<String, Vec<String>>,
) -> Option<Processed> {
    let strips = typed.strips();
    let mut walk = Walk::run(raw, strips.then_some(&typed.shape), key_fields)?;
    let read = super::fill::Read {
        // Every type, the ones only the edge asked for too: type rules apply either way.
        typenames: walk.types().map(str::to_string).collect(),
        errors: walk.errors,
    };
    let mut tags = walk.tags();
    tags.extend(root_entities(&walk.roots, typed, variables, key_fields));
    Some(Processed {
        body: strips.then(|| bytes::Bytes::from(walk.out)),
        tags,
        read,
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `process` on `response`: what the client gets, and the tags.
    fn run(
        t: &Typed,
        response: Value,
        vars: Option<Value>,
        keys: &HashMap<String, Vec<String>>,
    ) -> (Value, HashSet<Tag>) {
        let raw = response.to_string();
        let vars = || vars.as_ref().and_then(Value::as_object).cloned();
        let Processed { body, tags, .. } = process(raw.as_bytes(), t, &vars, keys).unwrap();
        let body = body.map_or(response, |b| serde_json::from_slice(&b).unwrap());
        (body, tags)
    }

    #[test]
    fn typename_is_added_to_nested_sets_and_stripped_where_not_asked() {
        let q = "query Q { getPost(id: 1) { title author { name __typename } ...F } } \
                 fragment F on Post { comments { text } }";
        let t = prepare(q, None).unwrap();
        let sent = t.query.as_deref().unwrap();
        // getPost, comments (in the fragment) and the fragment's own set get it; the root not.
        assert_eq!(sent.matches("__typename").count(), 4, "{sent}");
        assert!(parse_query::<String>(sent).is_ok());
        let response = json!({"data": {"getPost": {
            "__typename": "Post", "title": "t",
            "author": {"__typename": "User", "name": "a"},
            "comments": [{"__typename": "Comment", "text": "c"}, {"__typename": "Comment", "text": "d"}]
        }}});
        let (body, tags) = run(&t, response, None, &HashMap::new());
        assert!(tags.contains(&type_name("Comment")) && tags.contains(&type_name("User")));
        assert_eq!(
            body,
            json!({"data": {"getPost": {"title": "t", "author": {"__typename": "User", "name": "a"},
                   "comments": [{"text": "c"}, {"text": "d"}]}}})
        );
    }

    #[test]
    fn documents_that_already_ask_everywhere_are_left_alone() {
        let t = prepare("{ a { __typename b { __typename id } } }", None).unwrap();
        assert!(t.query.is_none());
        let raw = br#"{"data":{"a":{"__typename":"A","b":{"__typename":"B","id":1}}}}"#;
        let Processed { body, tags, read } = process(raw, &t, &|| None, &HashMap::new()).unwrap();
        assert!(body.is_none(), "passed on as it came");
        assert_eq!(read.typenames, ["A", "B"].map(String::from).into());
        assert!(!read.errors);
        assert_eq!(
            tags,
            HashSet::from([type_name("A"), type_name("B"), entity("B", "1")])
        );
    }

    #[test]
    fn the_response_is_written_again_exactly_but_for_the_typenames() {
        let t = prepare("{ a { b c { d } } }", None).unwrap();
        let raw = concat!(
            r#"{ "data" : {"a": [{"__typename":"A", "b": "x\"y\u00e9\n", "z\u0041": -12,"#,
            r#" "c": {"d": [1.5, 18446744073709551615, true, null, {}, []], "__typename": "C"}},"#,
            r#" null, {"b": 2e3}]},"#,
            r#" "errors": [{"message": "m", "extensions": {"__typename": "E"}}], "extensions": {} }"#
        );
        let Processed { body, tags, read } =
            process(raw.as_bytes(), &t, &|| None, &HashMap::new()).unwrap();
        assert_eq!(
            std::str::from_utf8(&body.unwrap()).unwrap(),
            concat!(
                r#"{"data":{"a":[{"b":"x\"yé\n","zA":-12,"#,
                r#""c":{"d":[1.5,18446744073709551615,true,null,{},[]]}},null,{"b":2000.0}]},"#,
                r#""errors":[{"message":"m","extensions":{"__typename":"E"}}],"extensions":{}}"#
            )
        );
        // Outside `data` nothing is tagged; the types include the stripped ones.
        assert_eq!(tags, HashSet::from([type_name("A"), type_name("C")]));
        assert_eq!(read.typenames, ["A", "C"].map(String::from).into());
        assert!(read.errors);
    }

    #[test]
    fn what_is_not_a_response_is_left_alone() {
        let t = prepare("{ a { b } }", None).unwrap();
        for raw in [
            &b"not json"[..],
            b"[1]",
            br#"{"errors":[]}"#,
            br#"{"data":{"a":{"b":1}}} trailing"#,
            br#"{"data":{"a":{"b":1}"#,
        ] {
            assert!(process(raw, &t, &|| None, &HashMap::new()).is_none());
        }
        // The root's own type counts as a type (a `type = "Query"` rule), not an entity.
        let t = prepare("{ __typename a { b } }", None).unwrap();
        let raw = br#"{"data":{"__typename":"Query","a":null}}"#;
        let Processed { tags, read, .. } = process(raw, &t, &|| None, &HashMap::new()).unwrap();
        assert_eq!(tags, HashSet::from([type_name("Query")]));
        assert_eq!(read.typenames, ["Query"].map(String::from).into());
        let Processed { body, tags, read } =
            process(br#"{"data":null}"#, &t, &|| None, &HashMap::new()).unwrap();
        assert!(!read.errors);
        assert_eq!(body.as_deref(), Some(&br#"{"data":null}"#[..]));
        assert!(tags.is_empty());
    }

    #[test]
    fn aliases_and_inline_fragments_follow_response_keys() {
        let t = prepare(
            "{ first: getPost(id: 1) { id } second: getPost(id: 2) { ... on Post { __typename id } } }",
            None,
        )
        .unwrap();
        let response = json!({"data": {
            "first": {"__typename": "Post", "id": "1"},
            "second": {"__typename": "Post", "id": "2"}
        }});
        let (body, tags) = run(&t, response, None, &HashMap::new());
        assert!(tags.contains(&entity("Post", "1")) && tags.contains(&entity("Post", "2")));
        assert_eq!(
            body,
            json!({"data": {"first": {"id": "1"}, "second": {"__typename": "Post", "id": "2"}}})
        );
    }

    #[test]
    fn root_arguments_name_entities_returned_without_their_keys() {
        let t = prepare(
            "query Q($id: ID!) { a: getPost(id: $id) { title } getUser(id: 3) { id } b: getPost(id: \"5\") { title } }",
            Some("Q"),
        )
        .unwrap();
        let response = json!({"data": {
            "a": {"__typename": "Post", "title": "x"},
            "getUser": {"__typename": "User", "id": "3"},
            "b": {"__typename": "Post", "title": "y"}
        }});
        let (_, tags) = run(&t, response, Some(json!({"id": "1"})), &HashMap::new());
        assert_eq!(
            tags,
            HashSet::from([
                type_name("Post"),
                type_name("User"),
                entity("Post", "1"),
                entity("Post", "5"),
                entity("User", "3"),
            ])
        );
    }

    #[test]
    fn key_fields_can_be_configured_per_type() {
        let t = prepare("{ me { email id } n { id } m { a b } }", None).unwrap();
        let response = json!({"data": {"me": {"__typename": "User", "email": "a@b", "id": null},
                          "n": {"__typename": "Node", "id": 7},
                          "m": {"b": false, "__typename": "Pair", "a": 1}}});
        let keys = HashMap::from([
            ("User".to_string(), vec!["email".to_string()]),
            ("Pair".to_string(), vec!["a".to_string(), "b".to_string()]),
        ]);
        let (_, tags) = run(&t, response, None, &keys);
        assert!(tags.contains(&entity("User", "a@b")));
        assert!(tags.contains(&entity("Node", "7")));
        assert!(tags.contains(&entity("Pair", "1,false")), "{tags:?}");
    }

    #[test]
    fn the_named_operation_is_shaped() {
        let q = "query A { x { y } } query B { x { __typename y } }";
        assert!(!prepare(q, Some("A")).unwrap().shape.children["x"].typename);
        assert!(prepare(q, Some("B")).unwrap().shape.children["x"].typename);
        assert!(prepare(q, None).is_none());
        assert!(prepare("{ broken", None).is_none());
    }
}
