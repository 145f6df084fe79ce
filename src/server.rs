//! Assembles the pingora server from a validated configuration: the https proxy with the
//! certificate store, the port-80 redirect, the admin listener and the certificate watcher.

pub mod lifecycle;

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use pingora::listeners::Listeners;

use crate::acme::{AlpnChallengeHook, Challenges, Manager};
use crate::admin::{AdminApp, RedirectApp};
use crate::cache::ResponseCache;
use crate::config::{ClientLimits, Config};
use crate::listener::{Clients, HeadGuard, PreTls};
use crate::proxy::Edge;
use crate::routing::SiteTable;
use crate::tls::{CertStore, HandshakeHook};

/// Every address the process listens on (https, http, admin) that cannot be bound now, with
/// why: `cannot listen on 127.0.0.1:443: address in use`. Bound as pingora binds (with
/// SO_REUSEADDR), then released at once.
pub fn unbindable(config: &Config) -> Vec<String> {
    let addrs = config
        .https
        .iter()
        .chain(&config.http)
        .chain(std::iter::once(&config.admin));
    addrs
        .filter_map(|addr| {
            try_listen(*addr)
                .err()
                .map(|e| format!("cannot listen on {addr}: {}", bind_error(&e)))
        })
        .collect()
}

fn try_listen(addr: std::net::SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1)
}

fn bind_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => "address in use".into(),
        std::io::ErrorKind::AddrNotAvailable => "no such address on this host".into(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)".into()
        }
        _ => e.to_string(),
    }
}

/// Build the server. Certificates are loaded before any listener starts; a site whose
/// certificate cannot be loaded fails its handshakes (and `/readyz`) but not the others.
pub fn build(config: Config, upgrade: bool) -> anyhow::Result<Server> {
    let config = Arc::new(config);
    let conf = ServerConf {
        threads: config.threads,
        work_stealing: false,
        grace_period_seconds: Some(config.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.graceful_shutdown_timeout.as_secs()),
        pid_file: config.pid_file.display().to_string(),
        upgrade_sock: config.upgrade_socket.display().to_string(),
        ca_file: config
            .upstream_ca_file
            .as_ref()
            .map(|p| p.display().to_string()),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    // Before the bootstrap: during an upgrade it waits for the old process's sockets, and
    // `run --daemon` (ExecReload) returns on this file so SIGQUIT can be sent to the old one.
    crate::daemon::write_pid_file(&config.pid_file)
        .map_err(|e| anyhow::anyhow!("cannot write pid file {}: {e}", config.pid_file.display()))?;
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let certs = Arc::new(CertStore::new(&config));
    let (_, errors) = certs.reload_from_files(&config, true);
    for e in errors {
        tracing::error!(error = %e, "starting without this certificate");
    }
    let challenges = Arc::new(Challenges::new());
    let acme = Manager::needed(&config).then(|| {
        let manager = Arc::new(Manager::new(
            config.clone(),
            certs.clone(),
            challenges.clone(),
        ));
        manager.load_stored();
        manager
    });

    let cache = Arc::new(ResponseCache::new(config.cache_max_size));
    let edge = Edge::new(&config, cache.clone())?;
    let mut listeners = Listeners::new();
    // Client limits, and TLS-ALPN-01 validations answered before pingora's handshake.
    let alpn = acme.is_some().then(|| AlpnChallengeHook {
        challenges: challenges.clone(),
    });
    let clients = Arc::new(Clients::new(config.clients.clone(), alpn));
    listeners.set_pre_tls_callback(Arc::new(PreTls(clients)));
    let mut http = pingora::proxy::http_proxy(&server.configuration, edge);
    let mut options = pingora::apps::HttpServerOptions::default();
    // An HTTP/2 connection without streams is closed like an idle HTTP/1 one.
    options.h2_idle_timeout = Some(KEEPALIVE);
    http.server_options = Some(options);
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.max_header_list_size(config.clients.max_request_header as u32);
    http.h2_options = Some(h2);
    let mut proxy = Service::with_listeners(
        "graphfront https".into(),
        listeners,
        Lingering {
            inner: Arc::new(http),
            limits: config.clients.clone(),
        },
    );
    for addr in &config.https {
        let mut tls = TlsSettings::with_callbacks(Box::new(HandshakeHook {
            store: certs.clone(),
            established: crate::listener::established,
        }))?;
        tls.set_cert_resolver(certs.clone());
        if config.h2 {
            tls.enable_h2();
        }
        proxy.add_tls_with_settings(&addr.to_string(), None, tls);
    }
    server.add_service(proxy);

    if !config.http.is_empty() {
        let https_port = config.https.first().map(|a| a.port()).filter(|&p| p != 443);
        let app = RedirectApp {
            table: SiteTable::new(config.sites.iter().map(|s| s.as_ref())),
            https_port,
            challenges,
        };
        let mut redirect = Service::new(
            "graphfront http".into(),
            pingora::apps::http_app::HttpServer::new_app(app),
        );
        for addr in &config.http {
            redirect.add_tcp(&addr.to_string());
        }
        server.add_service(redirect);
    }

    let admin = AdminApp {
        config: config.clone(),
        certs: certs.clone(),
        cache,
        acme: acme.clone(),
    };
    let mut admin_service = Service::new(
        "graphfront admin".into(),
        pingora::apps::http_app::HttpServer::new_app(admin),
    );
    admin_service.add_tcp(&config.admin.to_string());
    server.add_service(admin_service);

    server.add_service(background_service(
        "drain watcher",
        DrainWatcher {
            pid_file: config.pid_file.clone(),
        },
    ));
    if let Some(manager) = acme {
        server.add_service(background_service("acme", AcmeService(manager)));
    }
    if !config.cert_reload_interval.is_zero() {
        server.add_service(background_service(
            "certificate watcher",
            CertWatcher { config, certs },
        ));
    }
    Ok(server)
}

/// Obtains and renews the certificates of `tls = "acme"` sites.
struct AcmeService(Arc<Manager>);

#[async_trait::async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, shutdown: pingora::server::ShutdownWatch) {
        self.0.clone().run(shutdown).await;
    }
}

