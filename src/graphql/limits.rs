//! Operation limits: the complexity of the selected operation (depth, aliases, root fields,
//! fields after fragment expansion, directives, tokens, introspection), measured in time
//! linear in the document's size; fragments are measured once each, so fragment bombs cost
//! no more than their text.

use std::collections::HashMap;

use graphql_parser::query::{FragmentDefinition, Selection, SelectionSet};

/// Fragments spread inside fragments deeper than this are refused (as a cycle would be).
const MAX_FRAGMENT_NESTING: usize = 64;

/// What the limits are checked against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Complexity {
    /// Deepest selection, counting fields (`{ a { b } }` is 2).
    pub depth: u32,
    pub aliases: u64,
    pub root_fields: u32,
    /// Fields after every fragment is expanded where it is spread.
    pub fields: u64,
    /// Most directives on one field, fragment spread or inline fragment.
    pub max_directives: u32,
    pub tokens: u32,
    /// Whether `__schema` or `__type` is selected anywhere.
    pub introspection: bool,
    /// A fragment spreads itself, directly or not (or fragments nest too deep).
    pub fragment_cycle: bool,
}

/// Limits of a site; `None` is no limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_depth: Option<u32>,
    pub max_aliases: Option<u64>,
    pub max_root_fields: Option<u32>,
    pub max_fields: Option<u64>,
    pub max_directives: Option<u32>,
    pub max_tokens: Option<u32>,
    pub introspection: bool,
}

impl Limits {
    /// `check`, as the edge's answer to the client.
    pub fn admit(&self, c: &Complexity) -> Result<(), crate::rejection::EdgeError> {
        self.check(c)
            .map_err(|(code, message)| crate::rejection::Rejection::Graphql(code).because(message))
    }

    /// The first limit `c` exceeds: (stable code, message).
    pub fn check(&self, c: &Complexity) -> Result<(), (&'static str, String)> {
        if c.fragment_cycle {
            return Err((
                "FRAGMENT_CYCLE",
                "fragments spread each other in a cycle (or nest too deep)".into(),
            ));
        }
        fn over<T: PartialOrd + std::fmt::Display>(
            value: T,
            limit: Option<T>,
            code: &'static str,
            what: &str,
        ) -> Result<(), (&'static str, String)> {
            match limit {
                Some(l) if value > l => Err((
                    code,
                    format!("the operation has {value} {what}; at most {l} are allowed"),
                )),
                _ => Ok(()),
            }
        }
        over(c.tokens, self.max_tokens, "LIMIT_TOKENS", "tokens")?;
        over(c.depth, self.max_depth, "LIMIT_DEPTH", "levels of depth")?;
        over(c.aliases, self.max_aliases, "LIMIT_ALIASES", "aliases")?;
        over(
            c.root_fields,
            self.max_root_fields,
            "LIMIT_ROOT_FIELDS",
            "root fields",
        )?;
        over(
            c.fields,
            self.max_fields,
            "LIMIT_FIELDS",
            "fields (fragments expanded)",
        )?;
        over(
            c.max_directives,
            self.max_directives,
            "LIMIT_DIRECTIVES",
            "directives on one selection",
        )?;
        if c.introspection && !self.introspection {
            return Err((
                "INTROSPECTION_DISABLED",
                "introspection is disabled on this API".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    depth: u32,
    fields: u64,
    aliases: u64,
    max_directives: u32,
    introspection: bool,
}

impl Stats {
    /// Merge a selection at the same level.
    fn merge(&mut self, o: Stats) {
        self.depth = self.depth.max(o.depth);
        self.fields = self.fields.saturating_add(o.fields);
        self.aliases = self.aliases.saturating_add(o.aliases);
        self.max_directives = self.max_directives.max(o.max_directives);
        self.introspection |= o.introspection;
    }
}

enum Memo {
    InProgress,
    Done(Stats),
}

struct Walker<'d, 'a> {
    fragments: HashMap<&'a str, &'d FragmentDefinition<'a, &'a str>>,
    memo: HashMap<&'a str, Memo>,
    cycle: bool,
    nesting: usize,
}

impl<'d, 'a> Walker<'d, 'a> {
    fn selection_set(&mut self, set: &'d SelectionSet<'a, &'a str>) -> Stats {
        let mut s = Stats::default();
        for item in &set.items {
            match item {
                Selection::Field(f) => {
                    let child = self.selection_set(&f.selection_set);
                    s.merge(Stats {
                        depth: child.depth.saturating_add(1),
                        fields: child.fields.saturating_add(1),
                        aliases: child.aliases.saturating_add(f.alias.is_some() as u64),
                        max_directives: child.max_directives.max(f.directives.len() as u32),
                        introspection: child.introspection
                            || f.name == "__schema"
                            || f.name == "__type",
                    });
                }
                Selection::InlineFragment(i) => {
                    let mut child = self.selection_set(&i.selection_set);
                    child.max_directives = child.max_directives.max(i.directives.len() as u32);
                    s.merge(child);
                }
                Selection::FragmentSpread(spread) => {
                    let mut child = self.fragment(spread.fragment_name);
                    child.max_directives = child.max_directives.max(spread.directives.len() as u32);
                    s.merge(child);
                }
            }
        }
        s
    }

    fn fragment(&mut self, name: &'a str) -> Stats {
        match self.memo.get(name) {
            Some(Memo::Done(s)) => return *s,
            Some(Memo::InProgress) => {
                self.cycle = true;
                return Stats::default();
            }
            None => {}
        }
        let Some(def) = self.fragments.get(name).copied() else {
            return Stats::default(); // unknown fragments are the upstream's to report
        };
        if self.nesting >= MAX_FRAGMENT_NESTING {
            self.cycle = true;
            return Stats::default();
        }
        self.memo.insert(name, Memo::InProgress);
        self.nesting += 1;
        let s = self.selection_set(&def.selection_set);
        self.nesting -= 1;
        self.memo.insert(name, Memo::Done(s));
        s
    }
}

/// Measure the operation whose top selection set is `top`.
pub fn measure<'d, 'a>(
    query: &str,
    top: &'d SelectionSet<'a, &'a str>,
    fragments: &[&'d FragmentDefinition<'a, &'a str>],
    root_fields: usize,
) -> Complexity {
    let mut w = Walker {
        fragments: fragments.iter().map(|f| (f.name, *f)).collect(),
        memo: HashMap::new(),
        cycle: false,
        nesting: 0,
    };
    let s = w.selection_set(top);
    Complexity {
        depth: s.depth,
        aliases: s.aliases,
        root_fields: root_fields.min(u32::MAX as usize) as u32,
        fields: s.fields,
        max_directives: s.max_directives,
        tokens: count_tokens(query),
        introspection: s.introspection,
        fragment_cycle: w.cycle,
    }
}

/// Lexical tokens of a GraphQL document: names, numbers, strings and punctuators; whitespace,
/// commas and comments are not tokens.
pub fn count_tokens(query: &str) -> u32 {
    let mut n = 0u32;
    super::scan::lex(query, |_| n = n.saturating_add(1));
    n
}
