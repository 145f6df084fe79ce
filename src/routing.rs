//! Which site a name belongs to: exact domains first, then one-level wildcards (`*.example.com`).
//! Used for SNI (certificate choice) and for the Host header (request routing).

use std::collections::HashMap;

use crate::config::Site;

/// Domain → site index, built once from the configuration.
#[derive(Debug, Default)]
pub struct SiteTable {
    exact: HashMap<String, usize>,
    /// Keyed by what follows `*.`: `*.example.com` is stored as `example.com`.
    wildcard: HashMap<String, usize>,
}

impl SiteTable {
    pub fn new<'a>(sites: impl IntoIterator<Item = &'a Site>) -> Self {
        let mut t = Self::default();
        for (i, site) in sites.into_iter().enumerate() {
            for d in &site.domains {
                match d.strip_prefix("*.") {
                    Some(suffix) => t.wildcard.insert(suffix.to_string(), i),
                    None => t.exact.insert(d.clone(), i),
                };
            }
        }
        t
    }

    /// The site serving `name` (a host name without port, any case). Only names made of LDH
    /// labels (letters, digits, hyphens) match: a wildcard covers one such label, never one
    /// holding `/`, `@` or other bytes that would change the meaning of a redirect.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if !is_ldh_name(name) {
            return None;
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.lookup_lower(&name.to_ascii_lowercase());
        }
        self.lookup_lower(name)
    }

    fn lookup_lower(&self, name: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(name) {
            return Some(i);
        }
        // A wildcard covers exactly one label: `a.example.com`, not `example.com` nor `a.b.example.com`.
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

/// Whether `name` is a dot-separated list of LDH labels of 1 to 63 bytes (at most 253 in all).
fn is_ldh_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The host part of a Host header or `:authority` (port and IPv6 brackets removed). An
/// authority whose port is not a number from 1 to 65535 names no host: "" (no site).
pub fn host_of(authority: &str) -> &str {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, after)) => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return "",
            },
            None => return "",
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    match port {
        None => host,
        Some(p) if valid_port(p) => host,
        Some(_) => "",
    }
}

fn valid_port(p: &str) -> bool {
    (1..=5).contains(&p.len())
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn table(domains: &[&[&str]]) -> SiteTable {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), "x").unwrap();
        let mut text = String::new();
        for (i, ds) in domains.iter().enumerate() {
            let list: Vec<String> = ds.iter().map(|d| format!("\"{d}\"")).collect();
            text += &format!(
                "[[site]]\nname = \"s{i}\"\ndomains = [{}]\nupstream = \"https://up.test/graphql\"\ntls = {{ cert = \"c.pem\", key = \"c.pem\" }}\n",
                list.join(", ")
            );
        }
        let config = Config::parse(&text, dir.path()).unwrap();
        SiteTable::new(config.sites.iter().map(|s| s.as_ref()))
    }

    #[test]
    fn exact_beats_wildcard_and_wildcard_is_one_label() {
        let t = table(&[&["*.example.com"], &["api.example.com"]]);
        assert_eq!(t.lookup("api.example.com"), Some(1));
        assert_eq!(t.lookup("API.Example.com."), Some(1));
        assert_eq!(t.lookup("shop.example.com"), Some(0));
        assert_eq!(t.lookup("example.com"), None);
        assert_eq!(t.lookup("a.shop.example.com"), None);
        assert_eq!(t.lookup("other.test"), None);
    }

    #[test]
    fn host_of_strips_ports_and_brackets() {
        assert_eq!(host_of("api.example.com:8443"), "api.example.com");
        assert_eq!(host_of("api.example.com"), "api.example.com");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("[::1]"), "::1");
    }

    #[test]
    fn junk_ports_name_no_host() {
        for bad in [
            "a.example:abc",
            "a.example:99999999999",
            "a.example:65536",
            "a.example:0",
            "a.example:",
            "a.example:443:443",
            "a.example:+443",
            "[::1]x",
            "[::1",
        ] {
            assert_eq!(host_of(bad), "", "{bad}");
        }
        assert_eq!(host_of("a.example:65535"), "a.example");
    }

    #[test]
    fn wildcards_match_ldh_labels_only() {
        let t = table(&[&["*.example.com"]]);
        assert_eq!(t.lookup("a-1.example.com"), Some(0));
        for bad in [
            "2130706433/.example.com",
            "evil.test/.example.com",
            "a@b.example.com",
            "a b.example.com",
            "a_b.example.com",
            ".example.com",
            "a%2f.example.com",
        ] {
            assert_eq!(t.lookup(bad), None, "{bad}");
        }
    }
}
