//! `[tls]` and a site's `tls`: where certificates come from and how often their files are
//! checked, as written in the file and validated.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::acme::ChallengeKind;
use super::site::SiteFile;
use super::value::ReadableFile;
use super::{KeyPath, Validator};

/// `[tls]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsFile {
    /// How often certificate files are checked for changes (0s disables polling).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Name of the site whose certificate answers handshakes with an unknown or missing SNI.
    /// Without it such handshakes are refused.
    pub fallback_site: Option<String>,
}

impl Default for TlsFile {
    fn default() -> Self {
        Self {
            reload_interval: Duration::from_secs(10),
            fallback_site: None,
        }
    }
}

/// A site's certificate: `tls = "acme"`, `tls = { acme = true, challenges = [...] }`, or
/// `tls = { cert = "...", key = "..." }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SiteTlsFile {
    /// Certificate chain, PEM, leaf first.
    pub cert: Option<ReadableFile>,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<ReadableFile>,
    /// Obtain and renew the certificate with ACME (`[acme]`).
    pub acme: bool,
    /// ACME challenges to try, in order (default: `[acme] challenges`).
    pub challenges: Option<Vec<ChallengeKind>>,
}

impl<'de> Deserialize<'de> for SiteTlsEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_untagged::UntaggedEnumVisitor::new()
            .string(|s| match s {
                "acme" => Ok(SiteTlsEntry(SiteTlsFile {
                    acme: true,
                    ..SiteTlsFile::default()
                })),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}`: write \"acme\" or a table {{ cert = \"...\", key = \"...\" }}"
                ))),
            })
            .map(|m| m.deserialize().map(SiteTlsEntry))
            .deserialize(d)
    }
}

/// `tls` as written: the keyword "acme" or a table.
#[derive(Debug)]
pub struct SiteTlsEntry(pub SiteTlsFile);

/// Where a site's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Obtained and renewed by graphfront, trying these challenges in order.
    Acme {
        challenges: Vec<ChallengeKind>,
    },
}

impl Validator<'_> {
    pub(super) fn certificate(
        &mut self,
        at: KeyPath,
        t: &SiteTlsFile,
        default_challenges: &[ChallengeKind],
    ) -> Option<CertSource> {
        match (t.acme, &t.cert, &t.key) {
            (true, None, None) => {
                let challenges = t.challenges.clone().unwrap_or(default_challenges.to_vec());
                if challenges.is_empty() {
                    self.problem(at.key("challenges"), "list at least one challenge");
                }
                Some(CertSource::Acme { challenges })
            }
            (false, Some(cert), Some(key)) => {
                if t.challenges.is_some() {
                    self.problem(at.key("challenges"), "only for acme = true");
                }
                let cert = self.readable_file(at.key("cert"), cert);
                let key = self.readable_file(at.key("key"), key);
                Some(CertSource::Files { cert, key })
            }
            _ => {
                self.problem(
                    at,
                    "write tls = \"acme\", or both cert and key files (not both)",
                );
                None
            }
        }
    }

    /// `[tls] fallback-site`: the index of the site it names.
    pub(super) fn fallback_site(&mut self, f: &TlsFile, sites: &[SiteFile]) -> Option<usize> {
        f.fallback_site.as_ref().and_then(|name| {
            let found = sites.iter().position(|s| &s.name == name);
            if found.is_none() {
                self.problem(
                    KeyPath::root().key("tls").key("fallback-site"),
                    format!("no site is named `{name}`"),
                );
            }
            found
        })
    }
}
