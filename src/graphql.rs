//! GraphQL over HTTP as the edge understands it: the request (POST JSON or GET parameters),
//! the document parsed with graphql-parser, and the selected operation classified.

pub mod apq;
mod exact;
mod limits;
pub mod request;
pub mod scan;

use std::collections::{HashMap, HashSet};

pub use limits::{count_tokens, Complexity, Limits};
pub use request::GraphqlRequest;

use graphql_parser::query::{
    Definition, Document, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};

/// The type of a GraphQL operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

impl OperationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Mutation => "mutation",
            Self::Subscription => "subscription",
        }
    }
}

/// Why a request is not a GraphQL request the edge can forward; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphqlError {
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("batched requests (a JSON array) are not supported")]
    Batch,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("Syntax Error: {0}")]
    Syntax(String),
    #[error("{0}")]
    Validation(String),
    #[error("Unknown operation named \"{0}\".")]
    OperationNotFound(String),
}

impl From<GraphqlError> for crate::rejection::EdgeError {
    fn from(e: GraphqlError) -> Self {
        crate::rejection::Rejection::Graphql(e.code()).because(e.to_string())
    }
}

impl GraphqlError {
    /// The stable, machine-readable code sent to clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "INVALID_JSON",
            Self::Batch => "BATCH_NOT_SUPPORTED",
            Self::InvalidRequest(_) => "INVALID_REQUEST",
            Self::Syntax(_) => "GRAPHQL_PARSE_FAILED",
            Self::Validation(_) => "GRAPHQL_VALIDATION_FAILED",
            Self::OperationNotFound(_) => "OPERATION_NOT_FOUND",
        }
    }
}

/// The selected operation of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub kind: OperationKind,
    pub name: Option<String>,
    /// Field names (not aliases) selected at the root, fragments expanded, in document order.
    pub root_fields: Vec<String>,
}

/// Whether every root field is introspection (`__schema`, `__type`, `__typename`).
pub fn is_introspection_only(op: &Operation) -> bool {
    !op.root_fields.is_empty() && op.root_fields.iter().all(|f| f.starts_with("__"))
}

/// Parse `query` and select the operation: the only one, or the one named `operation_name`.
pub fn analyze(query: &str, operation_name: Option<&str>) -> Result<Operation, GraphqlError> {
    let doc = parse(query)?;
    Ok(classify(&doc, operation_name)?.0)
}

/// [`analyze`], plus the selected operation and the fragments it uses (transitively) printed
/// in canonical form: whitespace, comments, other operations and unused fragments removed,
/// fragments in name order, then their string values exactly. Two requests for the same
/// operation normalize to the same text.
pub fn analyze_normalized(
    query: &str,
    operation_name: Option<&str>,
) -> Result<Analysis, GraphqlError> {
    let doc = parse(query)?;
    let (op, def) = classify(&doc, operation_name)?;
    let fragments = fragments_of(&doc);
    let by_name: HashMap<&str, &FragmentDefinition<'_, &str>> =
        fragments.iter().map(|f| (f.name, *f)).collect();
    let top = match def {
        OperationDefinition::SelectionSet(s) => s,
        OperationDefinition::Query(q) => &q.selection_set,
        OperationDefinition::Mutation(m) => &m.selection_set,
        OperationDefinition::Subscription(s) => &s.selection_set,
    };
    let complexity = limits::measure(query, top, &fragments, op.root_fields.len());
    let mut text = def.to_string();
    // The printer does not render every string exactly (see `exact`): the string values, in
    // the order of the printed definitions, follow the text.
    let mut strings = String::new();
    exact::operation_strings(def, &mut strings);
    for name in used_fragments(top, &by_name) {
        if let Some(f) = by_name.get(name) {
            text.push_str(&f.to_string());
            exact::fragment_strings(f, &mut strings);
        }
    }
    text.push('\n');
    text.push_str(&strings);
    Ok(Analysis {
        op,
        normalized: text,
        complexity,
    })
}

/// What [`analyze_normalized`] finds.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub op: Operation,
    /// The selected operation and the fragments it uses, printed canonically.
    pub normalized: String,
    pub complexity: Complexity,
}

/// Every field name selected anywhere in the document (operations and fragments), for checks
/// that cannot know a field's parent type without the schema.
pub fn field_names(query: &str) -> Result<HashSet<String>, GraphqlError> {
    let doc = parse(query)?;
    let mut names = HashSet::new();
    let mut stack: Vec<&SelectionSet<'_, &str>> = doc
        .definitions
        .iter()
        .map(|d| match d {
            Definition::Fragment(f) => &f.selection_set,
            Definition::Operation(OperationDefinition::SelectionSet(s)) => s,
            Definition::Operation(OperationDefinition::Query(q)) => &q.selection_set,
            Definition::Operation(OperationDefinition::Mutation(m)) => &m.selection_set,
            Definition::Operation(OperationDefinition::Subscription(s)) => &s.selection_set,
        })
        .collect();
    while let Some(set) = stack.pop() {
        for item in &set.items {
            match item {
                Selection::Field(f) => {
                    names.insert(f.name.to_string());
                    stack.push(&f.selection_set);
                }
                Selection::InlineFragment(i) => stack.push(&i.selection_set),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    Ok(names)
}

fn parse(query: &str) -> Result<Document<'_, &str>, GraphqlError> {
    // graphql-parser recurses, and stops at its recursion limit (50) with a syntax error: deep
    // documents cannot exhaust the stack.
    graphql_parser::parse_query(query).map_err(|e| GraphqlError::Syntax(syntax_message(e)))
}

fn fragments_of<'d, 'a>(
    doc: &'d Document<'a, &'a str>,
) -> Vec<&'d FragmentDefinition<'a, &'a str>> {
    doc.definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some(f),
            Definition::Operation(_) => None,
        })
        .collect()
}

