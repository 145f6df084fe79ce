//! Configuration: the TOML file (`config/file.rs`) validated into the runtime types the rest of
//! graphfront uses. Every error names the key path and the line; no error echoes a secret.

pub mod admin;
pub mod apq;
pub mod auth;
pub mod cache;
pub mod cors;
mod file;
mod locate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use file::{AcmeFile, SiteFile, SiteTlsFile, TimeoutsFile};
pub use file::{ChallengeKind, FileConfig};
pub use locate::KeyPath;

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

/// WebSockets of a site (see `WebSocketFile`).
#[derive(Debug, Clone)]
pub struct WebSocketPolicy {
    pub rewrite_host: bool,
    /// Lower-case origins; empty: any.
    pub allowed_origins: Vec<String>,
    pub paths: Vec<String>,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub max_frame: usize,
    pub max_message: usize,
    pub connection_init_timeout: Duration,
    pub idle_timeout: Duration,
}

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

/// One fronted API.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    pub domains: Vec<String>,
    pub upstream: Endpoint,
    pub realtime: Endpoint,
    pub graphql_path: String,
    pub realtime_path: String,
    pub max_body: Option<u64>,
    pub certificate: CertSource,
    pub websocket: WebSocketPolicy,
    pub upstream_ca_file: Option<PathBuf>,
    pub upstream_h2: bool,
    /// GraphQL GETs go upstream as the equivalent POST (AppSync takes POST only).
    pub get_as_post: bool,
    pub timeouts: Timeouts,
    pub cache: cache::CachePolicy,
    pub limits: crate::graphql::Limits,
    pub cors: Option<cors::Cors>,
    pub csrf: bool,
    pub csrf_required_headers: Vec<http::HeaderName>,
    pub auth: Option<auth::Auth>,
    pub upstream_signing: Option<auth::Signing>,
    pub apq: apq::Apq,
}

/// An upstream URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, e.g. `/graphql`.
    pub path: String,
    /// The `Host` header the upstream expects (`host` or `host:port` off the default port).
    pub host_header: String,
    /// `path` as a request URI, prepared once.
    pub path_uri: http::Uri,
}

