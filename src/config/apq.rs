//! `[site.apq]`: automatic persisted queries (Apollo's APQ protocol) answered at the edge, as
//! written in the file and validated.

use bytesize::ByteSize;
use serde::Deserialize;

use super::{KeyPath, Validator};

/// `[site.apq]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApqFile {
    /// Answer APQ at the edge: hash-only requests are expanded from the site's store, and
    /// queries sent with their hash are verified and stored. Off: hash-only requests get
    /// `PersistedQueryNotSupported` and the rest is forwarded untouched.
    pub enabled: bool,
    /// Memory for this site's stored queries (their text), least recently used evicted first.
    pub max_size: ByteSize,
}

impl Default for ApqFile {
    fn default() -> Self {
        Self {
            enabled: true,
            max_size: ByteSize::mib(16),
        }
    }
}

/// A site's validated APQ settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Apq {
    pub enabled: bool,
    /// Bytes of query text the site's store holds.
    pub max_size: u64,
}

impl Validator<'_> {
    pub(super) fn apq(&mut self, at: KeyPath, f: &ApqFile) -> Apq {
        let max_size = f.max_size.as_u64();
        if f.enabled && max_size < 1024 {
            self.problem(
                at.key("max-size"),
                "must be at least 1KiB (or set enabled = false)",
            );
        }
        Apq {
            enabled: f.enabled,
            max_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    use crate::config::tests::SITE_WITH_ACME as SITE;

    #[test]
    fn defaults_and_validation() {
        let c = Config::parse(SITE, std::path::Path::new(".")).unwrap();
        assert_eq!(c.sites[0].apq.max_size, 16 * 1024 * 1024);
        assert!(c.sites[0].apq.enabled);
        let off = format!("{SITE}[site.apq]\nenabled = false\nmax-size = \"0B\"\n");
        assert!(
            !Config::parse(&off, std::path::Path::new("."))
                .unwrap()
                .sites[0]
                .apq
                .enabled
        );
        let tiny = format!("{SITE}[site.apq]\nmax-size = \"10B\"\n");
        match Config::parse(&tiny, std::path::Path::new(".")) {
            Err(ConfigError::Invalid(p)) => {
                assert_eq!(
                    p[0].to_string(),
                    "site[0].apq.max-size (line 8): must be at least 1KiB (or set enabled = false)"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
