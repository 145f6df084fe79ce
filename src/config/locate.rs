//! Finds the line of a key path (`site[1].upstream`) in the configuration text, so that every
//! configuration error can name where to look.

use toml_edit::{ImDocument, Item};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A key path, printed as `site[1].tls.cert`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn root() -> Self {
        Self::default()
    }
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) if first => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// 1-based line of byte offset `at` in `text`.
pub fn line_at(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line where the deepest existing part of `path` is written, if the text parses.
pub fn line_of(text: &str, path: &KeyPath) -> Option<usize> {
    let doc = ImDocument::parse(text).ok()?;
    let mut item: &Item = doc.as_item();
    let mut best = None;
    for seg in &path.0 {
        let next = match seg {
            Seg::Key(k) => match item {
                Item::Table(t) => {
                    if let Some((key, _)) = t.get_key_value(k) {
                        best = key.span().or(best);
                    }
                    t.get(k)
                }
                Item::Value(toml_edit::Value::InlineTable(t)) => {
                    if let Some((key, _)) = t.get_key_value(k) {
                        best = key.span().or(best);
                    }
                    t.get(k).map(|_| ()).and_then(|_| item.get(k.as_str()))
                }
                _ => None,
            },
            Seg::Index(i) => item.get(*i),
        };
        let Some(next) = next else { break };
        item = next;
        if let Some(span) = item_span(item) {
            best = Some(span);
        }
    }
    best.map(|span| line_at(text, span.start))
}

fn item_span(item: &Item) -> Option<std::ops::Range<usize>> {
    match item {
        Item::Table(t) => t.span(),
        Item::ArrayOfTables(a) => a.span(),
        _ => item.span(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[server]\nthreads = 1\n\n[[site]]\nname = \"a\"\n\n[[site]]\nname = \"b\"\nupstream = \"x\"\ntls = { cert = \"c\", key = \"k\" }\n";

    #[test]
    fn finds_nested_keys() {
        let p = KeyPath::root().key("site").index(1).key("upstream");
        assert_eq!(p.to_string(), "site[1].upstream");
        assert_eq!(line_of(TEXT, &p), Some(9));
        assert_eq!(
            line_of(TEXT, &KeyPath::root().key("server").key("threads")),
            Some(2)
        );
        let cert = KeyPath::root().key("site").index(1).key("tls").key("cert");
        assert_eq!(line_of(TEXT, &cert), Some(10));
    }

    #[test]
    fn missing_key_points_at_its_table() {
        let p = KeyPath::root().key("site").index(0).key("upstream");
        assert_eq!(line_of(TEXT, &p), Some(4));
    }
}
