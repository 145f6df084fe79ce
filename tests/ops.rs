//! graphfront run the way `systemd/graphfront.service` runs it: the unit's own ExecStartPre,
//! ExecStart and ExecReload commands (with this build's binary and a test config), in order and
//! stopping at the first failure as systemd does, with `$MAINPID` followed through the pid file.
//! Reloads and binary upgrades under sustained load lose no request; a bad config fails the
//! reload and leaves the running process serving; SIGTERM lets slow requests finish. The unit
//! itself passes `systemd-analyze verify`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    binary, edge_config, eventually, https_client, post_gql, reserve_addr, site, SiteCerts,
    Upstream,
};

const UNIT: &str = include_str!("../systemd/graphfront.service");

/// The values of `key=` lines in the unit, in order.
fn unit_commands(key: &str) -> Vec<String> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
        .collect()
}

/// An edge host: graphfront started and reloaded through the unit's commands.
struct Host {
    dir: tempfile::TempDir,
    config: PathBuf,
    pid_file: PathBuf,
    https: SocketAddr,
    admin: SocketAddr,
    /// The listening socket addresses' reservations; https and http are taken over on upgrade.
    _reserved: Vec<tokio::net::TcpSocket>,
    mainpid: u32,
    /// Every server process seen, killed when the test ends.
    pids: Vec<u32>,
    commands_run: usize,
}

impl Host {
    async fn start(sites: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (r1, https) = reserve_addr();
        let (r2, _) = reserve_addr();
        let (r3, admin) = reserve_addr();
        let mut host = Self {
            config: dir.path().join("graphfront.toml"),
            pid_file: dir.path().join("graphfront.pid"),
            dir,
            https,
            admin,
            _reserved: vec![r1, r2, r3],
            mainpid: 0,
            pids: Vec::new(),
            commands_run: 0,
        };
        host.write_config(sites, "");
        let mut start = unit_commands("ExecStartPre");
        start.extend(unit_commands("ExecStart"));
        assert_eq!(start.len(), 2, "the unit checks the config, then starts");
        if let Err(e) = host.run_commands(&start, Path::new(binary())) {
            panic!("start failed: {e}");
        }
        host.mainpid = host.pid_file_pid().expect("pid file written by ExecStart");
        host.pids.push(host.mainpid);
        host.wait_ready().await;
        host
    }

    fn write_config(&self, sites: &str, extra: &str) {
        let http = self._reserved[1].local_addr().unwrap();
        // wrk sends the IP address as SNI: it gets site a's certificate.
        let extra = format!("[log]\nformat = \"json\"\n[tls]\nfallback-site = \"a\"\n{extra}");
        let config = edge_config(
            self.dir.path(),
            [self.https, http, self.admin],
            "10s",
            &extra,
            sites,
        );
        std::fs::write(&self.config, config).unwrap();
    }

    /// Run unit commands as systemd does: in order, each to completion, stopping at the first
    /// that fails. The error holds the failing command and what it printed.
    fn run_commands(&mut self, commands: &[String], exe: &Path) -> Result<(), String> {
        for c in commands {
            let line = c
                .replace("/usr/bin/graphfront", &exe.display().to_string())
                .replace(
                    "/etc/graphfront/graphfront.toml",
                    &self.config.display().to_string(),
                )
                .replace("$MAINPID", &self.mainpid.to_string());
            let words: Vec<&str> = line.split_whitespace().collect();
            // The output goes to files: a daemon keeps them open after its starter exits.
            self.commands_run += 1;
            let out = self
                .dir
                .path()
                .join(format!("command-{}.log", self.commands_run));
            let status = Command::new(words[0])
                .args(&words[1..])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
                .status()
                .unwrap();
            if !status.success() {
                let err = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
                return Err(format!("`{line}` failed ({status}):\n{err}"));
            }
        }
        Ok(())
    }

