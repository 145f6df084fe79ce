//! Real GraphQL real-time clients (`tests/js/realtime-client.js`: raw `ws` in AppSync's dialect,
//! npm `aws-appsync`, `aws-amplify` v6, `graphql-ws`) run as node processes, one subscription
//! each, reporting what they receive one JSON line at a time; and what the AppSync simulator's
//! real-time endpoint received.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::appsync::AppSyncSim;

/// Which client library subscribes, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Raw `ws` speaking AppSync's dialect, the connection's auth `header` in the query string.
    AppSyncWs,
    /// The same, the `header` in a `header-<base64url>` subprotocol beside `graphql-ws`.
    AppSyncWsSubprotocol,
    /// npm `aws-appsync` (AWSAppSyncClient), API_KEY auth.
    AwsAppSync,
    /// npm `aws-amplify` v6 `generateClient().graphql(...).subscribe()`, API_KEY auth.
    Amplify,
    /// npm `graphql-ws` `createClient().subscribe()` (graphql-transport-ws).
    GraphqlWs,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::AppSyncWs | Mode::AppSyncWsSubprotocol => "appsync-ws",
            Mode::AwsAppSync => "aws-appsync",
            Mode::Amplify => "amplify",
            Mode::GraphqlWs => "graphql-ws",
        }
    }
}

/// A running client. Killed when dropped.
pub struct RealtimeClient {
    mode: Mode,
    child: Child,
    lines: mpsc::UnboundedReceiver<Value>,
    stderr: PathBuf,
    /// The subprotocol the server chose on each WebSocket the client opened, in order.
    pub opened: Vec<Value>,
    _dir: tempfile::TempDir,
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

impl RealtimeClient {
    /// Subscribe with `query` through `mode` to the GraphQL endpoint `url` (e.g.
    /// `https://api.test:PORT/graphql`; the WebSocket goes to `url` + `/realtime`), with
    /// `api_key`, trusting the CA in `ca_file`; every connection to `url`'s host goes to
    /// 127.0.0.1:`port`.
    pub fn start(
        mode: Mode,
        url: &str,
        api_key: &str,
        query: &str,
        ca_file: &Path,
        port: u16,
    ) -> Self {
        let js = js_dir();
        assert!(
            js.join("node_modules/aws-amplify").is_dir()
                && js.join("node_modules/aws-appsync").is_dir()
                && js.join("node_modules/graphql-ws").is_dir(),
            "the real-time clients are not installed: run `npm ci --prefix tests/js` (needs node and npm)"
        );
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("realtime-client.log");
        let mut cmd = Command::new("node");
        cmd.arg(js.join("realtime-client.js"))
            .arg(mode.arg())
            .arg(url)
            .env("REALTIME_API_KEY", api_key)
            .env("REALTIME_QUERY", query)
            .env("REALTIME_CONNECT_PORT", port.to_string())
            .env("NODE_EXTRA_CA_CERTS", ca_file)
            .env(
                "REALTIME_AUTH",
                if mode == Mode::AppSyncWsSubprotocol {
                    "subprotocol"
                } else {
                    "query"
                },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` for a real-time client: {e}"));
        let (tx, lines) = mpsc::unbounded_channel();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            mode,
            child,
            lines,
            stderr,
            opened: Vec::new(),
            _dir: dir,
        }
    }

    /// The next line the client prints before `deadline`, recording `opened` lines; panics
    /// with the client's log when it exits or the deadline passes.
    async fn next_line(&mut self, deadline: Instant, waiting_for: &str) -> Value {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(v)) if v.get("opened").is_some() => self.opened.push(v["opened"].clone()),
                Ok(Some(v)) => return v,
                Ok(None) => panic!(
                    "the {:?} client exited while waiting for {waiting_for}:\n{}",
                    self.mode,
                    self.log()
                ),
                Err(_) => panic!(
                    "the {:?} client: no {waiting_for} in time:\n{}",
                    self.mode,
                    self.log()
                ),
            }
        }
    }

    /// Wait until the subscription is acknowledged; panics on an error, a close or the deadline.
    pub async fn wait_subscribed(&mut self, deadline: Instant) {
        let v = self.next_line(deadline, "acknowledged subscription").await;
        assert_eq!(
            v["subscribed"],
            true,
            "the {:?} client, before its subscription was acknowledged: {v}\n{}",
            self.mode,
            self.log()
        );
    }

    /// The next `{"data":...}`, `{"error":...}` or `{"closed":code}` the client reports.
    pub async fn next_event(&mut self, deadline: Instant) -> Value {
        self.next_line(deadline, "event").await
    }

    /// The next event if one arrives before `deadline`.
    pub async fn try_next_event(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(v)) if v.get("opened").is_some() => self.opened.push(v["opened"].clone()),
                Ok(Some(v)) => return Some(v),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The client's log (its stderr): library logs and every frame sent and received.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for RealtimeClient {
    fn drop(&mut self) {
        // Closing its stdin stops it too; kill it anyway, and reap it if it is already gone.
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
    }
}

/// What the simulator's real-time endpoint (`/graphql/realtime`) has received so far.
#[derive(Debug)]
pub struct RealtimeStats {
    /// WebSocket upgrades on the real-time path.
    pub upgrades: u64,
    /// The decoded auth `header` of the last upgrade, from `?header=` or a
    /// `header-<base64url>` subprotocol; `Null` when it had none.
    pub last_header: Value,
    /// The subprotocols the last upgrade offered, as received.
    pub last_protocols: Value,
    /// `start` messages received.
    pub starts: u64,
    /// `payload.extensions.authorization` of the last `start` message.
    pub last_start_authorization: Value,
    /// The last upgrade's `url` (path and query) and `headers`, as received (before the
    /// simulator's subprotocol translation).
    pub last_upgrade: Value,
}

/// What `sim`'s real-time endpoint has received so far.
pub async fn realtime_stats(sim: &AppSyncSim) -> RealtimeStats {
    let v = sim.stats_json(&sim.url("/__stats")).await;
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("stats.{k}: {v}"));
    RealtimeStats {
        upgrades: n("realtimeUpgrades"),
        last_header: v["lastRealtimeHeader"].clone(),
        last_protocols: v["lastRealtimeProtocols"].clone(),
        starts: n("realtimeStarts"),
        last_start_authorization: v["lastStartAuthorization"].clone(),
        last_upgrade: v["lastRealtimeUpgrade"].clone(),
    }
}
