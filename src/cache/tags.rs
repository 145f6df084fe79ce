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
    parse_query, Definition, Document, OperationDefinition, Selection, SelectionSet,
};
use serde_json::Value;

use crate::graphql::scan;

mod walk;
use walk::{RootObject, Walk};

/// The response key of the field the edge adds where a selection set has no plain
/// `__typename`: the edge's own key never merges with, or changes, anything the client asked
/// for (a `__typename` of the client's under a type condition or a directive stays the
/// upstream's to resolve), and every value under it is the edge's to remove.
pub const TYPENAME_ALIAS: &str = "graphfront__typename";

/// What the edge writes after the `{` of such a selection set.
const INJECTED: &str = " graphfront__typename: __typename";

/// A document prepared for tagging: the text the upstream gets (the edge's `__typename` in
/// every field's selection set that has no plain one), and the root fields' arguments.
#[derive(Debug)]
pub struct Typed {
    /// The client's document with the edge's field added; `None` when the client already
    /// asks for `__typename` plainly in every field's selection set (Apollo Client does).
    pub query: Option<String>,
    /// Root fields' scalar arguments (`getPost(id: $id)`): an object a root field returns
    /// without its key fields is still the entity its arguments name.
    pub root_args: Vec<RootArg>,
}

impl Typed {
    /// Whether responses change shape: the upstream got fields the client did not ask for.
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

/// The client's document with the edge's `__typename` after the `{` of every field's selection
/// set (in operations and fragments) that does not select `__typename` plainly; nothing else in
/// the text changes. Each selection set is visited once (fragment spreads are not followed),
/// so the work is linear in the document. `None` when the response could not be read for
/// types: the document does not parse, has no operation named `operation_name`, uses the
/// edge's key, or answers another field as `__typename`.
pub fn prepare(query: &str, operation_name: Option<&str>) -> Option<Typed> {
    if query.contains(TYPENAME_ALIAS) {
        return None;
    }
    let doc: Document<'_, &str> = parse_query(query).ok()?;
    let top = selected(&doc, operation_name)?;
    let root_args = root_args(top);
    // Whether the edge adds its field, for each selection set in the order of the text.
    let mut plan = Vec::new();
    for def in &doc.definitions {
        let set = match def {
            Definition::Operation(op) => selection_set(op),
            Definition::Fragment(f) => &f.selection_set,
        };
        // The root object and a fragment's own set are not a field's: no entity there.
        plan_sets(set, false, &mut plan)?;
    }
    let opens = scan::selection_sets(query);
    if opens.len() != plan.len() {
        return None;
    }
    let added = plan.iter().filter(|add| **add).count();
    let query = (added > 0).then(|| {
        let mut out = String::with_capacity(query.len() + added * INJECTED.len());
        let mut copied = 0;
        for (&at, _) in opens.iter().zip(&plan).filter(|(_, add)| **add) {
            out.push_str(&query[copied..=at]);
            out.push_str(INJECTED);
            copied = at + 1;
        }
        out.push_str(&query[copied..]);
        out
    });
    Some(Typed { query, root_args })
}

/// Note whether `set` (a field's when `field`) gets the edge's field, then its nested sets in
/// the order they are written. `None` when a field other than `__typename` answers as
/// `__typename`.
fn plan_sets<'a>(set: &SelectionSet<'a, &'a str>, field: bool, plan: &mut Vec<bool>) -> Option<()> {
    let plain = set.items.iter().any(|i| {
        matches!(i, Selection::Field(f)
            if f.name == "__typename" && f.alias.is_none_or(|a| a == "__typename")
                && f.directives.is_empty())
    });
    plan.push(field && !plain);
    for item in &set.items {
        match item {
            Selection::Field(f) => {
                if f.alias == Some("__typename") && f.name != "__typename" {
                    return None;
                }
                if !f.selection_set.items.is_empty() {
                    plan_sets(&f.selection_set, true, plan)?;
                }
            }
            Selection::InlineFragment(i) => plan_sets(&i.selection_set, false, plan)?,
            Selection::FragmentSpread(_) => {}
        }
    }
    Some(())
}

fn selection_set<'d, 'a>(
    op: &'d OperationDefinition<'a, &'a str>,
) -> &'d SelectionSet<'a, &'a str> {
    match op {
        OperationDefinition::SelectionSet(s) => s,
        OperationDefinition::Query(q) => &q.selection_set,
        OperationDefinition::Mutation(m) => &m.selection_set,
        OperationDefinition::Subscription(s) => &s.selection_set,
    }
}

