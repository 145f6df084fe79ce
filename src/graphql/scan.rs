//! A lexer over a document's text, for what the parsed tree does not give back: where each
//! selection set opens (to edit the text there), and the token count. Whitespace,
//! commas and comments are skipped; an unterminated string runs to the end.

use std::ops::Range;

/// One token of a GraphQL document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lexeme {
    /// A string or block string, quotes included, as written (`text[range]`).
    Str(Range<usize>),
    /// A name, number or keyword.
    Word,
    /// `...`
    Spread,
    /// Any other byte (`{`, `(`, `:`, `$`, ...), and where it stands.
    Punct(u8, usize),
}

/// Call `f` with each token of `text`, in order.
pub fn lex(text: &str, mut f: impl FnMut(Lexeme)) {
    let b = text.as_bytes();
    let mut i = 0usize;
    while i < b.len() {
        match b[i] {
            // Ignored: white space, commas, the byte-order mark.
            b' ' | b'\t' | b'\n' | b'\r' | b',' | 0xEF | 0xBB | 0xBF => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                let start = i;
                i += 3;
                while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                    i += if b[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i = (i + 3).min(b.len());
                f(Lexeme::Str(start..i));
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                // Past the closing quote (or the line's end): an ASCII byte, so a char boundary.
                i = (i + 1).min(b.len());
                f(Lexeme::Str(start..i));
            }
            b'.' if b[i..].starts_with(b"...") => {
                i += 3;
                f(Lexeme::Spread);
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'-' | b'+'))
                {
                    i += 1;
                }
                f(Lexeme::Word);
            }
            c => {
                f(Lexeme::Punct(c, i));
                i += 1;
            }
        }
    }
}

/// Where each selection set opens (the offset of its `{`), in the order of the text. Outside
/// parentheses every `{` opens a selection set: input objects only stand in arguments,
/// variable definitions and their defaults, which are all inside parentheses.
pub fn selection_sets(text: &str) -> Vec<usize> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    lex(text, |t| match t {
        Lexeme::Punct(b'(', _) => depth += 1,
        Lexeme::Punct(b')', _) => depth = depth.saturating_sub(1),
        Lexeme::Punct(b'{', at) if depth == 0 => out.push(at),
        _ => {}
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_sets_are_the_braces_outside_parentheses() {
        let q = r#"query Q($v: In = {a: {b: 1}}) { a(x: {y: "{"}) @d(o: {p: 1}) { b } ... on T { c } }
                   # { a comment
                   fragment F on T { d { e } }"#;
        let at: Vec<char> = selection_sets(q)
            .iter()
            .map(|&i| q[i..].chars().next().unwrap())
            .collect();
        assert_eq!(at, ['{'; 5]);
        let after: Vec<&str> = selection_sets(q)
            .iter()
            .map(|&i| q[i + 1..].split_whitespace().next().unwrap())
            .collect();
        assert_eq!(after, ["a(x:", "b", "c", "d", "e"]);
    }
}
