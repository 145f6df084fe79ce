//! Shared builders for the integration tests: a real GraphQL upstream (the demo API, over HTTPS
//! with its own test CA, recording what it receives), and graphfront run as the built binary on
//! free loopback ports, stopped when the test ends.
#![allow(dead_code)]

pub mod apollo;
pub mod appsync;
pub mod cache;
pub mod issuer;
pub mod pebble;
pub mod raw;
pub mod realtime;
pub mod ws;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use graphfront::demo::{self, RecordedRequest, Recorder, TestCa};

/// How often [`eventually`] looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Run `check` every [`POLL`] until it gives `Ok`, and return what it gave. Once `within` has
/// passed, panic with `what` and the last `Err` (what was seen instead: pass the edge's log
/// there when it tells why). `check` may panic itself, e.g. when what it waits for can no
/// longer happen.
pub async fn eventually<T, E: std::fmt::Display>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "{what} (after {within:?}): {last}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A loopback address reserved for graphfront: a socket bound to port 0 with SO_REUSEADDR and
/// never listening. graphfront (which binds with SO_REUSEADDR) can listen on the same port,
/// while no other test can be handed it as long as the socket lives.
pub fn reserve_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A loopback port that refuses connections and that no one else can take while the returned
/// socket lives (bound, never listening).
pub fn refused_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// The demo GraphQL API as an upstream, over HTTPS (certificate for `localhost` from its own CA)
/// or plain HTTP.
pub struct Upstream {
    pub addr: SocketAddr,
    pub recorder: Recorder,
    pub ca: TestCa,
    tls: bool,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(tls: bool) -> Self {
        let ca = TestCa::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorder = Recorder::default();
        let router = demo::router_with_recorder(demo::schema(), recorder.clone());
        let tls_config = tls.then(|| {
            let (cert, key) = ca.issue(&["localhost"]);
            demo::tls_server_config(&cert, &key, true).unwrap()
        });
        let task = tokio::spawn(async move {
            let _ = demo::serve(listener, tls_config, router).await;
        });
        Self {
            addr,
            recorder,
            ca,
            tls,
            dir: tempfile::tempdir().unwrap(),
            task,
        }
    }