    /// `systemctl reload`: the unit's ExecReload with `exe` as the installed binary. After a
    /// successful reload systemd reads the pid file again for the main PID.
    fn reload(&mut self, exe: &Path) -> Result<u32, String> {
        self.run_commands(&unit_commands("ExecReload"), exe)?;
        let pid = self.pid_file_pid().ok_or("no pid file after the reload")?;
        self.pids.push(pid);
        self.mainpid = pid;
        Ok(pid)
    }

    fn pid_file_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    async fn wait_ready(&self) {
        eventually(
            Duration::from_secs(20),
            "graphfront not ready in time",
            async || {
                let health = reqwest::get(format!("http://{}/readyz", self.admin)).await;
                let https = tokio::net::TcpStream::connect(self.https).await;
                match (health, https) {
                    (Ok(r), Ok(_)) if r.status() == 200 => Ok(()),
                    (Ok(r), https) => Err(format!("/readyz {}, https {https:?}", r.status())),
                    (Err(e), _) => Err(format!("/readyz: {e}")),
                }
            },
        )
        .await
    }

    fn url(&self, domain: &str) -> String {
        format!("https://{domain}:{}/graphql", self.https.port())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

async fn wait_exit(pid: u32, within: Duration) {
    let what = format!("process {pid} still running");
    eventually(within, &what, async || {
        if alive(pid) {
            return Err("alive");
        }
        Ok(())
    })
    .await
}

/// Clients sending queries back to back, each over its own connection pool, checking every
/// answer.
struct Load {
    stop: Arc<AtomicBool>,
    /// Good answers so far, per worker.
    answered: Arc<Vec<AtomicU64>>,
    workers: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    fn start(client_for: impl Fn(usize) -> reqwest::Client, url: String, workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answered: Arc<Vec<AtomicU64>> = Arc::new((0..workers).map(|_| 0.into()).collect());
        let workers = (0..workers)
            .map(|i| {
                let client = client_for(i);
                let url = url.clone();
                let stop = stop.clone();
                let answered = answered.clone();
                tokio::spawn(async move {
                    let (mut ok, mut failures) = (0u64, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match post_gql(&client, &url, "{ hello }").await {
                            Ok(r) if r.status() == 200 => match r.text().await {
                                Ok(body) if body.contains("Hello from the graphfront demo") => {
                                    ok += 1;
                                    answered[i].fetch_add(1, Ordering::Relaxed);
                                }
                                other => failures.push(format!("body: {other:?}")),
                            },
                            Ok(r) => failures.push(format!("status {}", r.status())),
                            Err(e) => failures.push(format!("error: {e:?}")),
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Self {
            stop,
            answered,
            workers,
        }
    }

    fn answered(&self) -> Vec<u64> {
        self.answered
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    /// Once every worker has had `n` more good answers (from whichever process serves them).
    async fn flowing(&self, n: u64) {
        let before = self.answered();
        eventually(Duration::from_secs(10), "the load stalled", async || {
            let now = self.answered();
            if now
                .iter()
                .zip(&before)
                .all(|(now, before)| *now >= before + n)
            {
                return Ok(());
            }
            Err(format!("good answers per worker {before:?}, now {now:?}"))
        })
        .await
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = (0, Vec::new());
        for w in self.workers {
            let (ok, failures) = w.await.unwrap();
            total.0 += ok;
            total.1.extend(failures);
        }
        total
    }
}

/// wrk for `secs` seconds against site a (it cannot resolve test names: the IP address as SNI
/// gets the fallback site's certificate, and `Host` names the site).
fn wrk(host: &Host, secs: u64) -> std::process::Child {
    let script = host.dir.path().join("post.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '{\"query\":\"{ hello }\"}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )
    .unwrap();
    Command::new("wrk")
        .args([
            "-t1",
            "-c4",
            &format!("-d{secs}s"),
            "-H",
            "Host: a.test",
            "-s",
        ])
        .arg(&script)
        .arg(format!("https://{}/graphql", host.https))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk (tests/run.sh installs it)")
}

/// Requests and failures in wrk's report.
fn wrk_report(out: std::process::Output) -> (u64, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in: {text}"));
    let failures = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .collect::<Vec<_>>()
        .join("; ");
    (requests, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_and_a_binary_upgrade_under_load_lose_no_request() {
    let up = Upstream::start(true).await;
    let certs = SiteCerts::new();
    let (c, k) = certs.write("edge", &["a.test", "b.test"]);
    let ca = format!("upstream-ca-file = \"{}\"\n", up.ca_file().display());
    let site_a = site("a", &["a.test"], &up.url("/graphql"), &c, &k, &ca);
    let site_b = site("b", &["b.test"], &up.url("/graphql"), &c, &k, &ca);
    let mut host = Host::start(&site_a).await;
    let ca_pem = certs.ca_pem();
    let client = https_client(host.https, &ca_pem, &["a.test", "b.test"], true);
    // b.test is not configured yet (its handshake gets the fallback site's certificate, and the
    // request a 421).
    let r = post_gql(&client, &host.url("b.test"), "{ hello }")
        .await
        .unwrap();
    assert_eq!(r.status(), 421);

    let started = Instant::now();
    let https = host.https;
    let load = Load::start(
        // Half the clients on HTTP/1.1 keep-alive, half on h2.
        |i| https_client(https, &ca_pem, &["a.test"], i % 2 == 0),
        host.url("a.test"),
        8,
    );
    let wrk = wrk(&host, 10);
    // Under load: every client is being answered.
    load.flowing(5).await;

    // A config reload: the new process serves the added site.
    let first = host.mainpid;
    host.write_config(&format!("{site_a}{site_b}"), "");
    let second = host.reload(Path::new(binary())).unwrap();
    assert_ne!(second, first, "a new process took over");
    // The old process keeps accepting for a few seconds after the hand-over (pingora gives the
    // new one time to start), so a new connection may still reach it.
    eventually(Duration::from_secs(20), "b.test not served", async || {
        let fresh = https_client(host.https, &ca_pem, &["b.test"], true);
        match post_gql(&fresh, &host.url("b.test"), "{ hello }").await {
            Ok(r) if r.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Every client is answered after the hand-over too.
    load.flowing(5).await;

    // A bad config: the reload fails at the check, says why, and nothing changes.
    host.write_config(
        &format!("{site_a}{site_b}"),
        "[cache]\nmax-size = \"a lot\"\n",
    );
    let err = host.reload(Path::new(binary())).unwrap_err();
    assert!(err.contains("graphfront check"), "{err}");
    assert!(err.contains("cache.max-size (line"), "{err}");
    assert_eq!(host.pid_file_pid(), Some(second));
    assert!(alive(second));
    load.flowing(5).await;

    // A binary upgrade: a new executable takes the sockets over.
    let new_binary = host.dir.path().join("graphfront-new");
    std::fs::copy(binary(), &new_binary).unwrap();
    host.write_config(&format!("{site_a}{site_b}"), "");
    let third = host.reload(&new_binary).unwrap();
    assert_ne!(third, second);
    assert_eq!(
        std::fs::read_link(format!("/proc/{third}/exe")).unwrap(),
        new_binary
    );

    // The load runs for 10 s in all, as wrk does (`-d10s`): the length of the test, not a wait.
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(elapsed)).await;
    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, first: {:?}",
        failures.len(),
        ok as usize + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests in 10 s");
    let (wrk_requests, wrk_failures) = wrk_report(wrk.wait_with_output().unwrap());
    assert!(wrk_failures.is_empty(), "wrk: {wrk_failures}");
    assert!(wrk_requests > 100, "wrk: only {wrk_requests} requests");
    println!("through 2 reloads and a refused one: {ok} client requests and {wrk_requests} wrk requests, 0 failed");
    let r = post_gql(&client, &host.url("b.test"), "{ hello }")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The old processes handed their sockets over, drained and exited.
    wait_exit(first, Duration::from_secs(30)).await;
    wait_exit(second, Duration::from_secs(30)).await;
    assert!(alive(third));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_slow_requests_finish() {
    let up = Upstream::start(true).await;
    let certs = SiteCerts::new();
    let (c, k) = certs.write("edge", &["a.test"]);
    let ca = format!("upstream-ca-file = \"{}\"\n", up.ca_file().display());
    let host = Host::start(&site("a", &["a.test"], &up.url("/graphql"), &c, &k, &ca)).await;
    let client = https_client(host.https, &certs.ca_pem(), &["a.test"], true);

    let slow: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), host.url("a.test"));
            tokio::spawn(async move { post_gql(&client, &url, "{ slow(ms: 2000) }").await })
        })
        .collect();
    // The requests are in flight when SIGTERM arrives.
    let what = "slow requests did not reach the upstream";
    eventually(Duration::from_secs(10), what, async || {
        match up.recorder.requests().len() {
            n if n >= 4 => Ok(()),
            n => Err(format!("{n} reached it")),
        }
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &host.mainpid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    for s in slow {
        let r = s.await.unwrap().expect("a slow request was cut off");
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["data"]["slow"].is_string(), "{body}");
    }
    wait_exit(host.mainpid, Duration::from_secs(30)).await;
    assert!(
        !host.pid_file.exists(),
        "the pid file is removed on a clean stop"
    );
}

#[test]
fn the_unit_file_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("systemd-analyze is missing: tests/run.sh installs the systemd package");
    }
    // The unit as shipped, with this build's binary where the package installs it.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("graphfront.service");
    std::fs::write(&unit, UNIT.replace("/usr/bin/graphfront", binary())).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        !said.contains("graphfront.service"),
        "warnings about the unit: {said}"
    );
}

#[tokio::test]
async fn sigterm_tells_load_balancers_through_readyz_before_the_listeners_close() {
    let up = Upstream::start(true).await;
    let certs = SiteCerts::new();
    let (c, k) = certs.write("a", &["a.test"]);
    let ca = format!("upstream-ca-file = \"{}\"\n", up.ca_file().display());
    let sites = site("a", &["a.test"], &up.url("/graphql"), &c, &k, &ca);
    let edge = common::Edge::start_with_grace(
        common::EdgeAddrs::reserve(),
        "5s",
        &sites,
        "drain-notice = \"3s\"\n",
    )
    .await;
    let readyz = format!("http://{}/readyz", edge.admin);
    let r = reqwest::get(&readyz).await.unwrap();
    assert_eq!(r.status(), 200);
    let client = edge.client(&certs.ca_pem(), &["a.test"], true);
    let url = edge.url("a.test", "/graphql");
    // Requests that never reach request_filter must not move the in-flight count.
    for _ in 0..3 {
        let mut tls = common::ws::tls_connect(edge.https, "a.test", &certs.ca_pem()).await;
        tokio::io::AsyncWriteExt::write_all(
            &mut tls,
            b"GET / HTTP/1.1\r\nHost: a.test\r\nbad header\r\n\r\n",
        )
        .await
        .unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut sink),
        )
        .await;
    }
    assert_eq!(
        post_gql(&client, &url, "{ hello }").await.unwrap().status(),
        200
    );
    assert_eq!(edge.metric("graphfront_http_requests_in_flight").await, 0.0);

    let killed = Command::new("kill")
        .args(["-TERM", &edge.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // /readyz turns 503 at once; the edge still answers, closing each connection.
    eventually(
        Duration::from_secs(2),
        "/readyz still answers",
        async || {
            let r = reqwest::get(&readyz).await.unwrap();
            if r.status() == 503 {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["draining"], true, "{body}");
                return Ok(());
            }
            Err(r.status())
        },
    )
    .await;
    let r = post_gql(&client, &url, "{ hello }").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["connection"], "close");
    wait_exit(edge.pid(), Duration::from_secs(20)).await;
}
