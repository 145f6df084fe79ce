//! Configuration: the TOML file validated into the runtime types the rest of graphfront uses;
//! each concern's file (`config/{server,site,tls,...}.rs`) holds its file struct, runtime type
//! and checks. Every error names the key path and the line; no error echoes a secret.

mod acme;
pub mod admin;
pub mod apq;
pub mod auth;
pub mod cache;
pub mod cors;
mod endpoint;
mod limits;
mod locate;
mod server;
mod site;
mod tls;
mod value;
mod websocket;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use acme::{Acme, ChallengeKind};
pub use endpoint::{parse_endpoint, Endpoint};
pub use locate::KeyPath;
pub use server::ClientLimits;
pub use site::{Site, Timeouts};
pub use tls::CertSource;
pub use websocket::WebSocketPolicy;

/// Bodies up to this size are read and analysed at the edge (pingora's retry buffer).
pub const ANALYSED_BODY_LIMIT: usize = 64 * 1024;

/// A configuration problem, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One invalid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        };
        match self.line {
            Some(line) => write!(f, "{path} (line {line}): {}", self.message),
            None => write!(f, "{path}: {}", self.message),
        }
    }
}

/// The whole file, as written: serde structs that mirror `graphfront.toml` key for key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Process-wide settings.
    #[serde(default)]
    pub server: server::ServerFile,
    /// Where graphfront listens.
    #[serde(default)]
    pub listeners: server::ListenersFile,
    /// TLS settings shared by all sites.
    #[serde(default)]
    pub tls: tls::TlsFile,
    /// Certificates obtained and renewed by graphfront (sites with `tls = "acme"`).
    #[serde(default)]
    pub acme: acme::AcmeFile,
    /// The query cache shared by all sites.
    #[serde(default)]
    pub cache: cache::CacheFile,
    /// Process logs.
    #[serde(default)]
    pub log: server::LogFile,
    /// The admin API (cache purges): its bearer token.
    #[serde(default)]
    pub admin: admin::AdminFile,
    /// How long clients get for each step of a request on the https listeners.
    #[serde(default)]
    pub timeouts: server::ClientTimeoutsFile,
    /// The sites, one per fronted GraphQL API.
    #[serde(default, rename = "site")]
    pub sites: Vec<site::SiteFile>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub threads: usize,
    pub state_dir: PathBuf,
    pub pid_file: PathBuf,
    pub upgrade_socket: PathBuf,
    pub grace_period: Duration,
    pub drain_notice: Duration,
    pub graceful_shutdown_timeout: Duration,
    pub dns_ttl: Duration,
    pub upstream_ca_file: Option<PathBuf>,
    pub access_log: bool,
    /// `tracing` filter directives for the process log.
    pub log_level: String,
    pub log_format: crate::logging::Format,
    pub https: Vec<SocketAddr>,
    pub http: Vec<SocketAddr>,
    pub admin: SocketAddr,
    pub h2: bool,
    /// What clients of the https listeners are held to.
    pub clients: ClientLimits,
    pub cert_reload_interval: Duration,
    /// Index into `sites` of the site whose certificate answers unknown SNI.
    pub fallback_site: Option<usize>,
    /// Memory for the query cache, in bytes.
    pub cache_max_size: u64,
    /// How certificates of `tls = "acme"` sites are obtained.
    pub acme: Arc<Acme>,
    pub sites: Vec<Arc<Site>>,
    /// The admin API's token (`[admin]`).
    pub admin_api: admin::Admin,
}

impl Config {
    /// Read, parse and validate a configuration file. Relative paths inside it are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
    }

    /// Parse and validate configuration text; `base` resolves relative paths.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        let file: FileConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let line = e.inner().span().map(|s| locate::line_at(text, s.start));
            let path = e.path().to_string();
            ConfigError::Invalid(vec![Problem {
                path: if path == "." { String::new() } else { path },
                line,
                message: e.inner().message().to_string(),
            }])
        })?;
        let mut v = Validator {
            text,
            base,
            problems: Vec::new(),
        };
        let config = v.config(file);
        if v.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(v.problems))
        }
    }
}

/// Collects the problems of one file while its parts are converted; each concern adds its
/// own `Validator` methods in its file.
struct Validator<'a> {
    text: &'a str,
    base: &'a Path,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn problem(&mut self, path: KeyPath, message: impl Into<String>) {
        self.problems.push(Problem {
            line: locate::line_of(self.text, &path),
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn config(&mut self, f: FileConfig) -> Config {
        let root = KeyPath::root();
        self.server(&f.server);
        let listen = self.listen_addrs(&f.listeners);

        if f.sites.is_empty() {
            self.problem(root.key("site"), "at least one [[site]] is needed");
        }
        let sites: Vec<Arc<Site>> = f
            .sites
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                self.site(root.key("site").index(i), s, &f.acme.challenges)
                    .map(Arc::new)
            })
            .collect();
        let acme = self.acme(&f.acme, &sites, !listen.http.is_empty());
        self.unique_names_and_domains(&f.sites);
        let fallback_site = self.fallback_site(&f.tls, &f.sites);
        self.log(&f.log);
        let clients = self.client_limits(&f.timeouts, &f.listeners);
        Config {
            threads: f.server.threads.max(1),
            state_dir: self.resolve(&f.server.state_dir),
            pid_file: f.server.pid_file,
            upgrade_socket: f.server.upgrade_socket,
            grace_period: f.server.grace_period,
            drain_notice: f.server.drain_notice,
            graceful_shutdown_timeout: f.server.graceful_shutdown_timeout,
            dns_ttl: f.server.dns_ttl,
            upstream_ca_file: f
                .server
                .upstream_ca_file
                .as_ref()
                .map(|p| self.readable_file(root.key("server").key("upstream-ca-file"), p)),
            access_log: f.server.access_log,
            log_level: f.log.level,
            log_format: f.log.format,
            https: listen.https,
            http: listen.http,
            admin: listen.admin,
            h2: f.listeners.h2,
            clients,
            cert_reload_interval: f.tls.reload_interval,
            fallback_site,
            cache_max_size: f.cache.max_size.as_u64(),
            acme: Arc::new(acme),
            sites,
            admin_api: self.admin(&f.admin),
        }
    }
}

#[cfg(test)]
mod tests;
