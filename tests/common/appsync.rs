//! The AWS AppSync simulator (`tests/js/appsync-sim.js`, npm
//! `@aws-amplify/amplify-appsync-simulator`) as a real upstream on loopback, counting what it
//! receives; and graphfront serving one site in front of it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{ApiSite, SiteCerts};

/// How long the simulator gets to print its ready line (node loads ~370 packages).
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running simulator serving AppSync's Post API (`getPost`, `listPosts`, `createPost`,
/// `onCreatePost`; posts "1" and "2" seeded) with API_KEY auth, plus OPENID_CONNECT when an
/// issuer is given. Killed when dropped.
pub struct AppSyncSim {
    pub port: u16,
    stats_port: u16,
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

/// What the simulator's HTTP server has received so far.
#[derive(Debug)]
pub struct SimStats {
    /// Every HTTP request and WebSocket upgrade.
    pub requests: u64,
    /// `POST /graphql` requests.
    pub graphql_requests: u64,
    /// Calls of the data source behind the resolvers.
    pub resolver_invocations: u64,
    /// The last request's headers (lower-case names), `Null` before the first.
    pub last_headers: Value,
    /// The last request's body.
    pub last_body: Option<String>,
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

impl AppSyncSim {
    /// Start the simulator with `api_key` as its API key and, when given, `oidc_issuer` as an
    /// additional OPENID_CONNECT provider (it matches `iss` and never checks signatures).
    pub async fn start(api_key: &str, oidc_issuer: Option<&str>) -> Self {
        let js = js_dir();
        assert!(
            js.join("node_modules/@aws-amplify/amplify-appsync-simulator").is_dir(),
            "the AppSync simulator is not installed: run `npm ci --prefix tests/js` (needs node and npm)"
        );
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("appsync-sim.log");
        let mut cmd = Command::new("node");
        cmd.arg(js.join("appsync-sim.js"))
            .env("APPSYNC_SIM_API_KEY", api_key)
            .env_remove("APPSYNC_SIM_OIDC_ISSUER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true);
        if let Some(issuer) = oidc_issuer {
            cmd.env("APPSYNC_SIM_OIDC_ISSUER", issuer);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` for the AppSync simulator: {e}"));
        let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(READY_DEADLINE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v["ready"] == true => return Some(v),
                    _ => eprintln!("appsync-sim: {line}"),
                }
            }
            None
        })
        .await;
        let ready = match ready {
            Ok(Some(v)) => v,
            Ok(None) => panic!(
                "the AppSync simulator exited before it was ready:\n{}",
                log()
            ),
            Err(_) => panic!(
                "the AppSync simulator was not ready in {READY_DEADLINE:?}:\n{}",
                log()
            ),
        };
        let port = |k: &str| {
            ready[k]
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or_else(|| panic!("bad ready line from the simulator: {ready}"))
        };
        Self {
            port: port("port"),
            stats_port: port("statsPort"),
            child,
            stderr,
            _dir: dir,
        }
    }

    /// A URL on the simulator, e.g. `url("/graphql")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The JSON the simulator serves at `url`, one of its stats endpoints.
    pub async fn stats_json(&self, url: &str) -> Value {
        reqwest::get(url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("simulator stats: {e}\n{}", self.log()))
            .json()
            .await
            .unwrap()
    }

    /// What the simulator has received so far.
    pub async fn stats(&self) -> SimStats {
        let v = self
            .stats_json(&format!("http://127.0.0.1:{}/__stats", self.stats_port))
            .await;
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("stats.{k}: {v}"));
        SimStats {
            requests: n("requests"),
            graphql_requests: n("graphqlRequests"),
            resolver_invocations: n("resolverInvocations"),
            last_headers: v["lastHeaders"].clone(),
            last_body: v["lastBody"].as_str().map(str::to_string),
        }
    }

    /// How many HTTP requests (and WebSocket upgrades) the simulator has received.
    pub async fn requests(&self) -> u64 {
        self.stats().await.requests
    }

    /// The simulator's own log (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// graphfront serving `api.test` in front of the simulator (plain HTTP upstream), with
    /// `extra` TOML appended to the site's table.
    pub async fn site(&self, extra: &str) -> ApiSite {
        ApiSite::start_with(&self.url("/graphql"), SiteCerts::new(), extra, "0s").await
    }
}

impl Drop for AppSyncSim {
    fn drop(&mut self) {
        // Closing its stdin stops it too; kill it anyway, and reap it if it is already gone.
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }
}
