//! `[admin]`: the bearer token of the admin API (cache purges). The token is read here and
//! kept only as a blake3 digest; without one the admin API refuses every call.

use serde::Deserialize;

use super::value::SecretFile;
use super::{KeyPath, Validator};

/// The shortest accepted admin token.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[admin]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdminFile {
    /// Bearer token of the admin API (`Authorization: Bearer <token>`), at least 16 characters.
    /// Without a token (here or in `token-file`) purges are refused.
    pub token: Option<String>,
    /// File holding the token (read at start-up, surrounding whitespace trimmed).
    pub token_file: Option<SecretFile>,
}

/// The validated `[admin]` settings.
#[derive(Debug, Clone, Default)]
pub struct Admin {
    /// blake3 digest of the token; `None`: the admin API is disabled.
    pub token: Option<blake3::Hash>,
}

impl Admin {
    /// Whether `presented` is the configured token. Digests are compared in constant time, so
    /// the comparison leaks neither the token nor how much of it matched.
    pub fn accepts(&self, presented: &str) -> bool {
        self.token
            .is_some_and(|t| t == blake3::hash(presented.as_bytes()))
    }
}

impl Validator<'_> {
    pub(super) fn admin(&mut self, f: &AdminFile) -> Admin {
        let at = KeyPath::root().key("admin");
        let (token, key) = match (&f.token, &f.token_file) {
            (None, None) => return Admin::default(),
            (Some(t), None) => (t.trim().to_string(), "token"),
            (None, Some(p)) => match self.read_secret(at.key("token-file"), p) {
                Some(s) => (s, "token-file"),
                None => return Admin::default(),
            },
            (Some(_), Some(_)) => {
                self.problem(at, "set one of token or token-file, not both");
                return Admin::default();
            }
        };
        if token.chars().count() < MIN_TOKEN_LEN {
            // Never echo the token: say only what is wrong with it.
            self.problem(
                at.key(key),
                format!("the admin token must be at least {MIN_TOKEN_LEN} characters"),
            );
            return Admin::default();
        }
        Admin {
            token: Some(blake3::hash(token.as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    use crate::config::tests::SITE_WITH_ACME as BASE;

    fn parse(admin: &str, base: &Path) -> Result<Config, ConfigError> {
        Config::parse(&format!("{admin}\n{BASE}"), base)
    }

    #[test]
    fn no_token_disables_the_admin_api() {
        let c = parse("", Path::new(".")).unwrap();
        assert!(c.admin_api.token.is_none());
        assert!(!c.admin_api.accepts(""));
    }

    #[test]
    fn token_is_kept_as_a_digest_and_compared() {
        let c = parse("[admin]\ntoken = \" 0123456789abcdef \"", Path::new(".")).unwrap();
        assert!(c.admin_api.accepts("0123456789abcdef"));
        assert!(!c.admin_api.accepts("0123456789abcdeF"));
        assert!(!format!("{:?}", c.admin_api).contains("0123456789abcdef"));
    }

    #[test]
    fn short_token_is_refused_without_echoing_it() {
        let e = parse("[admin]\ntoken = \"short-secret\"", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains("admin.token (line 2)"), "{e}");
        assert!(e.contains("at least 16"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("gf-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "fedcba9876543210fedcba\n").unwrap();
        let c = parse("[admin]\ntoken-file = \"token\"", &dir).unwrap();
        assert!(c.admin_api.accepts("fedcba9876543210fedcba"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_token_file_names_the_key() {
        let e = parse(
            "[admin]\ntoken-file = \"/nonexistent/token\"",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("admin.token-file (line 2)"), "{e}");
        assert!(e.contains("/nonexistent/token"), "{e}");
    }

    #[test]
    fn token_and_token_file_together_are_refused() {
        let e = parse(
            "[admin]\ntoken = \"0123456789abcdef\"\ntoken-file = \"t\"",
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
    }
}
