//! `[[site]]`: one fronted API (its domains, upstream, paths and upstream timeouts) as written
//! in the file and validated; each of its tables is converted by its own module.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::auth::{AuthFile, SigningFile};
use super::cache::SiteCacheFile;
use super::cors::CorsFile;
use super::endpoint::{default_realtime, Endpoint};
use super::limits::{limits_of, LimitsFile};
use super::tls::{CertSource, SiteTlsEntry};
use super::value::{self, ReadableFile, UrlPath};
use super::websocket::{WebSocketFile, WebSocketPolicy};
use super::{apq, auth, cache, cors, ChallengeKind, KeyPath, Validator};

/// One fronted GraphQL API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SiteFile {
    /// Short name used in metrics and logs (letters, digits, '-', '_').
    pub name: String,
    /// Host names served, exact (`api.example.com`) or one-level wildcard (`*.example.com`).
    pub domains: Vec<String>,
    /// The upstream GraphQL endpoint, e.g. `https://<id>.appsync-api.<region>.amazonaws.com/graphql`.
    pub upstream: String,
    /// The upstream real-time (WebSocket) endpoint. Default: AppSync's realtime host for AppSync
    /// upstreams, otherwise the upstream's origin with `realtime-path`.
    #[serde(default)]
    pub realtime_upstream: Option<String>,
    /// Path of the GraphQL endpoint on the custom domain.
    #[serde(default = "default_graphql_path")]
    pub graphql_path: UrlPath,
    /// Path of the real-time endpoint on the custom domain.
    #[serde(default = "default_realtime_path")]
    pub realtime_path: UrlPath,
    /// Largest request body accepted (413 above). Bodies over 64 KiB are refused with 413 too:
    /// every forwarded body is analysed.
    #[serde(default)]
    pub max_body: Option<ByteSize>,
    /// Where this site's certificate comes from: files, or "acme".
    pub tls: SiteTlsEntry,
    /// Trust anchors (PEM) for this site's upstream only, instead of the system roots.
    #[serde(default)]
    pub upstream_ca_file: Option<ReadableFile>,
    /// Offer HTTP/2 to the upstream.
    #[serde(default)]
    pub upstream_h2: bool,
    /// How GraphQL GETs go upstream: "post" (as the equivalent JSON POST; the default for
    /// AppSync upstreams, which take POST only) or "as-sent".
    #[serde(default)]
    pub upstream_method: Option<UpstreamMethod>,
    /// Timeouts towards the upstream.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    /// What of this site's queries is answered from the edge cache.
    #[serde(default)]
    pub cache: SiteCacheFile,
    /// Operation limits checked at the edge (400 with a stable code above them).
    #[serde(default)]
    pub limits: LimitsFile,
    /// CORS answered at the edge; without this table preflights go to the upstream.
    #[serde(default)]
    pub cors: Option<CorsFile>,
    /// Refuse requests a browser could send cross-site without a preflight (Apollo's
    /// preventCsrf): a simple content type (or none) and none of `csrf-required-headers`.
    #[serde(default = "default_true")]
    pub csrf: bool,
    /// Headers any of which marks a request as not forgeable cross-site.
    #[serde(default = "default_csrf_headers")]
    pub csrf_required_headers: Vec<value::HeaderName>,
    /// Who may call this site, checked at the edge (AppSync's auth modes).
    #[serde(default)]
    pub auth: Option<AuthFile>,
    /// WebSockets: AppSync real-time on `realtime-path`, other paths forwarded as they are.
    #[serde(default)]
    pub websocket: WebSocketFile,
    /// Sign upstream requests with the edge's own AWS credentials (SigV4), for IAM-only
    /// upstreams.
    #[serde(default)]
    pub upstream_signing: Option<SigningFile>,
    /// Automatic persisted queries (Apollo's APQ) answered at the edge.
    #[serde(default)]
    pub apq: super::apq::ApqFile,
}

/// See `SiteFile::upstream_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamMethod {
    Post,
    AsSent,
}

/// `[site.timeouts]` as written: timeouts towards the upstream.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TimeoutsFile {
    /// TCP + TLS connect to the upstream.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// Longest wait for the upstream between reads (504 when exceeded before the response starts).
    #[serde(with = "humantime_serde")]
    pub read: Duration,
    /// Longest wait to write to the upstream.
    #[serde(with = "humantime_serde")]
    pub write: Duration,
    /// How long an idle pooled upstream connection is kept.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
}

impl Default for TimeoutsFile {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(30),
            write: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

// `name`, `domains`, `upstream` and `tls` are required, so the other keys' defaults are given
// one by one.
fn default_graphql_path() -> UrlPath {
    "/graphql".into()
}

fn default_realtime_path() -> UrlPath {
    "/graphql/realtime".into()
}

fn default_csrf_headers() -> Vec<value::HeaderName> {
    [
        "x-apollo-operation-name",
        "apollo-require-preflight",
        "x-api-key",
        "authorization",
    ]
    .map(|h| value::HeaderName(h.into()))
    .to_vec()
}

fn default_true() -> bool {
    true
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

/// A site's validated upstream timeouts.
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

impl Validator<'_> {
    pub(super) fn site(
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
                default_realtime(u, &s.realtime_path.0)
                    .map_err(|why| self.problem(at.key("realtime-path"), why))
                    .ok()
            }),
        };
        let graphql_path = self.url_path(at.key("graphql-path"), &s.graphql_path);
        let realtime_path = self.url_path(at.key("realtime-path"), &s.realtime_path);
        let get_as_post = match s.upstream_method {
            Some(m) => m == UpstreamMethod::Post,
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
        let upstream_ca_file = s
            .upstream_ca_file
            .as_ref()
            .map(|f| self.readable_file(at.key("upstream-ca-file"), f));
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
        let csrf_required_headers = s
            .csrf_required_headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| self.header_name(at.key("csrf-required-headers").index(i), h))
            .collect();
        if self.problems.len() > before {
            return None;
        }
        Some(Site {
            name: s.name.clone(),
            domains,
            upstream: upstream?,
            realtime: realtime?,
            graphql_path,
            realtime_path,
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

    pub(super) fn unique_names_and_domains(&mut self, sites: &[SiteFile]) {
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
