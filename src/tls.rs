//! The certificate store: one certificate slot per site, chosen by SNI on every handshake
//! (rustls `ResolvesServerCert`), replaced atomically at runtime from files or the admin API.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{CertSource, Config};
use crate::metrics;
use crate::routing::SiteTable;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: String },
    #[error("{path}: no PEM private key found")]
    NoKey { path: String },
    #[error("{path}: unsupported private key: {reason}")]
    BadKey { path: String, reason: String },
    #[error("the private key does not belong to the certificate ({reason})")]
    Mismatch { reason: String },
    #[error("certificate is not valid X.509: {0}")]
    BadCertificate(String),
}

/// A loaded certificate with what graphfront reports about it.
#[derive(Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Expiry of the leaf, seconds since the Unix epoch.
    pub not_after: i64,
    /// File modification times the certificate was loaded from (for change detection).
    pub(crate) stamp: Option<(SystemTime, SystemTime)>,
}

/// Per-site certificate slots plus the name table that picks a slot for an SNI.
#[derive(Debug)]
pub struct CertStore {
    names: SiteTable,
    slots: Vec<ArcSwapOption<LoadedCert>>,
    site_names: Vec<String>,
    fallback: Option<usize>,
}

impl CertStore {
    pub fn new(config: &Config) -> Self {
        Self {
            names: SiteTable::new(config.sites.iter().map(|s| s.as_ref())),
            slots: config
                .sites
                .iter()
                .map(|_| ArcSwapOption::empty())
                .collect(),
            site_names: config.sites.iter().map(|s| s.name.clone()).collect(),
            fallback: config.fallback_site,
        }
    }

    /// Install a certificate for site `index`; the next handshake serves it.
    pub fn install(&self, index: usize, cert: LoadedCert) {
        metrics::get()
            .cert_expiry
            .with_label_values(&[&self.site_names[index]])
            .set(cert.not_after);
        self.slots[index].store(Some(Arc::new(cert)));
    }

    pub fn current(&self, index: usize) -> Option<Arc<LoadedCert>> {
        self.slots[index].load_full()
    }

    /// Refresh `graphfront_tls_certificate_expires_in_seconds` (called for each scrape).
    pub fn publish_gauges(&self) {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let m = metrics::get();
        for (slot, site) in self.slots.iter().zip(&self.site_names) {
            if let Some(cert) = slot.load_full() {
                m.cert_expires_in
                    .with_label_values(&[site])
                    .set(cert.not_after - now);
            }
        }
    }

    /// Load (or reload when the files changed) every file-based site certificate. Returns the
    /// number of certificates replaced and the errors met; a failed reload keeps the old
    /// certificate serving.
    pub fn reload_from_files(&self, config: &Config, force: bool) -> (usize, Vec<String>) {
        let mut replaced = 0;
        let mut errors = Vec::new();
        for (i, site) in config.sites.iter().enumerate() {
            let CertSource::Files { cert, key } = &site.certificate else {
                continue;
            };
            let stamp = file_stamp(cert, key);
            let old = self.current(i);
            if !force && old.is_some() && old.as_ref().and_then(|c| c.stamp) == stamp {
                continue;
            }
            match load_pem_files(cert, key) {
                Ok(mut cert) => {
                    cert.stamp = stamp;
                    self.install(i, cert);
                    replaced += 1;
                    metrics::get()
                        .cert_reloads
                        .with_label_values(&[&site.name, "ok"])
                        .inc();
                    tracing::info!(site = %site.name, "certificate loaded");
                }
                Err(e) => {
                    metrics::get()
                        .cert_reloads
                        .with_label_values(&[&site.name, "error"])
                        .inc();
                    tracing::error!(site = %site.name, error = %e, "certificate not loaded; the previous one (if any) keeps serving");
                    errors.push(format!("site {}: {e}", site.name));
                }
            }
        }
        (replaced, errors)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let (site, reason) = match hello.server_name() {
            Some(name) => match self.names.lookup(name) {
                Some(i) => (Some(i), "no_certificate"),
                None => (self.fallback, "unknown_sni"),
            },
            None => (self.fallback, "no_sni"),
        };
        let cert = site.and_then(|i| self.slots[i].load_full());
        match cert {
            Some(c) => Some(c.key.clone()),
            None => {
                metrics::get()
                    .tls_handshake_failures
                    .with_label_values(&[reason])
                    .inc();
                None
            }
        }
    }
}

/// What the TLS layer hands to the HTTP layer: the site the SNI named. It lives as long as
/// the connection, so it also keeps the open-connections gauge.
#[derive(Debug)]
pub struct TlsInfo {
    pub sni_site: Option<usize>,
    _open: OpenConnection,
}

#[derive(Debug)]
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        metrics::get().connections_open.inc();
        Self
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::get().connections_open.dec();
    }
}

/// Pingora callback after each handshake: count it, tell the listener (`established`, which
/// lifts the handshake deadline) and pass the SNI's site on.
pub struct HandshakeHook {
    pub store: Arc<CertStore>,
    pub established: fn(),
}

#[async_trait]
impl TlsAccept for HandshakeHook {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        metrics::get().tls_handshakes.inc();
        (self.established)();
        let sni_site = tls.server_name().and_then(|n| self.store.names.lookup(n));
        Some(Arc::new(TlsInfo {
            sni_site,
            _open: OpenConnection::new(),
        }))
    }
}

fn file_stamp(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Load a certificate chain and its key from PEM files.
pub fn load_pem_files(cert: &Path, key: &Path) -> Result<LoadedCert, TlsError> {
    let c = read(cert)?;
    let k = read(key)?;
    load_pem(
        &c,
        &k,
        &cert.display().to_string(),
        &key.display().to_string(),
    )
}

/// Build a certificate from PEM text (chain leaf first, and a key), checking they match.
pub fn load_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_name: &str,
    key_name: &str,
) -> Result<LoadedCert, TlsError> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_name.into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .ok()
        .ok_or_else(|| TlsError::NoKey {
            path: key_name.into(),
        })?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
            path: key_name.into(),
            reason: e.to_string(),
        })?;
    let not_after = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?
        .1
        .validity()
        .not_after
        .timestamp();
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        reason: e.to_string(),
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
        stamp: None,
    })
}
