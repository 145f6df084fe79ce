//! The real Pebble ACME server (Debian `pebble`) and its DNS companion `pebble-challtestsrv` on
//! loopback, for one test each. Pebble validates HTTP-01 and TLS-ALPN-01 on the ports it is
//! given (graphfront's http and https listeners); every name resolves to 127.0.0.1 through
//! challtestsrv, which also holds the TXT records of DNS-01 (set by the hook script below).
//! Pebble's default 5% nonce rejection stays on unless a test asks for more.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, reserve_addr};
use graphfront::demo::TestCa;

pub struct Pebble {
    pub dir: tempfile::TempDir,
    /// The directory URL graphfront orders from.
    pub directory: String,
    /// Trust anchor of Pebble's own HTTPS API.
    pub api_ca_file: PathBuf,
    /// The DNS-01 hook command for `[acme] dns-hook` (records every call in `hook_log`).
    pub hook: Vec<String>,
    pub hook_log: PathBuf,
    /// The share of nonces Pebble refuses, in percent (Pebble's default: 5); set before
    /// [`Pebble::restart`].
    pub nonce_reject: u8,
    api: SocketAddr,
    management: SocketAddr,
    dns: SocketAddr,
    dns_management: SocketAddr,
    api_ca_pem: String,
    pebble: Option<Child>,
    challtestsrv: Child,
    _reserved: Vec<tokio::net::TcpSocket>,
}

/// Records `set|clear <record> <value>` calls and forwards them to challtestsrv, except for
/// records holding "nodns", whose TXT is never set (their DNS-01 validation fails).
const HOOK: &str = r#"
import json, sys, urllib.request
management, log, action, record, value = sys.argv[1:6]
with open(log, "a") as f:
    f.write(f"{action} {record}\n")
if "nodns" in record:
    sys.exit(0)
body = {"host": record + "."}
if action == "set":
    body["value"] = value
path = "/set-txt" if action == "set" else "/clear-txt"
urllib.request.urlopen(urllib.request.Request(management + path, data=json.dumps(body).encode()))
"#;

impl Pebble {
    /// Pebble validating on `http_port` (HTTP-01) and `tls_port` (TLS-ALPN-01), issuing
    /// certificates valid for `validity` (Pebble's default, 5 years, when `None`), requiring
    /// external account binding with the key `eab` (id, base64url HMAC key) when given.
    pub async fn start(
        http_port: u16,
        tls_port: u16,
        validity: Option<Duration>,
        eab: Option<(&str, &str)>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (r1, api) = reserve_addr();
        let (r2, management) = reserve_addr();
        let (r3, dns) = reserve_addr();
        let (r4, dns_management) = reserve_addr();

        let ca = TestCa::new();
        let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]);
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("api.pem"), cert).unwrap();
        std::fs::write(path("api.key"), key).unwrap();
        std::fs::write(path("api-ca.pem"), ca.ca_pem()).unwrap();
        let config = serde_json::json!({"pebble": {
            "listenAddress": api.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": path("api.pem"),
            "privateKey": path("api.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab.is_some(),
            "externalAccountMACKeys": eab.map(|(kid, key)| serde_json::json!({kid: key})),
            "certificateValidityPeriod": validity.map_or(0, |v| v.as_secs()),
        }});
        std::fs::write(path("pebble.json"), config.to_string()).unwrap();
        std::fs::write(path("hook.py"), HOOK).unwrap();

        let log = |name: &str| std::fs::File::create(path(name)).unwrap();
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &dns.to_string()])
            .args(["-management", &dns_management.to_string()])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (Debian package pebble) must be installed");
        let mut p = Self {
            directory: format!("https://{api}/dir"),
            api_ca_file: path("api-ca.pem"),
            hook: vec![
                "python3".into(),
                path("hook.py").display().to_string(),
                format!("http://{dns_management}"),
                path("hook.log").display().to_string(),
            ],
            hook_log: path("hook.log"),
            nonce_reject: 5,
            api,
            management,
            dns,
            dns_management,
            api_ca_pem: ca.ca_pem(),
            pebble: None,
            challtestsrv,
            _reserved: vec![r1, r2, r3, r4],
            dir,
        };
        p.spawn().await;
        p
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pebble.log"))
            .unwrap();
        self.pebble = Some(
            Command::new("pebble")
                .args(["-config", &path_str(&self.dir.path().join("pebble.json"))])
                .args(["-dnsserver", &self.dns.to_string(), "-strict=false"])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_AUTHZREUSE", "0")
                .env("PEBBLE_WFE_NONCEREJECT", self.nonce_reject.to_string())
                .stdout(log)
                .stderr(Stdio::null())
                .spawn()
                .expect("pebble (Debian package pebble) must be installed"),
        );
        self.wait_ready().await;
    }

    /// Stop the CA and start it again on the same addresses, with none of its state: no
    /// accounts, no orders, a new issuing root (what a private CA whose database was reset
    /// looks like).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.api_ca_pem.as_bytes()).unwrap(),
            )
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    async fn wait_ready(&mut self) {
        let client = self.client();
        eventually(
            Duration::from_secs(20),
            "pebble not ready in time",
            async || {
                let dir = client.get(&self.directory).send().await;
                let dns = tokio::net::TcpStream::connect(self.dns_management).await;
                if dir.is_ok_and(|r| r.status() == 200) && dns.is_ok() {
                    return Ok(());
                }
                if let Some(status) = self.pebble.as_mut().unwrap().try_wait().unwrap() {
                    panic!("pebble exited with {status}:\n{}", self.log());
                }
                Err(format!("\n{}", self.log()))
            },
        )
        .await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Pebble's issuing root (a new one on every Pebble start), PEM.
    pub async fn root_pem(&self) -> String {
        let r = self
            .client()
            .get(format!("https://{}/roots/0", self.management))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// Resolve `host` to `ip` instead of 127.0.0.1 (to make its HTTP-01 and TLS-ALPN-01
    /// validations fail).
    pub async fn resolve(&self, host: &str, ip: &str) {
        let r = reqwest::Client::new()
            .post(format!("http://{}/add-a", self.dns_management))
            .body(serde_json::json!({"host": format!("{host}."), "addresses": [ip]}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Stop the CA (challtestsrv keeps running).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.pebble.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// The `[acme]` table for graphfront ordering from this Pebble.
    pub fn acme_toml(&self, extra: &str) -> String {
        let hook: Vec<String> = self.hook.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "[acme]\ndirectory = \"{}\"\nca-file = \"{}\"\ncontact = [\"ops@example.com\"]\n\
             dns-hook = [{}]\nretry-initial = \"1s\"\nretry-max = \"8s\"\norder-timeout = \"30s\"\n{extra}\n",
            self.directory,
            self.api_ca_file.display(),
            hook.join(", ")
        )
    }

    /// The hook calls so far, one `set|clear <record>` per line.
    pub fn hook_calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.hook_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn api(&self) -> SocketAddr {
        self.api
    }
}

fn path_str(p: &std::path::Path) -> String {
    p.display().to_string()
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.challtestsrv.kill();
        let _ = self.challtestsrv.wait();
    }
}
