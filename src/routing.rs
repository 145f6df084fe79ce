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

    /// The site serving `name` (a host name without port, any case).
    pub fn lookup(&self, name: &str) -> Option<usize> {
        let name = name.strip_suffix('.').unwrap_or(name);
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

/// The host part of a Host header or `:authority` (port and IPv6 brackets removed).
pub fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
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
    }
}
