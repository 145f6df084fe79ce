//! The configuration file as written: serde structs that mirror `graphfront.toml` key for key.
//! Nothing here is validated beyond types; `config.rs` turns these into runtime types.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Process-wide settings.
    #[serde(default)]
    pub server: ServerFile,
    /// Where graphfront listens.
    #[serde(default)]
    pub listeners: ListenersFile,
    /// TLS settings shared by all sites.
    #[serde(default)]
    pub tls: TlsFile,
    /// Certificates obtained and renewed by graphfront (sites with `tls = "acme"`).
    #[serde(default)]
    pub acme: AcmeFile,
    /// The query cache shared by all sites.
    #[serde(default)]
    pub cache: CacheFile,
    /// Process logs.
    #[serde(default)]
    pub log: LogFile,
    /// The admin API (cache purges): its bearer token.
    #[serde(default)]
    pub admin: super::admin::AdminFile,
    /// How long clients get for each step of a request on the https listeners.
    #[serde(default)]
    pub timeouts: ClientTimeoutsFile,
    /// The sites, one per fronted GraphQL API.
    #[serde(default, rename = "site")]
    pub sites: Vec<SiteFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerFile {
    /// Worker threads of the proxy service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Directory for state that must survive restarts (ACME account, issued certificates).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Pid file (used by graceful upgrades).
    #[serde(default = "default_pid_file")]
    pub pid_file: PathBuf,
    /// Unix socket over which a new process takes the listening sockets of the old one.
    #[serde(default = "default_upgrade_sock")]
    pub upgrade_socket: PathBuf,
    /// After SIGTERM (or handing the sockets to a new process), how long in-flight requests get
    /// to finish; the process exits as soon as none is left.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace_period: Duration,
    /// On SIGTERM, how long graphfront keeps serving (every answer with `Connection: close`,
    /// `/readyz` 503 with `"draining": true`) before it stops accepting, so load balancers see
    /// it leave. Set it to the health checks' interval times their failure threshold.
    #[serde(default, with = "humantime_serde")]
    pub drain_notice: Duration,
    /// After the grace period, how long the runtimes get to stop.
    #[serde(default = "default_shutdown_timeout", with = "humantime_serde")]
    pub graceful_shutdown_timeout: Duration,
    /// How long a resolved upstream address is reused before it is looked up again.
    #[serde(default = "default_dns_ttl", with = "humantime_serde")]
    pub dns_ttl: Duration,
    /// Trust anchors (PEM) for upstream TLS instead of the system roots (`SSL_CERT_FILE` is
    /// honoured when this is not set).
    #[serde(default)]
    pub upstream_ca_file: Option<PathBuf>,
    /// Access log: "on" (one event per request), "off".
    #[serde(default = "default_true")]
    pub access_log: bool,
}