/// The selection set of the operation named `operation_name`, or of the only one.
fn selected<'d, 'a>(
    doc: &'d Document<'a, &'a str>,
    operation_name: Option<&str>,
) -> Option<&'d SelectionSet<'a, &'a str>> {
    let mut operations = doc.definitions.iter().filter_map(|d| match d {
        Definition::Operation(op) => Some(op),
        Definition::Fragment(_) => None,
    });
    let name_of = |op: &OperationDefinition<'a, &'a str>| match op {
        OperationDefinition::SelectionSet(_) => None,
        OperationDefinition::Query(q) => q.name,
        OperationDefinition::Mutation(m) => m.name,
        OperationDefinition::Subscription(s) => s.name,
    };
    let op = match operation_name {
        Some(n) => operations.find(|o| name_of(o) == Some(n))?,
        None => {
            let only = operations.next()?;
            if operations.next().is_some() {
                return None;
            }
            only
        }
    };
    Some(selection_set(op))
}

fn root_args<'a>(top: &SelectionSet<'a, &'a str>) -> Vec<RootArg> {
    use graphql_parser::query::Value as Gql;
    top.items
        .iter()
        .filter_map(|item| match item {
            Selection::Field(f) if !f.arguments.is_empty() => Some(RootArg {
                key: f.alias.unwrap_or(f.name).to_string(),
                args: f
                    .arguments
                    .iter()
                    .filter_map(|(name, v)| {
                        let v = match v {
                            Gql::String(s) => ArgValue::Literal(s.clone()),
                            Gql::Enum(s) => ArgValue::Literal(s.to_string()),
                            Gql::Int(n) => ArgValue::Literal(n.as_i64()?.to_string()),
                            Gql::Variable(v) => ArgValue::Variable(v.to_string()),
                            _ => return None,
                        };
                        Some((name.to_string(), v))
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

/// A response read by [`process`].
pub struct Processed {
    /// The body the client gets, when it is not the upstream's (`__typename`s removed).
    pub body: Option<bytes::Bytes>,
    /// The types and entities in its `data`.
    pub tags: HashSet<Tag>,
    /// What the cache's rules read from it (so the cache does not parse it again).
    pub read: super::Read,
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
    let mut walk = Walk::run(raw, strips, key_fields)?;
    let read = super::Read {
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

    /// What the upstream gets in a selection set the edge added its field to.
    const ADDED: &str = INJECTED;

    #[test]
    fn the_edge_adds_its_field_where_no_plain_typename_is_and_strips_it() {
        let q = "query Q { getPost(id: 1) { title author { name __typename } ...F } } \
                 fragment F on Post { comments { text } }";
        let t = prepare(q, None).unwrap();
        let sent = t.query.as_deref().unwrap();
        // getPost's and comments' sets (the latter in the fragment); not the root, not the
        // fragment's own set, not author's (it selects __typename plainly).
        assert_eq!(
            sent,
            format!(
                "query Q {{ getPost(id: 1) {{{ADDED} title author {{ name __typename }} ...F }} }} \
                 fragment F on Post {{ comments {{{ADDED} text }} }}"
            )
        );
        assert!(parse_query::<String>(sent).is_ok());
        let response = json!({"data": {"getPost": {
            "graphfront__typename": "Post", "title": "t",
            "author": {"__typename": "User", "name": "a"},
            "comments": [{"graphfront__typename": "Comment", "text": "c"},
                         {"graphfront__typename": "Comment", "text": "d"}]
        }}});
        let (body, tags) = run(&t, response, None, &HashMap::new());
        assert!(tags.contains(&type_name("Comment")) && tags.contains(&type_name("User")));
        assert!(tags.contains(&type_name("Post")));
        assert_eq!(
            body,
            json!({"data": {"getPost": {"title": "t", "author": {"__typename": "User", "name": "a"},
                   "comments": [{"text": "c"}, {"text": "d"}]}}})
        );
    }

    #[test]
    fn nothing_else_in_the_document_changes() {
        // Strings the printer would render otherwise (line breaks, characters past U+FFFF),
        // input objects (their braces are not selection sets), comments, block strings.
        let q = "query S($v: In = {a: {b: 1}}) {\n  search(q: \"😀\\n\\n\", o: {x: \"{\"}) \
                 @d(p: {q: 1}) { id # {\n }\n  other(t: \"\"\"\n  a\n    b\n\"\"\") { z }\n}";
        let t = prepare(q, None).unwrap();
        let sent = t.query.as_deref().unwrap();
        assert_eq!(sent.replace(ADDED, ""), q);
        assert_eq!(sent.matches(ADDED).count(), 2, "{sent}");
        assert!(
            sent.contains(&format!("@d(p: {{q: 1}}) {{{ADDED} id")),
            "{sent}"
        );
        assert!(parse_query::<String>(sent).is_ok());
    }

    #[test]
    fn typenames_under_conditions_stay_the_upstreams_to_resolve() {
        // A __typename under a type condition or a directive is not a plain one: the edge
        // adds its own, and the client's is returned exactly where the upstream resolved it.
        let q = "query Q($t: Boolean!) { node(id: \"1\") { ... on Post { __typename title } } \
                 search { ... on Post { __typename } ... on User { name } } \
                 post { title __typename @include(if: $t) } }";
        let t = prepare(q, None).unwrap();
        assert_eq!(t.query.as_deref().unwrap().matches(ADDED).count(), 3);
        let response = json!({"data": {
            "node": {"graphfront__typename": "User"},
            "search": [{"graphfront__typename": "Post", "__typename": "Post"},
                       {"graphfront__typename": "User", "name": "u"}],
            "post": {"graphfront__typename": "Post", "title": "x"}
        }});
        let (body, tags) = run(&t, response, None, &HashMap::new());
        assert_eq!(
            body,
            json!({"data": {"node": {}, "search": [{"__typename": "Post"}, {"name": "u"}],
                   "post": {"title": "x"}}})
        );
        assert!(tags.contains(&type_name("User")) && tags.contains(&type_name("Post")));
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
    fn documents_whose_responses_cannot_be_read_for_types_are_not_prepared() {
        // Another field answering as __typename; the edge's own key taken by the client.
        assert!(prepare("{ a { __typename: title } }", None).is_none());
        assert!(prepare("{ a { graphfront__typename: b } }", None).is_none());
    }

    #[test]
    fn fragments_are_visited_once_however_often_they_are_spread() {
        // Each fragment spreads the next twice: 2^31 paths, 32 definitions.
        let mut q = String::from("{ post(id: 1) { ...F0 } }");
        for i in 0..31 {
            q += &format!(" fragment F{i} on Post {{ ...F{n} ...F{n} }}", n = i + 1);
        }
        q += " fragment F31 on Post { id author { name } }";
        let t = prepare(&q, None).unwrap();
        assert_eq!(t.query.as_deref().unwrap().matches(ADDED).count(), 2);
    }

    #[test]
    fn the_response_is_written_again_exactly_but_for_the_edges_field() {
        let t = prepare("{ a { b c { d } } }", None).unwrap();
        let raw = concat!(
            r#"{ "data" : {"a": [{"graphfront__typename":"A", "b": "x\"y\u00e9\n", "z\u0041": -12,"#,
            r#" "c": {"d": [1.5, 18446744073709551615, true, null, {}, []], "graphfront__typename": "C"}},"#,
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
            "first": {"graphfront__typename": "Post", "id": "1"},
            "second": {"graphfront__typename": "Post", "__typename": "Post", "id": "2"}
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
            "a": {"graphfront__typename": "Post", "title": "x"},
            "getUser": {"graphfront__typename": "User", "id": "3"},
            "b": {"graphfront__typename": "Post", "title": "y"}
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
        let response = json!({"data": {"me": {"graphfront__typename": "User", "email": "a@b", "id": null},
                          "n": {"graphfront__typename": "Node", "id": 7},
                          "m": {"b": false, "graphfront__typename": "Pair", "a": 1}}});
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
    fn the_named_operation_gives_the_root_arguments() {
        let q = "query A { x(id: 1) { y } } query B { z(id: 2) { __typename y } }";
        assert_eq!(prepare(q, Some("A")).unwrap().root_args[0].key, "x");
        assert_eq!(prepare(q, Some("B")).unwrap().root_args[0].key, "z");
        // The whole document goes upstream: A's set gets the edge's field, B's has its own.
        let sent = prepare(q, Some("B")).unwrap().query.unwrap();
        assert_eq!(sent.matches(ADDED).count(), 1, "{sent}");
        assert!(prepare(q, None).is_none());
        assert!(prepare(q, Some("C")).is_none());
        assert!(prepare("{ broken", None).is_none());
    }
}
