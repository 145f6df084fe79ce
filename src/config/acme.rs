//! `[acme]`: how certificates of `tls = "acme"` sites are obtained (the CA, its account, the
//! challenges), as written in the file and validated against what those sites need.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::site::Site;
use super::tls::CertSource;
use super::value::ReadableFile;
use super::{KeyPath, Validator};

/// An ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ChallengeKind {
    /// Answered on the port-80 listener (`/.well-known/acme-challenge/<token>`).
    #[serde(rename = "http-01")]
    Http01,
    /// Answered on the https listeners (ALPN `acme-tls/1`).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// A TXT record set by `[acme] dns-hook`; the only one for wildcard names.
    #[serde(rename = "dns-01")]
    Dns01,
}

impl ChallengeKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
            Self::Dns01 => "dns-01",
        }
    }
}

/// `[acme]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AcmeFile {
    /// The CA's directory: "letsencrypt", "letsencrypt-staging", or any RFC 8555 directory URL.
    pub directory: String,
    /// Contact addresses for the account ("ops@example.com" or "mailto:ops@example.com").
    pub contact: Vec<String>,
    /// Trust anchors (PEM) for the directory's HTTPS instead of the system roots.
    pub ca_file: Option<ReadableFile>,
    /// External account binding, for CAs that require one.
    pub eab: Option<EabFile>,
    /// Challenges tried in order for sites that do not list their own.
    pub challenges: Vec<ChallengeKind>,
    /// DNS-01: a command run as `<command...> set|clear <record name> <TXT value>`.
    pub dns_hook: Option<Vec<String>>,
    /// Longest a dns-hook run may take.
    #[serde(with = "humantime_serde")]
    pub dns_hook_timeout: Duration,
    /// Wait after a successful `set` before the CA is asked to look (DNS propagation).
    #[serde(with = "humantime_serde")]
    pub dns_propagation_delay: Duration,
    /// First delay after a failed order; doubled (with jitter) on each further failure.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest delay between attempts.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How long an order may take from challenges to certificate before it counts as failed.
    #[serde(with = "humantime_serde")]
    pub order_timeout: Duration,
}

impl Default for AcmeFile {
    fn default() -> Self {
        Self {
            directory: "letsencrypt".into(),
            contact: Vec::new(),
            ca_file: None,
            eab: None,
            challenges: vec![ChallengeKind::TlsAlpn01, ChallengeKind::Http01],
            dns_hook: None,
            dns_hook_timeout: Duration::from_secs(120),
            dns_propagation_delay: Duration::ZERO,
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            order_timeout: Duration::from_secs(120),
        }
    }
}

/// `[acme] eab` as written: the external account binding the CA gave.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EabFile {
    /// The key identifier the CA gave.
    pub kid: String,
    /// The HMAC key the CA gave (base64url).
    pub hmac_key: String,
}

/// The ACME settings shared by every `tls = "acme"` site.
#[derive(Debug, Clone)]
pub struct Acme {
    /// The directory URL.
    pub directory: String,
    /// `mailto:` URLs.
    pub contact: Vec<String>,
    pub ca_file: Option<PathBuf>,
    /// External account binding: key id and HMAC key.
    pub eab: Option<(String, Vec<u8>)>,
    pub dns_hook: Option<Vec<String>>,
    pub dns_hook_timeout: Duration,
    pub dns_propagation_delay: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub order_timeout: Duration,
}

impl Validator<'_> {
    /// `[acme]`, and what the `tls = "acme"` sites need from it and from the listeners.
    pub(super) fn acme(&mut self, f: &AcmeFile, sites: &[Arc<Site>], http_listener: bool) -> Acme {
        let at = KeyPath::root().key("acme");
        let directory = match f.directory.as_str() {
            "letsencrypt" => instant_acme::LetsEncrypt::Production.url().to_string(),
            "letsencrypt-staging" => instant_acme::LetsEncrypt::Staging.url().to_string(),
            url => {
                if !url.starts_with("https://") || url::Url::parse(url).is_err() {
                    self.problem(
                        at.key("directory"),
                        format!("`{url}`: write \"letsencrypt\", \"letsencrypt-staging\" or an https:// directory URL"),
                    );
                }
                url.to_string()
            }
        };
        let contact = f
            .contact
            .iter()
            .map(|c| match c.strip_prefix("mailto:") {
                Some(_) => c.clone(),
                None => format!("mailto:{c}"),
            })
            .collect();
        let eab = f.eab.as_ref().and_then(|e| {
            use base64::Engine;
            match base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(e.hmac_key.trim_end_matches('='))
            {
                Ok(key) if !key.is_empty() => Some((e.kid.clone(), key)),
                _ => {
                    self.problem(at.key("eab").key("hmac-key"), "is not base64url");
                    None
                }
            }
        });
        let ca_file = f
            .ca_file
            .as_ref()
            .map(|p| self.readable_file(at.key("ca-file"), p));
        if f.dns_hook.as_ref().is_some_and(|h| h.is_empty()) {
            self.problem(at.key("dns-hook"), "name the command to run");
        }
        if f.retry_initial.is_zero() || f.retry_max < f.retry_initial {
            self.problem(
                at.key("retry-max"),
                "retry-initial must be more than 0 and retry-max at least retry-initial",
            );
        }
        for (i, site) in sites.iter().enumerate() {
            let CertSource::Acme { challenges } = &site.certificate else {
                continue;
            };
            let tls = KeyPath::root().key("site").index(i).key("tls");
            if challenges.contains(&ChallengeKind::Http01) && !http_listener {
                self.problem(
                    tls.clone(),
                    "http-01 needs a [listeners] http address (port 80)",
                );
            }
            if challenges.contains(&ChallengeKind::Dns01) && f.dns_hook.is_none() {
                self.problem(tls.clone(), "dns-01 needs [acme] dns-hook");
            }
            if site.domains.iter().any(|d| d.starts_with("*."))
                && !challenges.contains(&ChallengeKind::Dns01)
            {
                self.problem(
                    tls,
                    "a wildcard domain can only be validated by dns-01: add it to challenges",
                );
            }
        }
        Acme {
            directory,
            contact,
            ca_file,
            eab,
            dns_hook: f.dns_hook.clone(),
            dns_hook_timeout: f.dns_hook_timeout,
            dns_propagation_delay: f.dns_propagation_delay,
            retry_initial: f.retry_initial,
            retry_max: f.retry_max,
            order_timeout: f.order_timeout,
        }
    }
}
