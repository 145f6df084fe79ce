//! The string values of the definitions a cache key prints, in a fixed order. graphql-parser's
//! printer renders some strings lossily (a line break makes a block string, which drops
//! trailing line breaks and indentation; characters past U+FFFF become ambiguous decimal
//! escapes): with the values beside the printed text, two documents share a key only when
//! they are the same document.

use graphql_parser::query::{
    Directive, FragmentDefinition, OperationDefinition, Selection, SelectionSet, Value,
};

/// Append every string value of `op`, each after its length, in the order of its tree.
pub fn operation_strings<'a>(op: &OperationDefinition<'a, &'a str>, out: &mut String) {
    let (variables, directives, set) = match op {
        OperationDefinition::SelectionSet(s) => (&[][..], &[][..], s),
        OperationDefinition::Query(q) => (
            &q.variable_definitions[..],
            &q.directives[..],
            &q.selection_set,
        ),
        OperationDefinition::Mutation(m) => (
            &m.variable_definitions[..],
            &m.directives[..],
            &m.selection_set,
        ),
        OperationDefinition::Subscription(s) => (
            &s.variable_definitions[..],
            &s.directives[..],
            &s.selection_set,
        ),
    };
    for v in variables {
        if let Some(default) = &v.default_value {
            value(default, out);
        }
    }
    directive_strings(directives, out);
    set_strings(set, out);
}

/// Append every string value of `f`, each after its length, in the order of its tree.
pub fn fragment_strings<'a>(f: &FragmentDefinition<'a, &'a str>, out: &mut String) {
    directive_strings(&f.directives, out);
    set_strings(&f.selection_set, out);
}

fn set_strings<'a>(set: &SelectionSet<'a, &'a str>, out: &mut String) {
    for item in &set.items {
        match item {
            Selection::Field(f) => {
                for (_, v) in &f.arguments {
                    value(v, out);
                }
                directive_strings(&f.directives, out);
                set_strings(&f.selection_set, out);
            }
            Selection::FragmentSpread(s) => directive_strings(&s.directives, out),
            Selection::InlineFragment(i) => {
                directive_strings(&i.directives, out);
                set_strings(&i.selection_set, out);
            }
        }
    }
}

fn directive_strings<'a>(directives: &[Directive<'a, &'a str>], out: &mut String) {
    for d in directives {
        for (_, v) in &d.arguments {
            value(v, out);
        }
    }
}

fn value<'a>(v: &Value<'a, &'a str>, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(&s.len().to_string());
            out.push(':');
            out.push_str(s);
        }
        Value::List(items) => items.iter().for_each(|i| value(i, out)),
        // In key order, as the printer writes an object.
        Value::Object(fields) => fields.values().for_each(|v| value(v, out)),
        _ => {}
    }
}
