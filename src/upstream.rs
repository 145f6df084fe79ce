//! Upstream peers: asynchronous, cached DNS (pingora's `HttpPeer::new` with a host name blocks
//! and panics on failure), per-site TLS trust, timeouts and pooling, and error classification.

pub mod sigv4;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use std::time::{Duration, Instant};

use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use tokio::sync::Mutex;

use crate::config::{Endpoint, Site, Timeouts};

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{path}: cannot read CA file: {reason}")]
    Ca { path: String, reason: String },
}

pub use crate::rejection::FailureKind;

/// One resolvable upstream endpoint with its prepared peer template.
pub struct Upstream {
    endpoint: Endpoint,
    template: HttpPeer,
    dns_ttl: Duration,
    fixed_ip: Option<IpAddr>,
    cache: ArcSwapOption<Resolved>,
    next: AtomicUsize,
    refreshing: Mutex<()>,
}

struct Resolved {
    addrs: Vec<SocketAddr>,
    at: Instant,
}

impl Upstream {
    /// `group` separates connection pools of peers with different trust (see DESIGN.md).
    pub fn new(
        endpoint: &Endpoint,
        site: &Site,
        group: u64,
        dns_ttl: Duration,
        h2: bool,
    ) -> Result<Self, UpstreamError> {
        let mut peer = HttpPeer::new(
            SocketAddr::from(([0, 0, 0, 0], endpoint.port)),
            endpoint.tls,
            endpoint.host.clone(),
        );
        apply_timeouts(&mut peer, &site.timeouts);
        peer.options.alpn = if h2 { ALPN::H2H1 } else { ALPN::H1 };
        peer.group_key = group;
        // A site's own trust anchors replace the system roots for its upstream only.
        if let Some(path) = &site.upstream_ca_file {
            let cas = read_ca_file(path)?;
            let list: Vec<WrappedX509> = cas
                .into_iter()
                .map(|der| WrappedX509::new(der, pingora::utils::tls::parse_x509))
                .collect();
            peer.options.ca = Some(Arc::from(list.into_boxed_slice()));
        }
        Ok(Self {
            endpoint: endpoint.clone(),
            template: peer,
            dns_ttl,
            fixed_ip: endpoint.host.parse().ok(),
            cache: ArcSwapOption::empty(),
            next: AtomicUsize::new(0),
            refreshing: Mutex::new(()),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// How many addresses the last lookup gave (1 for an IP address).
    pub fn address_count(&self) -> usize {
        if self.fixed_ip.is_some() {
            return 1;
        }
        self.cache.load().as_ref().map_or(1, |r| r.addrs.len())
    }

    /// A peer for one request: the template with a resolved address (round-robin over the
    /// addresses of the last lookup). A failed lookup keeps using the last good addresses.
    pub async fn peer(&self) -> Result<Box<HttpPeer>, UpstreamError> {
        let addr = self.resolve().await?;
        let mut peer = self.template.clone();
        peer._address = pingora::protocols::l4::socket::SocketAddr::Inet(addr);
        Ok(Box::new(peer))
    }

    async fn resolve(&self) -> Result<SocketAddr, UpstreamError> {
        if let Some(ip) = self.fixed_ip {
            return Ok(SocketAddr::new(ip, self.endpoint.port));
        }
        let fresh = |r: &Resolved| r.at.elapsed() < self.dns_ttl;
        let current = match self.cache.load_full() {
            Some(r) if fresh(&r) => r,
            _ => self.refresh().await?,
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(current.addrs[n % current.addrs.len()])
    }

    /// Look the host up again (one lookup at a time; others reuse its answer).
    async fn refresh(&self) -> Result<Arc<Resolved>, UpstreamError> {
        let _one = self.refreshing.lock().await;
        if let Some(r) = self
            .cache
            .load_full()
            .filter(|r| r.at.elapsed() < self.dns_ttl)
        {
            return Ok(r);
        }
        let host = self.endpoint.host.as_str();
        let reason = match tokio::net::lookup_host((host, self.endpoint.port)).await {
            Ok(it) => {
                let addrs: Vec<SocketAddr> = it.collect();
                if !addrs.is_empty() {
                    let r = Arc::new(Resolved {
                        addrs,
                        at: Instant::now(),
                    });
                    self.cache.store(Some(r.clone()));
                    return Ok(r);
                }
                "no addresses".to_string()
            }
            Err(e) => e.to_string(),
        };
        match self.cache.load_full() {
            // Keep serving the last good answer for another TTL rather than fail traffic.
            Some(old) => {
                tracing::warn!(%host, %reason, "DNS lookup failed; keeping the previous addresses");
                let r = Arc::new(Resolved {
                    addrs: old.addrs.clone(),
                    at: Instant::now(),
                });
                self.cache.store(Some(r.clone()));
                Ok(r)
            }
            None => Err(UpstreamError::Resolve {
                host: host.to_string(),
                reason,
            }),
        }
    }
}

fn apply_timeouts(peer: &mut HttpPeer, t: &Timeouts) {
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect);
    peer.options.read_timeout = Some(t.read);
    peer.options.write_timeout = Some(t.write);
    peer.options.idle_timeout = Some(t.idle);
}

/// DER certificates from a PEM file.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, UpstreamError> {
    let err = |reason: String| UpstreamError::Ca {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// A reqwest client for what the edge fetches itself on a site's behalf (background refreshes,
/// token issuers' keys): rustls, the site's timeouts, no redirects, and the same trust as its
/// proxied requests (`extra_ca` replaces the system roots when given).
pub fn side_client(site: &Site, extra_ca: &[Vec<u8>]) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(site.timeouts.connect)
        .timeout(site.timeouts.read + site.timeouts.connect)
        .redirect(reqwest::redirect::Policy::none())
        .tls_built_in_root_certs(false);
    let cas: Vec<Vec<u8>> = if extra_ca.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
            return Err(format!("no system CA certificates: {}", why.join("; ")));
        }
        found.certs.into_iter().map(|c| c.to_vec()).collect()
    } else {
        extra_ca.to_vec()
    };
    for der in cas {
        if let Ok(c) = reqwest::Certificate::from_der(&der) {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| e.to_string())
}