fn classify<'d, 'a>(
    doc: &'d Document<'a, &'a str>,
    operation_name: Option<&str>,
) -> Result<(Operation, &'d OperationDefinition<'a, &'a str>), GraphqlError> {
    let def = select(doc, operation_name)?;
    let (kind, name, selection) = match def {
        OperationDefinition::SelectionSet(s) => (OperationKind::Query, None, s),
        OperationDefinition::Query(q) => (OperationKind::Query, q.name, &q.selection_set),
        OperationDefinition::Mutation(m) => (OperationKind::Mutation, m.name, &m.selection_set),
        OperationDefinition::Subscription(s) => {
            (OperationKind::Subscription, s.name, &s.selection_set)
        }
    };
    let fragments = fragments_of(doc);
    let mut root_fields = Vec::new();
    let mut seen_fields = HashSet::new();
    let mut seen_fragments = HashSet::new();
    collect_root_fields(
        selection,
        &fragments,
        &mut seen_fragments,
        &mut seen_fields,
        &mut root_fields,
        0,
    );
    let op = Operation {
        kind,
        name: name.map(str::to_string),
        root_fields,
    };
    Ok((op, def))
}

/// Names of the fragments a selection set spreads, at any depth, following fragments (a work
/// list, not recursion: fragment chains can be long).
fn used_fragments<'d, 'a>(
    top: &'d SelectionSet<'a, &'a str>,
    fragments: &HashMap<&'a str, &'d FragmentDefinition<'a, &'a str>>,
) -> std::collections::BTreeSet<&'a str> {
    let mut used = std::collections::BTreeSet::new();
    let mut todo = vec![top];
    while let Some(set) = todo.pop() {
        for item in &set.items {
            match item {
                Selection::Field(f) => todo.push(&f.selection_set),
                Selection::InlineFragment(i) => todo.push(&i.selection_set),
                Selection::FragmentSpread(s) => {
                    if used.insert(s.fragment_name) {
                        if let Some(f) = fragments.get(s.fragment_name) {
                            todo.push(&f.selection_set);
                        }
                    }
                }
            }
        }
    }
    used
}

fn syntax_message(e: graphql_parser::query::ParseError) -> String {
    // graphql-parser's message reads "query parse error: Parse error at 1:9\n..."; keep it on one line.
    let text = e.to_string();
    let text = text.strip_prefix("query parse error: ").unwrap_or(&text);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn select<'d, 'a>(
    doc: &'d Document<'a, &'a str>,
    name: Option<&str>,
) -> Result<&'d OperationDefinition<'a, &'a str>, GraphqlError> {
    let mut ops = doc.definitions.iter().filter_map(|d| match d {
        Definition::Operation(o) => Some(o),
        Definition::Fragment(_) => None,
    });
    match name {
        Some(wanted) => ops
            .find(|o| operation_name(o) == Some(wanted))
            .ok_or_else(|| GraphqlError::OperationNotFound(wanted.to_string())),
        None => {
            let first = ops.next().ok_or_else(|| {
                GraphqlError::Validation("the document contains no operation".into())
            })?;
            if ops.next().is_some() {
                return Err(GraphqlError::Validation(
                    "the document contains several operations: operationName is required".into(),
                ));
            }
            Ok(first)
        }
    }
}

fn operation_name<'a>(op: &OperationDefinition<'a, &'a str>) -> Option<&'a str> {
    match op {
        OperationDefinition::SelectionSet(_) => None,
        OperationDefinition::Query(q) => q.name,
        OperationDefinition::Mutation(m) => m.name,
        OperationDefinition::Subscription(s) => s.name,
    }
}

fn collect_root_fields<'a>(
    set: &SelectionSet<'a, &'a str>,
    fragments: &[&FragmentDefinition<'a, &'a str>],
    seen_fragments: &mut HashSet<&'a str>,
    seen_fields: &mut HashSet<&'a str>,
    out: &mut Vec<String>,
    nesting: usize,
) {
    // Deeper chains of root-level fragments are refused by the limits (FRAGMENT_CYCLE).
    if nesting > 64 {
        return;
    }
    for item in &set.items {
        match item {
            Selection::Field(f) => {
                if seen_fields.insert(f.name) {
                    out.push(f.name.to_string());
                }
            }
            Selection::InlineFragment(i) => collect_root_fields(
                &i.selection_set,
                fragments,
                seen_fragments,
                seen_fields,
                out,
                nesting + 1,
            ),
            Selection::FragmentSpread(s) => {
                // Each fragment is expanded once: cycles and repeats cannot recurse forever.
                if !seen_fragments.insert(s.fragment_name) {
                    continue;
                }
                if let Some(f) = fragments.iter().find(|f| f.name == s.fragment_name) {
                    collect_root_fields(
                        &f.selection_set,
                        fragments,
                        seen_fragments,
                        seen_fields,
                        out,
                        nesting + 1,
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
