//! Assembles the pingora server from a validated configuration: the https proxy with the
//! certificate store, the port-80 redirect, the admin listener and the certificate watcher.

use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::{AdminApp, RedirectApp};
use crate::cache::ResponseCache;
use crate::config::Config;
use crate::proxy::Edge;
use crate::routing::SiteTable;
use crate::tls::{CertStore, HandshakeHook};

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
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let certs = Arc::new(CertStore::new(&config));
    let (_, errors) = certs.reload_from_files(&config, true);
    for e in errors {
        tracing::error!(error = %e, "starting without this certificate");
    }

    let cache = Arc::new(ResponseCache::new(config.cache_max_size));
    let edge = Edge::new(&config, cache.clone())?;
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        edge,
        "graphfront https",
    );
    for addr in &config.https {
        let mut tls = TlsSettings::with_callbacks(Box::new(HandshakeHook {
            store: certs.clone(),
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
    };
    let mut admin_service = Service::new(
        "graphfront admin".into(),
        pingora::apps::http_app::HttpServer::new_app(admin),
    );
    admin_service.add_tcp(&config.admin.to_string());
    server.add_service(admin_service);

    if !config.cert_reload_interval.is_zero() {
        server.add_service(background_service(
            "certificate watcher",
            CertWatcher { config, certs },
        ));
    }
    Ok(server)
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