/// Polls the certificate files and swaps in changed ones.
struct CertWatcher {
    config: Arc<Config>,
    certs: Arc<CertStore>,
}

#[async_trait::async_trait]
impl BackgroundService for CertWatcher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut tick = tokio::time::interval(self.config.cert_reload_interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.certs.reload_from_files(&self.config, false);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Once a graceful stop begins (SIGTERM, or SIGQUIT after the sockets went to a new process),
/// the proxy stops accepting and closes idle connections; this exits as soon as no request
/// (WebSockets included) and no client connection is left, instead of sleeping out the whole
/// grace period. What is
/// still running when the grace period ends is cut by pingora.
struct DrainWatcher {
    pid_file: std::path::PathBuf,
}

#[async_trait::async_trait]
impl BackgroundService for DrainWatcher {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        let started = std::time::Instant::now();
        let m = crate::metrics::get();
        tracing::info!(
            in_flight = m.in_flight.get(),
            connections = m.connections_open.get(),
            "stopping: draining"
        );
        // Connections too: an h2 client may still open streams until pingora's final GOAWAY.
        while m.in_flight.get() > 0 || m.connections_open.get() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::info!(after = ?started.elapsed(), "drained, exiting");
        crate::daemon::remove_pid_file(&self.pid_file);
        crate::logging::flush();
        std::process::exit(0);
    }
}

/// pingora's signals (SIGQUIT: hand the sockets over and stop; SIGTERM: stop gracefully;
/// SIGINT: stop now), with draining started as soon as a graceful one arrives. After SIGTERM
/// the listeners keep accepting for `drain_notice` (a SIGINT cuts it short), so `/readyz`
/// can tell load balancers first.
pub struct Signals {
    pub drain_notice: std::time::Duration,
}

#[async_trait::async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let received = tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => ShutdownSignal::FastShutdown,
        };
        if !matches!(received, ShutdownSignal::FastShutdown) {
            lifecycle::begin_draining();
        }
        tracing::info!(signal = ?received, "stopping");
        if matches!(received, ShutdownSignal::GracefulTerminate) && !self.drain_notice.is_zero() {
            tracing::info!(notice = ?self.drain_notice, "draining: /readyz answers 503 before the listeners close");
            tokio::select! {
                _ = tokio::time::sleep(self.drain_notice) => {}
                _ = int.recv() => return ShutdownSignal::FastShutdown,
            }
        }
        received
    }
}

/// How long, after the listeners stop accepting, connections the proxy already holds may
/// still send a request before pingora drops the idle ones.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// How long an idle client connection is kept (pingora's HTTP/1 keep-alive).
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// The proxy app, with pingora's shutdown cleanup (which drops every connection waiting for a
/// request) held back by `LINGER` after the listeners stop. A connection accepted just before
/// (its request still on the way) or a keep-alive client sending its next request gets an
/// answer with `Connection: close` instead of a dropped connection.
///
/// HTTP/1 connections are served here, request after request as pingora's own loop does, so
/// that each request head is timed and measured (`listener::HeadGuard`); HTTP/2 goes to
/// pingora as it is.
struct Lingering<A> {
    inner: Arc<A>,
    limits: ClientLimits,
}

#[async_trait::async_trait]
impl<A: pingora::apps::HttpServerApp + Send + Sync + 'static> pingora::apps::ServerApp
    for Lingering<A>
{
    async fn process_new(
        self: &Arc<Self>,
        stream: pingora::protocols::Stream,
        shutdown: &pingora::server::ShutdownWatch,
    ) -> Option<pingora::protocols::Stream> {
        use pingora::protocols::http::ServerSession;
        if crate::listener::is_h2(&stream) {
            return self.inner.process_new(stream, shutdown).await;
        }
        let (guard, next) = HeadGuard::new(stream, &self.limits);
        let mut session = ServerSession::new_http1(Box::new(guard));
        session.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE.as_secs()));
        loop {
            let reused = self.inner.process_new_http(session, shutdown).await?;
            let (stream, settings) = reused.consume();
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            next.expect();
        }
    }

    async fn cleanup(&self) {
        tokio::time::sleep(LINGER).await;
        self.inner.cleanup().await;
    }
}
