//! `[server]`, `[listeners]`, `[timeouts]` and `[log]`: the process, where it listens and what
//! clients of the https listeners are held to, as written in the file and validated.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::value::ReadableFile;
use super::{KeyPath, Validator};

/// `[server]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerFile {
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Directory for state that must survive restarts (ACME account, issued certificates).
    pub state_dir: PathBuf,
    /// Pid file (used by graceful upgrades).
    pub pid_file: PathBuf,
    /// Unix socket over which a new process takes the listening sockets of the old one.
    pub upgrade_socket: PathBuf,
    /// After SIGTERM (or handing the sockets to a new process), how long in-flight requests get
    /// to finish; the process exits as soon as none is left.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// On SIGTERM, how long graphfront keeps serving (every answer with `Connection: close`,
    /// `/readyz` 503 with `"draining": true`) before it stops accepting, so load balancers see
    /// it leave. Set it to the health checks' interval times their failure threshold.
    #[serde(with = "humantime_serde")]
    pub drain_notice: Duration,
    /// After the grace period, how long the runtimes get to stop.
    #[serde(with = "humantime_serde")]
    pub graceful_shutdown_timeout: Duration,
    /// How long a resolved upstream address is reused before it is looked up again.
    #[serde(with = "humantime_serde")]
    pub dns_ttl: Duration,
    /// Trust anchors (PEM) for upstream TLS instead of the system roots (`SSL_CERT_FILE` is
    /// honoured when this is not set).
    pub upstream_ca_file: Option<ReadableFile>,
    /// Access log: "on" (one event per request), "off".
    pub access_log: bool,
}

impl Default for ServerFile {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            state_dir: PathBuf::from("/var/lib/graphfront"),
            pid_file: PathBuf::from("/run/graphfront/graphfront.pid"),
            upgrade_socket: PathBuf::from("/run/graphfront/upgrade.sock"),
            grace_period: Duration::from_secs(30),
            drain_notice: Duration::ZERO,
            graceful_shutdown_timeout: Duration::from_secs(5),
            dns_ttl: Duration::from_secs(30),
            upstream_ca_file: None,
            access_log: true,
        }
    }
}

/// `[listeners]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenersFile {
    /// HTTPS addresses (TLS terminated here, h2 and http/1.1).
    pub https: Vec<String>,
    /// Plain HTTP addresses: 308 redirect to https (and ACME HTTP-01). Empty to disable.
    pub http: Vec<String>,
    /// Admin listener (metrics, health, admin API). Keep it on loopback or a private network.
    pub admin: String,
    /// Offer HTTP/2 through ALPN on the https listeners.
    pub h2: bool,
    /// Largest HTTP/1 request head (request line and headers); 431 above. HTTP/2 header
    /// lists have the same limit.
    pub max_request_header: ByteSize,
    /// Connections one client address may hold open on the https listeners (TLS handshakes
    /// included); 0: no limit.
    pub max_connections_per_client: usize,
}

impl Default for ListenersFile {
    fn default() -> Self {
        Self {
            https: vec!["0.0.0.0:443".into()],
            http: vec!["0.0.0.0:80".into()],
            admin: "127.0.0.1:9180".into(),
            h2: true,
            max_request_header: ByteSize::kib(64),
            max_connections_per_client: 256,
        }
    }
}

/// `[log]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogFile {
    /// Level or `tracing` filter directives ("info", "warn,graphfront=debug").
    pub level: String,
    /// auto (text on a terminal, JSON under journald), text or json.
    pub format: crate::logging::Format,
}

impl Default for LogFile {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: crate::logging::Format::Auto,
        }
    }
}

/// Client-side deadlines on the https listeners: each is a total, not a time between reads.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientTimeoutsFile {
    /// From accepting a connection to the end of its TLS handshake.
    #[serde(with = "humantime_serde")]
    pub tls_handshake: Duration,
    /// For an HTTP/1 request head, from its first byte (from the handshake, for a
    /// connection's first request); 408 and close when exceeded.
    #[serde(with = "humantime_serde")]
    pub request_header: Duration,
    /// For a request body the edge reads (GraphQL POSTs), HTTP/1 and HTTP/2; 408 when exceeded.
    #[serde(with = "humantime_serde")]
    pub request_body: Duration,
}

impl Default for ClientTimeoutsFile {
    fn default() -> Self {
        Self {
            tls_handshake: Duration::from_secs(10),
            request_header: Duration::from_secs(10),
            request_body: Duration::from_secs(30),
        }
    }
}

/// Deadlines and caps for clients of the https listeners (`[timeouts]`, `[listeners]`).
#[derive(Debug, Clone)]
pub struct ClientLimits {
    pub tls_handshake: Duration,
    pub request_header: Duration,
    pub request_body: Duration,
    pub max_request_header: usize,
    /// 0: no limit.
    pub max_connections_per_client: usize,
}

/// The listening addresses of `[listeners]`.
pub(super) struct ListenAddrs {
    pub https: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    pub admin: SocketAddr,
}

impl Validator<'_> {
    pub(super) fn server(&mut self, f: &ServerFile) {
        if f.threads == 0 {
            self.problem(
                KeyPath::root().key("server").key("threads"),
                "must be at least 1",
            );
        }
    }

    pub(super) fn listen_addrs(&mut self, f: &ListenersFile) -> ListenAddrs {
        let listeners = KeyPath::root().key("listeners");
        let https = self.addrs(listeners.key("https"), &f.https);
        if https.is_empty() {
            self.problem(
                listeners.key("https"),
                "at least one https address is needed",
            );
        }
        let http = self.addrs(listeners.key("http"), &f.http);
        let admin = self
            .addr(listeners.key("admin"), &f.admin)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9180)));
        ListenAddrs { https, http, admin }
    }

    pub(super) fn log(&mut self, f: &LogFile) {
        if let Err(e) = crate::logging::check_directives(&f.level) {
            self.problem(KeyPath::root().key("log").key("level"), e);
        }
    }

    fn addr(&mut self, path: KeyPath, s: &str) -> Option<SocketAddr> {
        match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(
                    path,
                    format!("`{s}` is not an address like 0.0.0.0:443 or [::]:443"),
                );
                None
            }
        }
    }

    fn addrs(&mut self, path: KeyPath, list: &[String]) -> Vec<SocketAddr> {
        list.iter()
            .enumerate()
            .filter_map(|(i, s)| self.addr(path.index(i), s))
            .collect()
    }

    pub(super) fn client_limits(
        &mut self,
        t: &ClientTimeoutsFile,
        l: &ListenersFile,
    ) -> ClientLimits {
        for (key, d) in [
            ("tls-handshake", t.tls_handshake),
            ("request-header", t.request_header),
            ("request-body", t.request_body),
        ] {
            if d.is_zero() {
                self.problem(
                    KeyPath::root().key("timeouts").key(key),
                    "must be more than 0s",
                );
            }
        }
        let max_request_header = l.max_request_header.as_u64();
        if !(1024..=512 * 1024).contains(&max_request_header) {
            self.problem(
                KeyPath::root().key("listeners").key("max-request-header"),
                "must be between 1KiB and 512KiB",
            );
        }
        ClientLimits {
            tls_handshake: t.tls_handshake,
            request_header: t.request_header,
            request_body: t.request_body,
            max_request_header: max_request_header as usize,
            max_connections_per_client: l.max_connections_per_client,
        }
    }
}
