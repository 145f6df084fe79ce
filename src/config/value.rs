//! Values that several keys share, each checked once: header names, paths on the custom
//! domain, files that must exist and files holding a secret. In the file structs they are the
//! text as written; the `Validator` methods here check them and report a problem at the key.

use std::path::PathBuf;

use serde::Deserialize;

use super::{KeyPath, Validator};

/// A header name as written (`csrf-required-headers`, `[site.cache] principal-header` and
/// `keep-headers`).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct HeaderName(pub String);

/// A path on the custom domain as written (`graphql-path`, `realtime-path`,
/// `[site.websocket] paths`): it starts with `/` and holds no query.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct UrlPath(pub String);

impl From<&str> for UrlPath {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// A file that must exist when the configuration is loaded (certificates, keys, CA bundles);
/// a relative path is taken from the configuration file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct ReadableFile(pub PathBuf);

/// A file holding a secret (a token, a key), read when the configuration is loaded, surrounding
/// whitespace trimmed; a relative path is taken from the configuration file's directory.
/// Problems name the file, never what it holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretFile(pub PathBuf);

impl Validator<'_> {
    pub(super) fn header_name(&mut self, at: KeyPath, h: &HeaderName) -> Option<http::HeaderName> {
        match http::HeaderName::try_from(h.0.as_str()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.problem(at, format!("`{}` is not a header name", h.0));
                None
            }
        }
    }

    /// The path, checked.
    pub(super) fn url_path(&mut self, at: KeyPath, p: &UrlPath) -> String {
        if !p.0.starts_with('/') || p.0.contains('?') {
            self.problem(at, "must start with '/' and hold no query");
        }
        p.0.clone()
    }

    /// The resolved path, checked to be a file.
    pub(super) fn readable_file(&mut self, at: KeyPath, f: &ReadableFile) -> PathBuf {
        let path = self.resolve(&f.0);
        if !path.is_file() {
            self.problem(at, format!("{} is not a readable file", path.display()));
        }
        path
    }

    /// What the file holds, trimmed.
    pub(super) fn read_secret(&mut self, at: KeyPath, f: &SecretFile) -> Option<String> {
        let path = self.resolve(&f.0);
        match std::fs::read_to_string(&path) {
            Ok(s) => Some(s.trim().to_string()),
            Err(e) => {
                self.problem(at, format!("{}: {e}", path.display()));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn validator(base: &Path) -> Validator<'_> {
        Validator {
            text: "",
            base,
            problems: Vec::new(),
        }
    }

    fn messages(v: &Validator<'_>) -> Vec<String> {
        v.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn header_names() {
        let mut v = validator(Path::new("."));
        let at = KeyPath::root().key("h");
        let ok = v.header_name(at.clone(), &HeaderName("X-Api-Key".into()));
        assert_eq!(ok.unwrap(), "x-api-key");
        assert!(v
            .header_name(at, &HeaderName("bad header".into()))
            .is_none());
        assert_eq!(messages(&v), ["h: `bad header` is not a header name"]);
    }

    #[test]
    fn url_paths() {
        let mut v = validator(Path::new("."));
        for p in ["/graphql", "/", "/a/b"] {
            assert_eq!(v.url_path(KeyPath::root().key("p"), &p.into()), p);
        }
        for p in ["graphql", "", "/a?b=1"] {
            v.url_path(KeyPath::root().key("p"), &p.into());
        }
        assert_eq!(
            messages(&v),
            ["p: must start with '/' and hold no query"; 3]
        );
    }

    #[test]
    fn files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "  secret\n").unwrap();
        let mut v = validator(dir.path());
        let at = KeyPath::root().key("f");
        assert_eq!(
            v.readable_file(at.clone(), &ReadableFile("s".into())),
            dir.path().join("s")
        );
        let secret = v.read_secret(at.clone(), &SecretFile("s".into()));
        assert_eq!(secret.as_deref(), Some("secret"));
        assert!(v.problems.is_empty());
        v.readable_file(at.clone(), &ReadableFile("/nonexistent/f".into()));
        assert!(v
            .read_secret(at, &SecretFile("/nonexistent/f".into()))
            .is_none());
        let m = messages(&v);
        assert_eq!(m[0], "f: /nonexistent/f is not a readable file");
        assert!(m[1].starts_with("f: /nonexistent/f: "), "{m:?}");
    }
}
