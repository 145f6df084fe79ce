//! Challenge answers while an order is open: HTTP-01 tokens for the port-80 listener and
//! TLS-ALPN-01 certificates for the https listeners, where a hook reads the ClientHello before
//! pingora's handshake and answers `acme-tls/1` connections itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// The most bytes read while looking for a ClientHello (a hello is at most a few KiB).
const HELLO_LIMIT: usize = 64 * 1024;
/// How long a connection may take to send its ClientHello while challenges are open.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Where HTTP-01 answers live on port 80.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The open challenges of every order in progress.
pub struct Challenges {
    /// Token → (site, key authorization).
    http: RwLock<HashMap<String, (String, String)>>,
    alpn: Arc<AlpnCerts>,
    /// TLS-ALPN-01 answers open: the hook only reads ClientHellos while this is not 0.
    alpn_open: AtomicUsize,
    alpn_config: Arc<rustls::ServerConfig>,
}

impl Default for Challenges {
    fn default() -> Self {
        Self::new()
    }
}

impl Challenges {
    pub fn new() -> Self {
        let alpn = Arc::new(AlpnCerts::default());
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(alpn.clone());
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        Self {
            http: RwLock::default(),
            alpn,
            alpn_open: AtomicUsize::new(0),
            alpn_config: Arc::new(config),
        }
    }

    /// Answer `GET /.well-known/acme-challenge/<token>` with `key_authorization` (for `site`'s
    /// order).
    pub fn add_http(&self, site: &str, token: &str, key_authorization: &str) {
        self.http.write().expect("challenge lock").insert(
            token.to_string(),
            (site.to_string(), key_authorization.to_string()),
        );
    }

    pub fn remove_http(&self, token: &str) {
        self.http.write().expect("challenge lock").remove(token);
    }

    /// The site and key authorization for an HTTP-01 request path, when that token is open.
    pub fn http_answer(&self, path: &str) -> Option<(String, String)> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        self.http
            .read()
            .expect("challenge lock")
            .get(token)
            .cloned()
    }

    /// Serve a TLS-ALPN-01 certificate for `domain` (its acmeIdentifier extension holds
    /// `digest`, the SHA-256 of the key authorization) to `acme-tls/1` handshakes, for `site`'s
    /// order.
    pub fn add_alpn(&self, site: &str, domain: &str, digest: &[u8]) -> Result<(), String> {
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing =
            rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing);
        let previous = self.alpn.0.write().expect("challenge lock").insert(
            domain.to_ascii_lowercase(),
            (Arc::new(certified), site.to_string()),
        );
        if previous.is_none() {
            self.alpn_open.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    pub fn remove_alpn(&self, domain: &str) {
        let removed = self
            .alpn
            .0
            .write()
            .expect("challenge lock")
            .remove(&domain.to_ascii_lowercase());
        if removed.is_some() {
            self.alpn_open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// TLS-ALPN-01 certificates by domain, with the site whose order they answer.
#[derive(Debug, Default)]
struct AlpnCerts(RwLock<HashMap<String, (Arc<CertifiedKey>, String)>>);

impl ResolvesServerCert for AlpnCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        self.0
            .read()
            .expect("challenge lock")
            .get(&name.to_ascii_lowercase())
            .map(|(key, _)| key.clone())
    }
}

/// Runs before pingora's TLS handshake on the https listeners. While a TLS-ALPN-01 challenge
/// is open it reads the ClientHello: a validation connection (ALPN `acme-tls/1` for a domain
/// with an open challenge) is answered here and closed; any other connection gets its bytes
/// back and continues to pingora's handshake. With no challenge open it does nothing.
pub struct AlpnChallengeHook {
    pub challenges: Arc<Challenges>,
}

#[async_trait]
impl PreTlsProcess for AlpnChallengeHook {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        if self.challenges.alpn_open.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let (seen, validation) =
            match tokio::time::timeout(HELLO_TIMEOUT, read_hello(stream, &self.challenges)).await {
                Ok(Ok(read)) => read,
                Ok(Err(e)) => return Err(closed(e)),
                Err(_) => return Err(closed("no ClientHello in time")),
            };
        stream.rewind(&seen);
        let Some((domain, site)) = validation else {
            return Ok(());
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(self.challenges.alpn_config.clone());
        match tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(&mut *stream)).await {
            Ok(Ok(mut tls)) => {
                tracing::info!(site = %site, domain = %domain, "acme: answered a tls-alpn-01 validation");
                let _ = tls.shutdown().await;
            }
            Ok(Err(e)) => {
                tracing::warn!(site = %site, domain = %domain, error = %e, "acme: tls-alpn-01 handshake failed")
            }
            Err(_) => {
                tracing::warn!(site = %site, domain = %domain, "acme: tls-alpn-01 handshake timed out")
            }
        }
        // Not an HTTP connection: pingora drops it.
        Err(closed("tls-alpn-01 validation answered"))
    }
}

fn closed(why: impl std::fmt::Display) -> Box<pingora::Error> {
    pingora::Error::explain(pingora::ErrorType::HandshakeError, why.to_string())
}

/// Read until rustls has a whole ClientHello. Returns the bytes read and, when this is an ACME
/// validation for an open challenge, its domain and site. A malformed hello is left to pingora's handshake,
/// which refuses it the usual way.
async fn read_hello(
    stream: &mut L4Stream,
    challenges: &Challenges,
) -> Result<(Vec<u8>, Option<(String, String)>), &'static str> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut seen = Vec::with_capacity(2048);
    let mut buf = [0u8; 4096];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|_| "read failed before the ClientHello")?;
        if n == 0 {
            return Err("closed before the ClientHello");
        }
        seen.extend_from_slice(&buf[..n]);
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            match acceptor.read_tls(&mut chunk) {
                Ok(0) | Err(_) => return Ok((seen, None)),
                Ok(_) => {}
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let validation = is_validation(&accepted.client_hello(), challenges);
                    return Ok((seen, validation));
                }
                Ok(None) => {}
                Err(_) => return Ok((seen, None)),
            }
        }
        if seen.len() >= HELLO_LIMIT {
            return Ok((seen, None));
        }
    }
}

/// ALPN `acme-tls/1` for a domain with an open challenge: the domain and its site.
fn is_validation(hello: &ClientHello<'_>, challenges: &Challenges) -> Option<(String, String)> {
    let acme = hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
    let domain = hello.server_name().filter(|_| acme)?.to_ascii_lowercase();
    let site = challenges
        .alpn
        .0
        .read()
        .expect("challenge lock")
        .get(&domain)?
        .1
        .clone();
    Some((domain, site))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_only_open_tokens() {
        let c = Challenges::new();
        c.add_http("api", "tok", "tok.thumb");
        assert_eq!(
            c.http_answer("/.well-known/acme-challenge/tok"),
            Some(("api".into(), "tok.thumb".into()))
        );
        assert_eq!(c.http_answer("/.well-known/acme-challenge/other"), None);
        assert_eq!(c.http_answer("/tok"), None);
        c.remove_http("tok");
        assert_eq!(c.http_answer("/.well-known/acme-challenge/tok"), None);
    }

    #[test]
    fn alpn_certificates_are_counted_once_per_domain() {
        let c = Challenges::new();
        c.add_alpn("a", "a.test", &[7; 32]).unwrap();
        c.add_alpn("a", "A.test", &[8; 32]).unwrap();
        assert_eq!(c.alpn_open.load(Ordering::Acquire), 1);
        c.remove_alpn("a.test");
        c.remove_alpn("a.test");
        assert_eq!(c.alpn_open.load(Ordering::Acquire), 0);
    }
}