impl Default for ServerFile {
    fn default() -> Self {
        Self {
            threads: default_threads(),
            state_dir: default_state_dir(),
            pid_file: default_pid_file(),
            upgrade_socket: default_upgrade_sock(),
            grace_period: default_grace(),
            drain_notice: Duration::ZERO,
            graceful_shutdown_timeout: default_shutdown_timeout(),
            dns_ttl: default_dns_ttl(),
            upstream_ca_file: None,
            access_log: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenersFile {
    /// HTTPS addresses (TLS terminated here, h2 and http/1.1).
    #[serde(default = "default_https")]
    pub https: Vec<String>,
    /// Plain HTTP addresses: 308 redirect to https (and ACME HTTP-01). Empty to disable.
    #[serde(default = "default_http")]
    pub http: Vec<String>,
    /// Admin listener (metrics, health, admin API). Keep it on loopback or a private network.
    #[serde(default = "default_admin")]
    pub admin: String,
    /// Offer HTTP/2 through ALPN on the https listeners.
    #[serde(default = "default_true")]
    pub h2: bool,
    /// Largest HTTP/1 request head (request line and headers); 431 above. HTTP/2 header
    /// lists have the same limit.
    #[serde(default = "default_max_request_header")]
    pub max_request_header: ByteSize,
    /// Connections one client address may hold open on the https listeners (TLS handshakes
    /// included); 0: no limit.
    #[serde(default = "default_client_connections")]
    pub max_connections_per_client: usize,
}

impl Default for ListenersFile {
    fn default() -> Self {
        Self {
            https: default_https(),
            http: default_http(),
            admin: default_admin(),
            h2: true,
            max_request_header: default_max_request_header(),
            max_connections_per_client: default_client_connections(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogFile {
    /// Level or `tracing` filter directives ("info", "warn,graphfront=debug").
    #[serde(default = "default_log_level")]
    pub level: String,
    /// auto (text on a terminal, JSON under journald), text or json.
    #[serde(default)]
    pub format: crate::logging::Format,
}

impl Default for LogFile {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: crate::logging::Format::Auto,
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsFile {
    /// How often certificate files are checked for changes (0s disables polling).
    #[serde(default = "default_reload", with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Name of the site whose certificate answers handshakes with an unknown or missing SNI.
    /// Without it such handshakes are refused.
    #[serde(default)]
    pub fallback_site: Option<String>,
}

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
    pub graphql_path: String,
    /// Path of the real-time endpoint on the custom domain.
    #[serde(default = "default_realtime_path")]
    pub realtime_path: String,
    /// Largest request body accepted (413 above). Bodies over 64 KiB are refused with 413 too:
    /// every forwarded body is analysed.
    #[serde(default)]
    pub max_body: Option<ByteSize>,
    /// Where this site's certificate comes from: files, or "acme".
    pub tls: SiteTlsEntry,
    /// Trust anchors (PEM) for this site's upstream only, instead of the system roots.
    #[serde(default)]
    pub upstream_ca_file: Option<PathBuf>,
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
    pub csrf_required_headers: Vec<String>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SigningFile {
    pub access_key_id: String,
    /// The secret, or better `secret-access-key-file`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// A file holding a session token (temporary credentials).
    #[serde(default)]
    pub session_token_file: Option<PathBuf>,
    /// Default: the region of an AppSync upstream's host.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default = "default_signing_service")]
    pub service: String,
}

fn default_signing_service() -> String {
    "appsync".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IamFile {
    /// The region requests must be signed for. Default: the region of an AppSync upstream.
    #[serde(default)]
    pub region: Option<String>,
    /// How far `X-Amz-Date` may be from the edge's clock.
    #[serde(default = "default_clock_skew", with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthFile {
    /// API keys accepted in `x-api-key` (AppSync's API_KEY mode).
    #[serde(default, rename = "api-key")]
    pub api_keys: Vec<ApiKeyFile>,
    /// OpenID Connect issuers whose tokens are accepted (AppSync's OPENID_CONNECT mode).
    #[serde(default)]
    pub oidc: Vec<OidcFile>,
    /// Cognito user pools whose tokens are accepted (AMAZON_COGNITO_USER_POOLS).
    #[serde(default)]
    pub cognito: Vec<CognitoFile>,
    /// How tokens of both JWT modes are checked.
    #[serde(default)]
    pub jwt: JwtFile,
    /// AWS_IAM: a SigV4 pre-check; the request is forwarded as signed.
    #[serde(default)]
    pub iam: Option<IamFile>,
    /// AWS_LAMBDA over HTTP: an authorizer service decides on the token.
    #[serde(default)]
    pub authorizer: Option<AuthorizerFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthorizerFile {
    /// Where the token and the request context are POSTed (AppSync's Lambda event).
    pub url: String,
    /// How long a verdict is reused for the same token (the answer's `ttlOverride` wins;
    /// 0s: ask every time).
    #[serde(default = "default_authorizer_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// A regular expression tokens must match before the authorizer is asked
    /// (AppSync's identityValidationExpression).
    #[serde(default)]
    pub token_regex: Option<String>,
    /// Verdicts kept at most.
    #[serde(default = "default_authorizer_entries")]
    pub max_cached_verdicts: u64,
}

fn default_authorizer_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_authorizer_entries() -> u64 {
    100_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OidcFile {
    /// The issuer URL, exactly as tokens carry it in `iss`.
    pub issuer: String,
    /// A regular expression the whole `aud` (one of its values) must match.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The longest accepted time since the token was issued (`iat`).
    #[serde(default, with = "humantime_serde")]
    pub iat_ttl: Option<Duration>,
    /// The longest accepted time since the user authenticated (`auth_time`).
    #[serde(default, with = "humantime_serde")]
    pub auth_ttl: Option<Duration>,
    /// The JWKS URL; by default the `jwks_uri` of the issuer's discovery document.
    #[serde(default)]
    pub jwks_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CognitoFile {
    /// The user pool, e.g. "eu-west-1_AbCdEf123".
    pub user_pool_id: String,
    /// The pool's region; by default the prefix of the pool id.
    #[serde(default)]
    pub region: Option<String>,
    /// A regular expression the app client id must match: `aud` of id tokens, `client_id` of
    /// access tokens.
    #[serde(default)]
    pub app_client_id: Option<String>,
    /// When set, the token's `cognito:groups` must hold one of these.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The issuer, by default `https://cognito-idp.<region>.amazonaws.com/<user-pool-id>`.
    #[serde(default)]
    pub issuer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JwtFile {
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Longer tokens are refused unread.
    #[serde(default = "default_max_token")]
    pub max_token_size: ByteSize,
    /// An unknown `kid` makes the issuer's keys be fetched again, at most this often.
    #[serde(default = "default_jwks_refetch", with = "humantime_serde")]
    pub jwks_refetch_interval: Duration,
    /// Keys older than this are fetched again in the background (rotation).
    #[serde(default = "default_jwks_max_age", with = "humantime_serde")]
    pub jwks_max_age: Duration,
}

impl Default for JwtFile {
    fn default() -> Self {
        Self {
            leeway: default_leeway(),
            max_token_size: default_max_token(),
            jwks_refetch_interval: default_jwks_refetch(),
            jwks_max_age: default_jwks_max_age(),
        }
    }
}

fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_max_token() -> ByteSize {
    ByteSize::kib(8)
}
fn default_jwks_refetch() -> Duration {
    Duration::from_secs(60)
}
fn default_jwks_max_age() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiKeyFile {
    /// A name for the key: the principal of per-principal cache scopes and what logs show
    /// (never the key itself).
    pub id: String,
    /// The key. Prefer `key-file` to keep it out of this file.
    #[serde(default)]
    pub key: Option<String>,
    /// A file holding the key (surrounding whitespace ignored).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// When the key stops being accepted (RFC 3339, e.g. "2027-01-31T00:00:00Z").
    #[serde(default)]
    pub expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CorsFile {
    /// Allowed origins (`https://app.example.com`), or `*` for any.
    pub allow_origins: Vec<String>,
    /// Methods allowed cross-origin.
    #[serde(default = "default_cors_methods")]
    pub allow_methods: Vec<String>,
    /// Request headers allowed cross-origin.
    #[serde(default = "default_cors_headers")]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to the page.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow cookies and credentials (not with `*`).
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(default = "default_cors_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

fn default_csrf_headers() -> Vec<String> {
    [
        "x-apollo-operation-name",
        "apollo-require-preflight",
        "x-api-key",
        "authorization",
    ]
    .map(String::from)
    .to_vec()
}
fn default_cors_methods() -> Vec<String> {
    ["GET", "POST", "OPTIONS"].map(String::from).to_vec()
}
fn default_cors_headers() -> Vec<String> {
    [
        "content-type",
        "authorization",
        "x-api-key",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-user-agent",
        "apollo-require-preflight",
        "x-apollo-operation-name",
    ]
    .map(String::from)
    .to_vec()
}
fn default_cors_max_age() -> Duration {
    Duration::from_secs(600)
}

/// Operation limits; 0 means no limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsFile {
    /// Deepest selection (`{ a { b } }` is 2), fragments expanded.
    #[serde(default = "default_max_depth")]
    pub max_depth: u32,
    /// Aliased fields, fragments expanded.
    #[serde(default = "default_max_aliases")]
    pub max_aliases: u64,
    /// Fields at the root of the operation.
    #[serde(default = "default_max_root_fields")]
    pub max_root_fields: u32,
    /// All fields, each fragment counted where it is spread.
    #[serde(default = "default_max_fields")]
    pub max_fields: u64,
    /// Directives on one field, fragment spread or inline fragment.
    #[serde(default = "default_max_directives")]
    pub max_directives_per_field: u32,
    /// Lexical tokens of the document.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Allow `__schema` and `__type` (introspection).
    #[serde(default = "default_true")]
    pub introspection: bool,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_depth: default_max_depth(),
            max_aliases: default_max_aliases(),
            max_root_fields: default_max_root_fields(),
            max_fields: default_max_fields(),
            max_directives_per_field: default_max_directives(),
            max_tokens: default_max_tokens(),
            introspection: true,
        }
    }
}

fn default_max_depth() -> u32 {
    32
}
fn default_max_aliases() -> u64 {
    100
}
fn default_max_root_fields() -> u32 {
    50
}
fn default_max_fields() -> u64 {
    5000
}
fn default_max_directives() -> u32 {
    10
}
fn default_max_tokens() -> u32 {
    15000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheFile {
    /// Memory for cached responses (keys, bodies and headers), for the whole process.
    #[serde(default = "default_cache_size")]
    pub max_size: ByteSize,
}

impl Default for CacheFile {
    fn default() -> Self {
        Self {
            max_size: default_cache_size(),
        }
    }
}

/// Whose data a cached response is: anyone's, or one principal's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScopeFile {
    #[default]
    Public,
    Principal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SiteCacheFile {
    /// TTL of queries no rule matches; "0s": such queries are not cached.
    #[serde(default, with = "humantime_serde")]
    pub default_ttl: Duration,
    /// Scope of queries cached by `default-ttl`.
    #[serde(default)]
    pub default_scope: ScopeFile,
    /// Stale-while-revalidate window of queries cached by `default-ttl`.
    #[serde(default, with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// How long past its TTL a response may be served when the upstream fails or times out.
    #[serde(default, with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// Request header naming the principal of per-principal scopes (until auth exists), e.g.
    /// "authorization" or "x-api-key". Its value is hashed, never stored.
    #[serde(default)]
    pub principal_header: Option<String>,
    /// Cookie naming the principal instead of a header.
    #[serde(default)]
    pub principal_cookie: Option<String>,
    /// Ignore the upstream's Cache-Control (no-store, private, max-age).
    #[serde(default)]
    pub ignore_upstream_cache_control: bool,
    /// Let a client's `Cache-Control: no-cache` fetch a fresh response (and refresh the entry).
    #[serde(default)]
    pub allow_client_no_cache: bool,
    /// Larger responses are not cached.
    #[serde(default = "default_max_entry")]
    pub max_entry_size: ByteSize,
    /// Upstream response headers kept in cached responses, besides Content-Type.
    #[serde(default)]
    pub keep_headers: Vec<String>,
    /// How long concurrent misses for one key wait for the first one's response.
    #[serde(default = "default_coalesce", with = "humantime_serde")]
    pub coalesce_wait: Duration,
    /// Caching rules; overlapping rules take the smallest TTL and the union of scopes.
    #[serde(default, rename = "rule")]
    pub rules: Vec<CacheRuleFile>,
    /// Fields identifying an entity of a type, for entity tags (default `id`).
    #[serde(default)]
    pub key_fields: std::collections::HashMap<String, Vec<String>>,
    /// What a mutation's response purges: "entity" (cached responses holding the entities it
    /// returns), "type" (every response holding their types), or "none".
    #[serde(default)]
    pub invalidate: InvalidateFile,
    /// Per mutation field: what it purges instead, and root fields purged with it.
    #[serde(default, rename = "mutation")]
    pub mutations: Vec<MutationRuleFile>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InvalidateFile {
    #[default]
    Entity,
    Type,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MutationRuleFile {
    /// The mutation's root field, e.g. "deletePost".
    pub field: String,
    #[serde(default)]
    pub invalidate: Option<InvalidateFile>,
    /// Cached responses of these root fields (any arguments) are purged too, e.g. ["listPosts"].
    #[serde(default)]
    pub purge_fields: Vec<String>,
}

impl Default for SiteCacheFile {
    fn default() -> Self {
        Self {
            default_ttl: Duration::ZERO,
            default_scope: ScopeFile::Public,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            principal_header: None,
            principal_cookie: None,
            ignore_upstream_cache_control: false,
            allow_client_no_cache: false,
            max_entry_size: default_max_entry(),
            keep_headers: Vec::new(),
            coalesce_wait: default_coalesce(),
            rules: Vec::new(),
            key_fields: Default::default(),
            invalidate: InvalidateFile::Entity,
            mutations: Vec::new(),
        }
    }
}

/// One caching rule: it matches by exactly one of `operation`, `field` or `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheRuleFile {
    /// Operation name, e.g. "GetPost".
    #[serde(default)]
    pub operation: Option<String>,
    /// Root field, e.g. "Query.listPosts".
    #[serde(default)]
    pub field: Option<String>,
    /// A type returned anywhere in the response (by its `__typename`), e.g. "Post".
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    /// How long a response stays fresh (1s to 24h).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long after the TTL a stale response is served while a fresh one is fetched.
    #[serde(default, with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// `public` or `principal`.
    #[serde(default)]
    pub scope: ScopeFile,
}

/// A site's certificate: `tls = "acme"`, `tls = { acme = true, challenges = [...] }`, or
/// `tls = { cert = "...", key = "..." }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SiteTlsFile {
    /// Certificate chain, PEM, leaf first.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Obtain and renew the certificate with ACME (`[acme]`).
    #[serde(default)]
    pub acme: bool,
    /// ACME challenges to try, in order (default: `[acme] challenges`).
    #[serde(default)]
    pub challenges: Option<Vec<ChallengeKind>>,
}

impl<'de> Deserialize<'de> for SiteTlsEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_untagged::UntaggedEnumVisitor::new()
            .string(|s| match s {
                "acme" => Ok(SiteTlsEntry(SiteTlsFile {
                    acme: true,
                    ..SiteTlsFile::default()
                })),
                other => Err(serde::de::Error::custom(format!(
                    "`{other}`: write \"acme\" or a table {{ cert = \"...\", key = \"...\" }}"
                ))),
            })
            .map(|m| m.deserialize().map(SiteTlsEntry))
            .deserialize(d)
    }
}

/// `tls` as written: the keyword "acme" or a table.
#[derive(Debug)]
pub struct SiteTlsEntry(pub SiteTlsFile);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebSocketFile {
    /// Rewrite the `host` inside AppSync real-time auth (handshake and `start` messages) to the
    /// upstream API's host. Default: on when the upstream is an AppSync endpoint.
    #[serde(default)]
    pub rewrite_host: Option<bool>,
    /// Browser origins allowed to open WebSockets (`Origin`); empty: any. Requests without
    /// `Origin` (non-browser clients) are not affected.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Other paths whose WebSocket upgrades go to the upstream (same origin, same path), with
    /// the same limits: graphql-transport-ws, MQTT over WebSocket, ...
    #[serde(default)]
    pub paths: Vec<String>,
    /// Open WebSockets for the whole site.
    #[serde(default = "default_ws_site_limit")]
    pub max_connections: usize,
    /// Open WebSockets per client address.
    #[serde(default = "default_ws_client_limit")]
    pub max_connections_per_client: usize,
    /// Largest frame a client may send (close 1009 above).
    #[serde(default = "default_ws_frame")]
    pub max_frame: ByteSize,
    /// Largest message a client may send, fragments together (close 1009 above).
    #[serde(default = "default_ws_frame")]
    pub max_message: ByteSize,
    /// AppSync real-time: how long a client may take to send `connection_init`.
    #[serde(default = "default_ws_init", with = "humantime_serde")]
    pub connection_init_timeout: Duration,
    /// Close a WebSocket when the upstream sent nothing (AppSync sends `ka` every minute) for
    /// this long.
    #[serde(default = "default_ws_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for WebSocketFile {
    fn default() -> Self {
        Self {
            rewrite_host: None,
            allowed_origins: Vec::new(),
            paths: Vec::new(),
            max_connections: default_ws_site_limit(),
            max_connections_per_client: default_ws_client_limit(),
            max_frame: default_ws_frame(),
            max_message: default_ws_frame(),
            connection_init_timeout: default_ws_init(),
            idle_timeout: default_ws_idle(),
        }
    }
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AcmeFile {
    /// The CA's directory: "letsencrypt", "letsencrypt-staging", or any RFC 8555 directory URL.
    #[serde(default = "default_directory")]
    pub directory: String,
    /// Contact addresses for the account ("ops@example.com" or "mailto:ops@example.com").
    #[serde(default)]
    pub contact: Vec<String>,
    /// Trust anchors (PEM) for the directory's HTTPS instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// External account binding, for CAs that require one.
    #[serde(default)]
    pub eab: Option<EabFile>,
    /// Challenges tried in order for sites that do not list their own.
    #[serde(default = "default_challenges")]
    pub challenges: Vec<ChallengeKind>,
    /// DNS-01: a command run as `<command...> set|clear <record name> <TXT value>`.
    #[serde(default)]
    pub dns_hook: Option<Vec<String>>,
    /// Longest a dns-hook run may take.
    #[serde(default = "default_hook_timeout", with = "humantime_serde")]
    pub dns_hook_timeout: Duration,
    /// Wait after a successful `set` before the CA is asked to look (DNS propagation).
    #[serde(default, with = "humantime_serde")]
    pub dns_propagation_delay: Duration,
    /// First delay after a failed order; doubled (with jitter) on each further failure.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest delay between attempts.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// How long an order may take from challenges to certificate before it counts as failed.
    #[serde(default = "default_order_timeout", with = "humantime_serde")]
    pub order_timeout: Duration,
}

impl Default for AcmeFile {
    fn default() -> Self {
        Self {
            directory: default_directory(),
            contact: Vec::new(),
            ca_file: None,
            eab: None,
            challenges: default_challenges(),
            dns_hook: None,
            dns_hook_timeout: default_hook_timeout(),
            dns_propagation_delay: Duration::ZERO,
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            order_timeout: default_order_timeout(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EabFile {
    /// The key identifier the CA gave.
    pub kid: String,
    /// The HMAC key the CA gave (base64url).
    pub hmac_key: String,
}

/// See `SiteFile::upstream_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamMethod {
    Post,
    AsSent,
}

/// Client-side deadlines on the https listeners: each is a total, not a time between reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientTimeoutsFile {
    /// From accepting a connection to the end of its TLS handshake.
    #[serde(default = "default_client_step", with = "humantime_serde")]
    pub tls_handshake: Duration,
    /// For an HTTP/1 request head, from its first byte (from the handshake, for a
    /// connection's first request); 408 and close when exceeded.
    #[serde(default = "default_client_step", with = "humantime_serde")]
    pub request_header: Duration,
    /// For a request body the edge reads (GraphQL POSTs), HTTP/1 and HTTP/2; 408 when exceeded.
    #[serde(default = "default_request_body", with = "humantime_serde")]
    pub request_body: Duration,
}

impl Default for ClientTimeoutsFile {
    fn default() -> Self {
        Self {
            tls_handshake: default_client_step(),
            request_header: default_client_step(),
            request_body: default_request_body(),
        }
    }
}

fn default_client_step() -> Duration {
    Duration::from_secs(10)
}
fn default_request_body() -> Duration {
    Duration::from_secs(30)
}
fn default_max_request_header() -> ByteSize {
    ByteSize::kib(64)
}
fn default_client_connections() -> usize {
    256
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TimeoutsFile {
    /// TCP + TLS connect to the upstream.
    #[serde(default = "default_connect", with = "humantime_serde")]
    pub connect: Duration,
    /// Longest wait for the upstream between reads (504 when exceeded before the response starts).
    #[serde(default = "default_read", with = "humantime_serde")]
    pub read: Duration,
    /// Longest wait to write to the upstream.
    #[serde(default = "default_read", with = "humantime_serde")]
    pub write: Duration,
    /// How long an idle pooled upstream connection is kept.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle: Duration,
}

impl Default for TimeoutsFile {
    fn default() -> Self {
        Self {
            connect: default_connect(),
            read: default_read(),
            write: default_read(),
            idle: default_idle(),
        }
    }
}

fn default_ws_site_limit() -> usize {
    50_000
}
fn default_ws_client_limit() -> usize {
    100
}
fn default_ws_frame() -> ByteSize {
    ByteSize::kib(256)
}
fn default_ws_init() -> Duration {
    Duration::from_secs(10)
}
fn default_ws_idle() -> Duration {
    Duration::from_secs(600)
}
fn default_directory() -> String {
    "letsencrypt".into()
}
fn default_challenges() -> Vec<ChallengeKind> {
    vec![ChallengeKind::TlsAlpn01, ChallengeKind::Http01]
}
fn default_hook_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(60)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_order_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_cache_size() -> ByteSize {
    ByteSize::mib(256)
}
fn default_max_entry() -> ByteSize {
    ByteSize::mib(1)
}
fn default_coalesce() -> Duration {
    Duration::from_secs(5)
}
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/graphfront")
}
fn default_pid_file() -> PathBuf {
    PathBuf::from("/run/graphfront/graphfront.pid")
}
fn default_upgrade_sock() -> PathBuf {
    PathBuf::from("/run/graphfront/upgrade.sock")
}
fn default_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_dns_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_true() -> bool {
    true
}
fn default_https() -> Vec<String> {
    vec!["0.0.0.0:443".into()]
}
fn default_http() -> Vec<String> {
    vec!["0.0.0.0:80".into()]
}
fn default_admin() -> String {
    "127.0.0.1:9180".into()
}
fn default_reload() -> Duration {
    Duration::from_secs(10)
}
fn default_graphql_path() -> String {
    "/graphql".into()
}
fn default_realtime_path() -> String {
    "/graphql/realtime".into()
}
fn default_connect() -> Duration {
    Duration::from_secs(5)
}
fn default_read() -> Duration {
    Duration::from_secs(30)
}
fn default_idle() -> Duration {
    Duration::from_secs(60)
}
