//! Certificates by SNI: several domains and a wildcard, runtime replacement without restart,
//! unknown SNI refused (or the fallback site's certificate), Host/SNI mismatch → 421.

mod common;

use std::time::Duration;

use common::{eventually, gql, site, Edge, SiteCerts, Upstream};
use graphfront::demo::TestCa;

async fn two_sites(extra: &str) -> (Upstream, SiteCerts, Edge) {
    let up = Upstream::start(true).await;
    let certs = SiteCerts::new();
    let (ac, ak) = certs.write("a", &["a.test"]);
    let (bc, bk) = certs.write("b", &["*.b.test"]);
    let ca = format!("upstream-ca-file = \"{}\"\n", up.ca_file().display());
    let sites = site("a", &["a.test"], &up.url("/graphql"), &ac, &ak, &ca)
        + &site("b", &["*.b.test"], &up.url("/graphql"), &bc, &bk, &ca);
    let edge = Edge::start(&sites, extra).await;
    (up, certs, edge)
}

async fn hello(client: &reqwest::Client, url: &str) -> reqwest::Result<reqwest::Response> {
    common::post_gql(client, url, "{ hello }").await
}

/// The status of `{ hello }` on a new connection of `client` to `domain`.
async fn hello_status(edge: &Edge, client: &reqwest::Client, domain: &str) -> u16 {
    hello(client, &edge.url(domain, "/graphql"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn each_domain_gets_its_own_certificate_and_unknown_sni_is_refused() {
    let (_up, certs, edge) = two_sites("[tls]\nreload-interval = \"0s\"").await;
    let client = edge.client(
        &certs.ca_pem(),
        &["a.test", "shop.b.test", "c.test", "b.test"],
        false,
    );

    // The client verifies the certificate against the name it asked for: a success means the
    // store chose the certificate of that domain (exact, then wildcard).
    for domain in ["a.test", "shop.b.test"] {
        let r = hello(&client, &edge.url(domain, "/graphql")).await.unwrap();
        assert_eq!(r.status(), 200, "{domain}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            body["data"]["hello"], "Hello from the graphfront demo API",
            "{domain}"
        );
    }
    // Unknown names (and the wildcard's parent) get no certificate at all: the handshake fails.
    for domain in ["c.test", "b.test"] {
        let e = hello(&client, &edge.url(domain, "/graphql"))
            .await
            .unwrap_err();
        assert!(e.is_connect(), "{domain}: {e:?}");
    }
    assert!(
        edge.metric("graphfront_tls_handshake_failures_total{reason=\"unknown_sni\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn host_of_another_site_on_this_connection_is_misdirected() {
    let (up, certs, edge) = two_sites("").await;
    let client = edge.client(&certs.ca_pem(), &["a.test"], true);
    let before = up.recorder.count();
    let r = client
        .post(edge.url("a.test", "/graphql"))
        .header("host", "shop.b.test")
        .header("content-type", "application/json")
        .body(gql("{ hello }"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "MISDIRECTED_REQUEST"
    );
    assert_eq!(up.recorder.count(), before, "nothing reached the upstream");
}

/// Poll until a fresh connection trusting only `ca` succeeds for `domain`.
async fn wait_until_served_by(edge: &Edge, ca: &TestCa, domain: &str) {
    let what = "new certificate not served";
    eventually(Duration::from_secs(10), what, async || {
        let client = edge.client(&ca.ca_pem(), &[domain], true);
        match hello(&client, &edge.url(domain, "/graphql")).await {
            Ok(r) => {
                assert_eq!(r.status(), 200);
                Ok(())
            }
            Err(e) => Err(format!("{e}\n{}", edge.log())),
        }
    })
    .await
}

#[tokio::test]
async fn a_changed_certificate_file_is_served_without_restart() {
    let (_up, certs, edge) = two_sites("[tls]\nreload-interval = \"100ms\"").await;
    let old_client = edge.client(&certs.ca_pem(), &["a.test"], true);
    assert_eq!(hello_status(&edge, &old_client, "a.test").await, 200);

    let new_ca = TestCa::new();
    common::write_pair(&new_ca, certs.dir.path(), "a", &["a.test"]);
    wait_until_served_by(&edge, &new_ca, "a.test").await;

    // A client that trusts only the old CA now fails its handshake on a new connection.
    let fresh_old = edge.client(&certs.ca_pem(), &["a.test"], true);
    assert!(hello(&fresh_old, &edge.url("a.test", "/graphql"))
        .await
        .is_err());
    // The other site is untouched.
    let b = edge.client(&certs.ca_pem(), &["x.b.test"], true);
    assert_eq!(hello_status(&edge, &b, "x.b.test").await, 200);
}

#[tokio::test]
async fn the_admin_api_reloads_certificates_and_a_bad_pair_keeps_the_old_one() {
    let (_up, certs, edge) = two_sites("[tls]\nreload-interval = \"0s\"").await;
    let admin = reqwest::Client::new();
    let reload = format!("http://{}/admin/certificates/reload", edge.admin);

    // A key that does not belong to the certificate is refused; the old pair keeps serving.
    let other = TestCa::new();
    let (_, wrong_key) = other.issue(&["a.test"]);
    std::fs::write(certs.dir.path().join("a.key"), wrong_key).unwrap();
    let r = admin.post(&reload).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["errors"][0].as_str().unwrap().contains("site a"),
        "{body}"
    );
    let client = edge.client(&certs.ca_pem(), &["a.test"], true);
    assert_eq!(hello_status(&edge, &client, "a.test").await, 200);

    // A good new pair is swapped in by the API call at once.
    let new_ca = TestCa::new();
    common::write_pair(&new_ca, certs.dir.path(), "a", &["a.test"]);
    let r = admin.post(&reload).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let client = edge.client(&new_ca.ca_pem(), &["a.test"], true);
    assert_eq!(hello_status(&edge, &client, "a.test").await, 200);
}

#[tokio::test]
async fn with_an_admin_token_reloads_need_it() {
    const TOKEN: &str = "reload-token-0123456789";
    let extra = format!("[tls]\nreload-interval = \"0s\"\n[admin]\ntoken = \"{TOKEN}\"");
    let (_up, certs, edge) = two_sites(&extra).await;
    let admin = reqwest::Client::new();
    let reload = format!("http://{}/admin/certificates/reload", edge.admin);
    let new_ca = TestCa::new();
    common::write_pair(&new_ca, certs.dir.path(), "a", &["a.test"]);

    for auth in [None, Some("Bearer not-the-token-at-all")] {
        let mut req = admin.post(&reload);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.headers().contains_key("www-authenticate"));
    }
    // Still the old certificate.
    let old = edge.client(&certs.ca_pem(), &["a.test"], true);
    assert_eq!(hello_status(&edge, &old, "a.test").await, 200);

    let r = admin.post(&reload).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let client = edge.client(&new_ca.ca_pem(), &["a.test"], true);
    assert_eq!(hello_status(&edge, &client, "a.test").await, 200);
}

#[tokio::test]
async fn a_fallback_site_answers_unknown_sni() {
    let (_up, certs, edge) = two_sites("[tls]\nfallback-site = \"a\"").await;
    // A client that asks for c.test gets a.test's certificate: it fails name verification,
    // which proves a certificate was served rather than the handshake refused.
    let client = edge.client(&certs.ca_pem(), &["c.test"], true);
    let e = hello(&client, &edge.url("c.test", "/graphql"))
        .await
        .unwrap_err();
    let chain = format!("{e:?}");
    assert!(
        chain.contains("NotValidForName") || chain.contains("not valid for"),
        "{chain}"
    );
}

/// Whether `openssl s_client` completes a handshake with `sni` on `addr` given `args`, and
/// what it printed.
fn s_client(addr: std::net::SocketAddr, sni: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-brief", "-connect", &addr.to_string()])
        .args(["-servername", sni])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (
        out.status.success() && text.contains("CONNECTION ESTABLISHED"),
        text,
    )
}

#[tokio::test]
async fn only_tls_1_2_and_up_with_forward_secret_aead_suites_for_every_sni() {
    let (_up, _certs, edge) = two_sites("[tls]\nreload-interval = \"0s\"").await;
    let https = edge.https;
    tokio::task::spawn_blocking(move || {
        // Every TLS 1.2 suite this openssl knows, weak and export ones included.
        let all = std::process::Command::new("openssl")
            .args(["ciphers", "-tls1_2", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"])
            .output()
            .unwrap();
        let all = String::from_utf8(all.stdout).unwrap();
        let tls12: Vec<&str> = all
            .trim()
            .split(':')
            .filter(|c| !c.starts_with("TLS_"))
            .collect();
        assert!(tls12.len() > 20, "openssl lists {tls12:?}");
        for sni in ["a.test", "shop.b.test"] {
            for (proto, ok) in [
                ("-tls1", false),
                ("-tls1_1", false),
                ("-tls1_2", true),
                ("-tls1_3", true),
            ] {
                let (done, text) = s_client(https, sni, &[proto, "-cipher", "ALL:@SECLEVEL=0"]);
                assert_eq!(done, ok, "{sni} {proto}: {text}");
            }
            if sni != "a.test" {
                // One configuration serves every name: the suites are enumerated once.
                continue;
            }
            let mut accepted = Vec::new();
            for suite in &tls12 {
                let cipher = format!("{suite}:@SECLEVEL=0");
                if s_client(https, sni, &["-tls1_2", "-cipher", &cipher]).0 {
                    accepted.push(*suite);
                }
            }
            assert!(!accepted.is_empty(), "{sni}: no TLS 1.2 suite");
            for suite in &accepted {
                let forward_secret = suite.starts_with("ECDHE-");
                let aead = suite.ends_with("GCM-SHA256")
                    || suite.ends_with("GCM-SHA384")
                    || suite.ends_with("CHACHA20-POLY1305");
                assert!(
                    forward_secret && aead,
                    "{sni}: weak suite {suite} accepted ({accepted:?})"
                );
            }
            for suite in [
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
            ] {
                let (done, text) = s_client(https, sni, &["-tls1_3", "-ciphersuites", suite]);
                assert!(done, "{sni} {suite}: {text}");
            }
        }
    })
    .await
    .unwrap();
}