impl Endpoint {
    fn new(url: String, tls: bool, host: String, port: u16, path: String) -> Result<Self, String> {
        let default_port = if tls { 443 } else { 80 };
        let host_header = if port == default_port {
            host.clone()
        } else if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path_uri = path
            .parse()
            .map_err(|e| format!("`{path}` is not a valid request path: {e}"))?;
        Ok(Self {
            url,
            tls,
            host,
            port,
            path,
            host_header,
            path_uri,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
}

impl From<&TimeoutsFile> for Timeouts {
    fn from(t: &TimeoutsFile) -> Self {
        Self {
            connect: t.connect,
            read: t.read,
            write: t.write,
            idle: t.idle,
        }
    }
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

    fn config(&mut self, f: FileConfig) -> Config {
        let root = KeyPath::root();
        let listeners = root.key("listeners");
        if f.server.threads == 0 {
            self.problem(root.key("server").key("threads"), "must be at least 1");
        }
        let https = self.addrs(listeners.key("https"), &f.listeners.https);
        if https.is_empty() {
            self.problem(
                listeners.key("https"),
                "at least one https address is needed",
            );
        }
        let http = self.addrs(listeners.key("http"), &f.listeners.http);
        let admin = self
            .addr(listeners.key("admin"), &f.listeners.admin)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9180)));

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
        let acme = self.acme(&f.acme, &sites, !http.is_empty());
        self.unique_names_and_domains(&f.sites);

        let fallback_site = f.tls.fallback_site.as_ref().and_then(|name| {
            let found = f.sites.iter().position(|s| &s.name == name);
            if found.is_none() {
                self.problem(
                    root.key("tls").key("fallback-site"),
                    format!("no site is named `{name}`"),
                );
            }
            found
        });

        if let Err(e) = crate::logging::check_directives(&f.log.level) {
            self.problem(root.key("log").key("level"), e);
        }
        let clients = self.client_limits(&f);
        Config {
            threads: f.server.threads.max(1),
            state_dir: self.resolve(&f.server.state_dir),
            pid_file: f.server.pid_file,
            upgrade_socket: f.server.upgrade_socket,
            grace_period: f.server.grace_period,
            drain_notice: f.server.drain_notice,
            graceful_shutdown_timeout: f.server.graceful_shutdown_timeout,
            dns_ttl: f.server.dns_ttl,
            upstream_ca_file: f.server.upstream_ca_file.map(|p| self.resolve(&p)),
            access_log: f.server.access_log,
            log_level: f.log.level,
            log_format: f.log.format,
            https,
            http,
            admin,
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

    fn client_limits(&mut self, f: &FileConfig) -> ClientLimits {
        let t = &f.timeouts;
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
        let max_request_header = f.listeners.max_request_header.as_u64();
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
            max_connections_per_client: f.listeners.max_connections_per_client,
        }
    }

    fn unique_names_and_domains(&mut self, sites: &[SiteFile]) {
        let mut names = std::collections::HashMap::new();
        let mut domains = std::collections::HashMap::new();
        for (i, s) in sites.iter().enumerate() {
            let at = KeyPath::root().key("site").index(i);
            if let Some(j) = names.insert(s.name.clone(), i) {
                self.problem(
                    at.key("name"),
                    format!("`{}` is also the name of site[{j}]", s.name),
                );
            }
            for (k, d) in s.domains.iter().enumerate() {
                if let Some(j) = domains.insert(d.to_ascii_lowercase(), i) {
                    self.problem(
                        at.key("domains").index(k),
                        format!("`{d}` is also served by site[{j}]"),
                    );
                }
            }
        }
    }

    /// `[acme]`, and what the `tls = "acme"` sites need from it and from the listeners.
    fn acme(&mut self, f: &AcmeFile, sites: &[Arc<Site>], http_listener: bool) -> Acme {
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
        let ca_file = f.ca_file.as_ref().map(|p| self.resolve(p));
        if let Some(p) = &ca_file {
            if !p.is_file() {
                self.problem(
                    at.key("ca-file"),
                    format!("{} is not a readable file", p.display()),
                );
            }
        }
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

    fn websocket(
        &mut self,
        at: KeyPath,
        w: &file::WebSocketFile,
        upstream: Option<&Endpoint>,
    ) -> WebSocketPolicy {
        for (i, p) in w.paths.iter().enumerate() {
            if !p.starts_with('/') || p.contains('?') {
                self.problem(
                    at.key("paths").index(i),
                    "must start with '/' and hold no query",
                );
            }
        }
        for (key, n) in [
            ("max-connections", w.max_connections),
            ("max-connections-per-client", w.max_connections_per_client),
            ("max-frame", w.max_frame.as_u64() as usize),
            ("max-message", w.max_message.as_u64() as usize),
        ] {
            if n == 0 {
                self.problem(at.key(key), "must be more than 0");
            }
        }
        let appsync = upstream.is_some_and(|u| u.host.contains(".appsync-api."));
        WebSocketPolicy {
            rewrite_host: w.rewrite_host.unwrap_or(appsync),
            allowed_origins: w
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            paths: w.paths.clone(),
            max_connections: w.max_connections,
            max_connections_per_client: w.max_connections_per_client,
            max_frame: w.max_frame.as_u64() as usize,
            max_message: w.max_message.as_u64() as usize,
            connection_init_timeout: w.connection_init_timeout,
            idle_timeout: w.idle_timeout,
        }
    }

    fn certificate(
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
                let (cert, key) = (self.resolve(cert), self.resolve(key));
                for (name, p) in [("cert", &cert), ("key", &key)] {
                    if !p.is_file() {
                        self.problem(
                            at.key(name),
                            format!("{} is not a readable file", p.display()),
                        );
                    }
                }
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

    fn site(
        &mut self,
        at: KeyPath,
        s: &SiteFile,
        default_challenges: &[ChallengeKind],
    ) -> Option<Site> {
        let before = self.problems.len();
        if s.name.is_empty()
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.problem(
                at.key("name"),
                "use letters, digits, '-' and '_' only (it becomes a metric label)",
            );
        }
        if s.domains.is_empty() {
            self.problem(at.key("domains"), "list at least one domain");
        }
        let domains: Vec<String> = s.domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        for (i, d) in domains.iter().enumerate() {
            if let Err(why) = check_domain(d) {
                self.problem(at.key("domains").index(i), why);
            }
        }
        let upstream = self.endpoint(at.key("upstream"), &s.upstream, &["https", "http"]);
        let realtime = match &s.realtime_upstream {
            Some(url) => self.endpoint(at.key("realtime-upstream"), url, &["wss", "ws"]),
            None => upstream.as_ref().and_then(|u| {
                default_realtime(u, &s.realtime_path)
                    .map_err(|why| self.problem(at.key("realtime-path"), why))
                    .ok()
            }),
        };
        for (key, p) in [
            ("graphql-path", &s.graphql_path),
            ("realtime-path", &s.realtime_path),
        ] {
            if !p.starts_with('/') || p.contains('?') {
                self.problem(at.key(key), "must start with '/' and hold no query");
            }
        }
        let get_as_post = match s.upstream_method {
            Some(m) => m == file::UpstreamMethod::Post,
            None => upstream
                .as_ref()
                .is_some_and(|u| u.host.contains(".appsync-api.")),
        };
        let max_body = s.max_body.map(|b| b.as_u64());
        if max_body == Some(0) {
            self.problem(
                at.key("max-body"),
                "must be more than 0 (omit it for no limit)",
            );
        }
        let certificate = self.certificate(at.key("tls"), &s.tls.0, default_challenges);
        let websocket = self.websocket(at.key("websocket"), &s.websocket, upstream.as_ref());
        let upstream_ca_file = s.upstream_ca_file.as_ref().map(|p| self.resolve(p));
        if let Some(p) = &upstream_ca_file {
            if !p.is_file() {
                self.problem(
                    at.key("upstream-ca-file"),
                    format!("{} is not a readable file", p.display()),
                );
            }
        }
        for (key, d) in [
            ("connect", s.timeouts.connect),
            ("read", s.timeouts.read),
            ("write", s.timeouts.write),
        ] {
            if d.is_zero() {
                self.problem(at.key("timeouts").key(key), "must be more than 0s");
            }
        }
        let cache = self.cache_policy(at.key("cache"), &s.cache, s.auth.is_some());
        let cors = s.cors.as_ref().and_then(|c| self.cors(at.key("cors"), c));
        let upstream_host = upstream.as_ref().map_or("", |u| u.host.as_str());
        let auth = s
            .auth
            .as_ref()
            .map(|a| self.auth(at.key("auth"), a, upstream_host));
        let upstream_signing = s
            .upstream_signing
            .as_ref()
            .and_then(|f| self.signing(at.key("upstream-signing"), f, upstream_host));
        if upstream_signing.is_some() && auth.as_ref().is_some_and(|a| a.iam.is_some()) {
            // The edge cannot verify a client's SigV4 signature; re-signing would let any
            // well-formed one through.
            self.problem(
                at.key("auth").key("iam"),
                "IAM clients cannot be accepted when the edge signs upstream requests itself \
                 (their signatures would never be verified); use another mode for clients",
            );
        }
        let mut csrf_required_headers = Vec::new();
        for (i, h) in s.csrf_required_headers.iter().enumerate() {
            match http::HeaderName::try_from(h.as_str()) {
                Ok(name) => csrf_required_headers.push(name),
                Err(_) => self.problem(
                    at.key("csrf-required-headers").index(i),
                    format!("`{h}` is not a header name"),
                ),
            }
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Site {
            name: s.name.clone(),
            domains,
            upstream: upstream?,
            realtime: realtime?,
            graphql_path: s.graphql_path.clone(),
            realtime_path: s.realtime_path.clone(),
            max_body,
            certificate: certificate?,
            websocket,
            upstream_ca_file,
            upstream_h2: s.upstream_h2,
            get_as_post,
            timeouts: (&s.timeouts).into(),
            cache,
            limits: limits_of(&s.limits),
            cors,
            csrf: s.csrf,
            csrf_required_headers,
            auth,
            upstream_signing,
            apq: self.apq(at.key("apq"), &s.apq),
        })
    }

    fn endpoint(&mut self, at: KeyPath, raw: &str, schemes: &[&str]) -> Option<Endpoint> {
        match parse_endpoint(raw, schemes) {
            Ok(e) => Some(e),
            Err(why) => {
                self.problem(at, why);
                None
            }
        }
    }
}

fn limits_of(l: &file::LimitsFile) -> crate::graphql::Limits {
    fn some<T: PartialEq + Default>(v: T) -> Option<T> {
        (v != T::default()).then_some(v)
    }
    crate::graphql::Limits {
        max_depth: some(l.max_depth),
        max_aliases: some(l.max_aliases),
        max_root_fields: some(l.max_root_fields),
        max_fields: some(l.max_fields),
        max_directives: some(l.max_directives_per_field),
        max_tokens: some(l.max_tokens),
        introspection: l.introspection,
    }
}

/// Check a configured domain: a host name, or `*.` followed by one.
fn check_domain(d: &str) -> Result<(), String> {
    let host = d.strip_prefix("*.").unwrap_or(d);
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(ok_label) {
        return Err(format!(
            "`{d}` is not a host name or a wildcard like *.example.com"
        ));
    }
    Ok(())
}

/// Take an upstream URL apart; only the listed schemes are accepted.
pub fn parse_endpoint(raw: &str, schemes: &[&str]) -> Result<Endpoint, String> {
    let shown = redact_userinfo(raw);
    let url = url::Url::parse(raw).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "`{shown}`: the scheme must be one of {}",
            schemes.join(", ")
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(format!("`{shown}` has no host")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed; use the auth settings".into());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    Endpoint::new(
        raw.to_string(),
        matches!(url.scheme(), "https" | "wss"),
        host,
        port,
        path,
    )
}

/// A URL as it may be shown in an error: without `user:password@`.
fn redact_userinfo(raw: &str) -> String {
    match (raw.find("://"), raw.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &raw[..s], &raw[at + 1..]),
        _ => raw.to_string(),
    }
}

/// AppSync serves subscriptions on a sibling host: `<id>.appsync-api.<region>.amazonaws.com` →
/// `<id>.appsync-realtime-api.<region>.amazonaws.com`. Other upstreams: same origin, `realtime_path`.
fn default_realtime(up: &Endpoint, realtime_path: &str) -> Result<Endpoint, String> {
    let appsync = up.host.split_once(".appsync-api.").filter(|(_, rest)| {
        rest.ends_with(".amazonaws.com") || rest.ends_with(".amazonaws.com.cn")
    });
    match appsync {
        Some((id, rest)) => {
            let host = format!("{id}.appsync-realtime-api.{rest}");
            let url = format!("wss://{host}/graphql");
            Endpoint::new(url, true, host, 443, "/graphql".into())
        }
        None => {
            let scheme = if up.tls { "wss" } else { "ws" };
            let url = format!("{scheme}://{}:{}{realtime_path}", up.host, up.port);
            let (host, port) = (up.host.clone(), up.port);
            Endpoint::new(url, up.tls, host, port, realtime_path.to_string())
        }
    }
}

#[cfg(test)]
mod tests;