    /// The URL graphfront should forward to.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://localhost:{}{path}", self.addr.port())
    }

    /// The `realtime-upstream` key of a site table for this API's graphql-transport-ws endpoint.
    pub fn realtime_toml(&self) -> String {
        format!(
            "realtime-upstream = \"ws://localhost:{}/graphql/ws\"\n",
            self.addr.port()
        )
    }

    /// The first request received whose path (and query) starts with `prefix`.
    pub fn request_to(&self, prefix: &str) -> Option<RecordedRequest> {
        self.recorder
            .requests()
            .into_iter()
            .find(|r| r.uri.starts_with(prefix))
    }

    /// Stop serving: the listener and every open connection close.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// A file holding the upstream's CA certificate, for `upstream-ca-file`.
    pub fn ca_file(&self) -> PathBuf {
        let p = self.dir.path().join("upstream-ca.pem");
        std::fs::write(&p, self.ca.ca_pem()).unwrap();
        p
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Certificates for the sites graphfront serves, signed by one test CA.
pub struct SiteCerts {
    pub ca: TestCa,
    pub dir: tempfile::TempDir,
}

impl SiteCerts {
    pub fn new() -> Self {
        Self {
            ca: TestCa::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Write `<stem>.pem` and `<stem>.key` for `names`; returns their paths.
    pub fn write(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        write_pair(&self.ca, self.dir.path(), stem, names)
    }

    pub fn ca_pem(&self) -> String {
        self.ca.ca_pem()
    }
}

pub fn write_pair(ca: &TestCa, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = ca.issue(names);
    let c = dir.join(format!("{stem}.pem"));
    let k = dir.join(format!("{stem}.key"));
    // Write to temporary names and rename, as an operator's tooling should.
    std::fs::write(c.with_extension("pem.tmp"), cert).unwrap();
    std::fs::write(k.with_extension("key.tmp"), key).unwrap();
    std::fs::rename(c.with_extension("pem.tmp"), &c).unwrap();
    std::fs::rename(k.with_extension("key.tmp"), &k).unwrap();
    (c, k)
}

/// A configuration for graphfront on `https`, `http` and `admin` addresses with its state in
/// `dir`: `grace` is the in-flight budget of a graceful stop, `extra` top-level TOML (after the
/// `[server]` keys), `sites` the `[[site]]` tables.
pub fn edge_config(
    dir: &Path,
    [https, http, admin]: [SocketAddr; 3],
    grace: &str,
    extra: &str,
    sites: &str,
) -> String {
    let d = dir.display();
    // Keys for `[listeners]` come after a `[listeners]` line in `extra`.
    let (extra, listeners) = extra.split_once("[listeners]\n").unwrap_or((extra, ""));
    format!(
        r#"
[server]
threads = 1
state-dir = "{d}/state"
pid-file = "{d}/graphfront.pid"
upgrade-socket = "{d}/upgrade.sock"
grace-period = "{grace}"
graceful-shutdown-timeout = "1s"
dns-ttl = "5s"
{extra}

[listeners]
https = ["{https}"]
http = ["{http}"]
admin = "{admin}"
{listeners}

{sites}
"#
    )
}

/// A running graphfront process.
pub struct Edge {
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Child,
    log: PathBuf,
    _reserved: Vec<tokio::net::TcpSocket>,
}

/// graphfront on `config`, its log appended to `log`.
fn spawn_edge(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(binary())
        .args(["run", "-c"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_graphfront")
}

/// graphfront's https, http and admin addresses, reserved before it starts (so an ACME CA can
/// be told where to validate).
pub struct EdgeAddrs {
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    reserved: Vec<tokio::net::TcpSocket>,
}

impl EdgeAddrs {
    pub fn reserve() -> Self {
        let (r1, https) = reserve_addr();
        let (r2, http) = reserve_addr();
        let (r3, admin) = reserve_addr();
        Self {
            https,
            http,
            admin,
            reserved: vec![r1, r2, r3],
        }
    }
}

impl Edge {
    /// Start graphfront with `sites` (TOML `[[site]]` tables) and optional extra top-level TOML.
    pub async fn start(sites: &str, extra: &str) -> Self {
        Self::start_at(EdgeAddrs::reserve(), sites, extra).await
    }

    /// The same, on addresses reserved beforehand.
    pub async fn start_at(addrs: EdgeAddrs, sites: &str, extra: &str) -> Self {
        Self::start_with_grace(addrs, "0s", sites, extra).await
    }

    /// The same, with `grace` for in-flight requests and WebSockets when stopping.
    pub async fn start_with_grace(addrs: EdgeAddrs, grace: &str, sites: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let EdgeAddrs {
            https,
            http,
            admin,
            reserved,
        } = addrs;
        let config = edge_config(dir.path(), [https, http, admin], grace, extra, sites);
        let config_path = dir.path().join("graphfront.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("graphfront.log");
        let child = spawn_edge(&config_path, &log);
        let mut edge = Self {
            https,
            http,
            admin,
            dir,
            config_path,
            child,
            log,
            _reserved: reserved,
        };
        edge.wait_ready().await;
        edge
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop the process and start it again on the same configuration and state directory.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_edge(&self.config_path, &self.log);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        eventually(
            Duration::from_secs(20),
            "graphfront not ready in time",
            async || {
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!("graphfront exited with {status}:\n{}", self.log());
                }
                let health = client
                    .get(format!("http://{}/healthz", self.admin))
                    .send()
                    .await;
                let https_up = tokio::net::TcpStream::connect(self.https).await.is_ok();
                if health.is_ok_and(|r| r.status() == 200) && https_up {
                    return Ok(());
                }
                Err(format!("\n{}", self.log()))
            },
        )
        .await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An HTTPS client that trusts `ca_pem` and resolves every `domains` entry to this edge.
    pub fn client(&self, ca_pem: &str, domains: &[&str], h1_only: bool) -> reqwest::Client {
        https_client(self.https, ca_pem, domains, h1_only)
    }

    pub fn url(&self, domain: &str, path: &str) -> String {
        format!("https://{domain}:{}{path}", self.https.port())
    }

    /// The `wss://` URL of `path` on `domain`.
    pub fn ws_url(&self, domain: &str, path: &str) -> String {
        format!("wss://{domain}:{}{path}", self.https.port())
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one metric series (0 when absent), e.g.
    /// `graphfront_http_requests_total{operation="query",site="a",status="2xx"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// [`Edge::metric`] once it equals `want` (within 5 s, or a panic with the last value):
    /// request metrics are recorded when the request ends, which may be just after the client
    /// has its answer.
    pub async fn metric_settled(&self, series: &str, want: f64) -> f64 {
        let what = format!("{series} never settled at {want}");
        eventually(Duration::from_secs(5), &what, async || {
            let value = self.metric(series).await;
            if value == want {
                Ok(value)
            } else {
                Err(value)
            }
        })
        .await
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One site `api` serving `api.test`, and an HTTP/1.1 client for it.
pub struct ApiSite {
    pub certs: SiteCerts,
    pub edge: Edge,
    pub client: reqwest::Client,
}

impl ApiSite {
    /// In front of `up` (trusting its CA), with `extra` TOML appended to the site's table.
    pub async fn start(up: &Upstream, certs: SiteCerts, extra: &str) -> Self {
        let extra = format!("upstream-ca-file = \"{}\"\n{extra}", up.ca_file().display());
        Self::start_with(&up.url("/graphql"), certs, &extra, "0s").await
    }

    /// In front of the GraphQL endpoint `upstream`, with `extra` TOML appended to the site's
    /// table and `grace` for in-flight requests and WebSockets when stopping.
    pub async fn start_with(upstream: &str, certs: SiteCerts, extra: &str, grace: &str) -> Self {
        Self::start_with_top(upstream, certs, extra, grace, "").await
    }

    /// [`ApiSite::start_with`], with `top` added to the process-wide settings (see
    /// [`edge_config`]).
    pub async fn start_with_top(
        upstream: &str,
        certs: SiteCerts,
        extra: &str,
        grace: &str,
        top: &str,
    ) -> Self {
        let (c, k) = certs.write("api", &["api.test"]);
        let table = site("api", &["api.test"], upstream, &c, &k, extra);
        let edge = Edge::start_with_grace(EdgeAddrs::reserve(), grace, &table, top).await;
        let client = edge.client(&certs.ca_pem(), &["api.test"], true);
        Self {
            certs,
            edge,
            client,
        }
    }

    /// The site's GraphQL URL.
    pub fn url(&self) -> String {
        self.edge.url("api.test", "/graphql")
    }
}

/// An HTTPS client that trusts `ca_pem` and resolves every `domains` entry to `addr`.
pub fn https_client(
    addr: SocketAddr,
    ca_pem: &str,
    domains: &[&str],
    h1_only: bool,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20));
    for d in domains {
        b = b.resolve(d, addr);
    }
    if h1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// A `[[site]]` table.
pub fn site(
    name: &str,
    domains: &[&str],
    upstream: &str,
    cert: &Path,
    key: &Path,
    extra: &str,
) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"
[[site]]
name = "{name}"
domains = [{}]
upstream = "{upstream}"
{extra}
[site.tls]
cert = "{}"
key = "{}"
"#,
        domains.join(", "),
        cert.display(),
        key.display()
    )
}

/// A GraphQL JSON body.
pub fn gql(query: &str) -> String {
    serde_json::json!({ "query": query }).to_string()
}

/// A POST of `query` as GraphQL JSON to `url`.
fn gql_request(client: &reqwest::Client, url: &str, query: &str) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(gql(query))
}

/// POST `query` as GraphQL JSON to `url`.
pub async fn post_gql(
    client: &reqwest::Client,
    url: &str,
    query: &str,
) -> reqwest::Result<reqwest::Response> {
    gql_request(client, url, query).send().await
}

/// POST `query` as GraphQL JSON to `url` with `api_key` in `x-api-key`.
pub async fn post_gql_with_key(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
    query: &str,
) -> reqwest::Result<reqwest::Response> {
    gql_request(client, url, query)
        .header("x-api-key", api_key)
        .send()
        .await
}

/// The value of the response header `name`; empty when absent or not text.
pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The status and GraphQL error code of a response.
pub async fn status_and_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let code = body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string();
    (status, code)
}
