//! Automatic certificates against the real Pebble ACME server: each challenge type issues a
//! certificate that clients verify against Pebble's root through graphfront; a restart reuses
//! the stored account and certificate; a short-lived certificate is renewed without a restart;
//! with the CA gone the old certificate keeps serving while retries back off; a failing domain
//! is retried without disturbing the others; a CA that forgot the account (or an operator who
//! deleted it) gets a new registration without a restart; refused nonces repeat the step, not
//! the order.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pebble::Pebble;
use common::{eventually, post_gql, Edge, EdgeAddrs, Upstream};
use serde_json::Value;

/// A site with `tls = "acme"` (or the listed challenges) in front of `up`.
fn acme_site(name: &str, domains: &[&str], challenges: Option<&[&str]>, up: &Upstream) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
    let tls = match challenges {
        None => "tls = \"acme\"".to_string(),
        Some(c) => {
            let c: Vec<String> = c.iter().map(|c| format!("{c:?}")).collect();
            format!("tls = {{ acme = true, challenges = [{}] }}", c.join(", "))
        }
    };
    format!(
        "\n[[site]]\nname = \"{name}\"\ndomains = [{}]\nupstream = \"{}\"\n{tls}\n",
        domains.join(", "),
        up.url("/graphql")
    )
}

/// Pebble validating against graphfront's listeners, and graphfront ordering from it.
async fn pebble_and_edge(
    validity: Option<Duration>,
    sites: impl Fn(&Upstream) -> String,
    acme_extra: &str,
) -> (Pebble, Edge, Upstream) {
    pebble_and_edge_eab(validity, None, sites, acme_extra).await
}

async fn pebble_and_edge_eab(
    validity: Option<Duration>,
    eab: Option<(&str, &str)>,
    sites: impl Fn(&Upstream) -> String,
    acme_extra: &str,
) -> (Pebble, Edge, Upstream) {
    let addrs = EdgeAddrs::reserve();
    let pebble = Pebble::start(addrs.http.port(), addrs.https.port(), validity, eab).await;
    let up = Upstream::start(false).await;
    let edge = Edge::start_at(addrs, &sites(&up), &pebble.acme_toml(acme_extra)).await;
    (pebble, edge, up)
}

async fn certificates(edge: &Edge) -> Vec<Value> {
    let body: Value = reqwest::get(format!("http://{}/admin/certificates", edge.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["sites"].as_array().unwrap().clone()
}

async fn site_status(edge: &Edge, site: &str) -> Value {
    certificates(edge)
        .await
        .into_iter()
        .find(|s| s["site"] == site)
        .unwrap()
}

/// Poll the admin API until `ready` holds for `site`'s entry; the entry.
async fn wait_for(
    edge: &Edge,
    site: &str,
    within: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let what = format!("site {site} not there");
    eventually(within, &what, async || {
        let s = site_status(edge, site).await;
        if ready(&s) {
            return Ok(s);
        }
        Err(format!("{s}\n{}", edge.log()))
    })
    .await
}

/// The ACME account's directory in graphfront's state (the only one: one CA).
fn account_dir(edge: &Edge) -> PathBuf {
    std::fs::read_dir(edge.dir.path().join("state/acme"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

fn serving(s: &Value) -> bool {
    s["serving"] == true
}

/// A GraphQL query over a TLS connection that trusts only Pebble's root.
async fn query_verified(edge: &Edge, root_pem: &str, domain: &str) -> (u16, Value) {
    let client = edge.client(root_pem, &[domain], true);
    let r = post_gql(&client, &edge.url(domain, "/graphql"), "{ __typename }")
        .await
        .unwrap_or_else(|e| panic!("request to {domain}: {e:?}\n{}", edge.log()));
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The leaf certificate graphfront presents for `domain` (whatever its validity).
async fn served_leaf(edge: &Edge, domain: &str) -> Option<Vec<u8>> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCertificate))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(edge.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(domain.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .ok()?;
    let leaf = tls.get_ref().1.peer_certificates()?.first()?.to_vec();
    Some(leaf)
}

#[derive(Debug)]
struct AnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    /// As for TLS 1.2: any signature.
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.verify_tls12_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Issue with one challenge type and check a client that trusts only Pebble gets an answer.
async fn issues_with(challenge: &str, domains: &[&str]) -> (Pebble, Edge, Upstream) {
    let started = Instant::now();
    let (pebble, edge, up) = pebble_and_edge(
        None,
        |up| acme_site("a", domains, Some(&[challenge]), up),
        "",
    )
    .await;
    let s = wait_for(&edge, "a", Duration::from_secs(30), serving).await;
    println!(
        "{challenge}: first certificate for {domains:?} after {:?} (graphfront start included)",
        started.elapsed()
    );
    assert_eq!(s["source"], "acme");
    assert_eq!(s["acme"]["state"], "valid", "{s}");
    let root = pebble.root_pem().await;
    for domain in domains {
        let domain = domain.replace("*.", "any.");
        let (status, body) = query_verified(&edge, &root, &domain).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["__typename"], "Query", "{body}");
    }
    assert_eq!(
        edge.metric(r#"graphfront_acme_orders_total{outcome="issued",site="a"}"#)
            .await,
        1.0
    );
    assert_eq!(
        edge.metric(&format!(
            r#"graphfront_acme_challenge_failures_total{{type="{challenge}"}}"#
        ))
        .await,
        0.0
    );
    let expires_in = edge
        .metric(r#"graphfront_tls_certificate_expires_in_seconds{site="a"}"#)
        .await;
    assert!(expires_in > 86_400.0, "{expires_in}");
    (pebble, edge, up)
}

#[tokio::test]
async fn http_01_issues_a_certificate_clients_verify() {
    issues_with("http-01", &["h.test", "www.h.test"]).await;
}

#[tokio::test]
async fn tls_alpn_01_issues_a_certificate_clients_verify() {
    issues_with("tls-alpn-01", &["t.test"]).await;
}

#[tokio::test]
async fn dns_01_issues_a_wildcard_certificate_through_the_hook() {
    let (pebble, _edge, _up) = issues_with("dns-01", &["d.test", "*.d.test"]).await;
    let calls = pebble.hook_calls();
    // Both names are validated under the same record; every set is cleared afterwards.
    let sets = calls.iter().filter(|c| c.starts_with("set ")).count();
    let clears = calls.iter().filter(|c| c.starts_with("clear ")).count();
    assert_eq!((sets, clears), (2, 2), "{calls:?}");
    assert!(
        calls.iter().all(|c| c.ends_with(" _acme-challenge.d.test")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_restart_reuses_the_stored_account_and_certificate() {
    let (_pebble, mut edge, _up) =
        pebble_and_edge(None, |up| acme_site("a", &["r.test"], None, up), "").await;
    wait_for(&edge, "a", Duration::from_secs(30), serving).await;
    let account = account_dir(&edge);
    let account_json = std::fs::read(account.join("account.json")).unwrap();
    let before = served_leaf(&edge, "r.test").await.unwrap();
    let mode = |p: PathBuf| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(account.join("account.json")), 0o600);
    assert_eq!(mode(account.join("sites/a/key.pem")), 0o600);

    edge.restart().await;
    // Served at once from the state directory: no order, no new account.
    assert_eq!(served_leaf(&edge, "r.test").await.unwrap(), before);
    let s = wait_for(&edge, "a", Duration::from_secs(10), |s| {
        s["acme"]["state"] == "valid"
    })
    .await;
    assert_eq!(s["acme"]["orders"], 0, "{s}");
    assert_eq!(
        std::fs::read(account.join("account.json")).unwrap(),
        account_json
    );
    let log = edge.log();
    assert_eq!(log.matches("acme: account created").count(), 1, "{log}");
    assert_eq!(
        edge.metric(r#"graphfront_acme_orders_total{outcome="issued",site="a"}"#)
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_due_certificate_is_renewed_in_place_and_survives_a_ca_outage() {
    // 12 s certificates fall due with 4 s left: renewed every 8 s or so.
    let (mut pebble, edge, _up) = pebble_and_edge(
        Some(Duration::from_secs(12)),
        |up| acme_site("a", &["n.test"], Some(&["http-01"]), up),
        "",
    )
    .await;
    wait_for(&edge, "a", Duration::from_secs(30), serving).await;
    let first = served_leaf(&edge, "n.test").await.unwrap();
    let renewed = renewed_leaf(&edge, "n.test", &first, Duration::from_secs(40)).await;
    let root = pebble.root_pem().await;
    let (status, _) = query_verified(&edge, &root, "n.test").await;
    assert_eq!(status, 200);

    // The CA goes away: the next renewal fails, retries back off, the last certificate serves.
    pebble.stop();
    let mut waits = Vec::new();
    for failures in 1..=3u64 {
        let s = wait_for(&edge, "a", Duration::from_secs(40), |s| {
            s["acme"]["failures"].as_u64() >= Some(failures)
        })
        .await;
        assert_eq!(s["acme"]["state"], "retrying", "{s}");
        waits.push(s["acme"]["retry_in_seconds"].as_f64().unwrap());
    }
    // retry-initial 1s, doubled each time (less up to a fifth of jitter).
    assert!(
        waits[0] <= 1.0 && waits[1] > 1.5 && waits[2] > 3.0,
        "{waits:?}"
    );
    assert!(waits[0] < waits[1] && waits[1] < waits[2], "{waits:?}");
    let last = account_dir(&edge).join("sites/a/cert.pem");
    let stored = std::fs::read(last).unwrap();
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let stored_leaf = CertificateDer::pem_slice_iter(&stored)
        .next()
        .unwrap()
        .unwrap();
    let serving_now = served_leaf(&edge, "n.test").await.unwrap();
    assert_eq!(
        serving_now,
        stored_leaf.to_vec(),
        "the last issued certificate serves"
    );
    assert_ne!(serving_now, first);
    let _ = renewed;
    // The reason names the step, the CA's URL and the cause at the bottom of the chain.
    let s = site_status(&edge, "a").await;
    let error = s["acme"]["last_error"].as_str().unwrap();
    assert!(error.contains(&pebble.api().to_string()), "{error}");
    assert!(error.contains("Connection refused"), "{error}");
    assert!(
        edge.metric(r#"graphfront_acme_orders_total{outcome="failed",site="a"}"#)
            .await
            >= 3.0
    );
}

#[tokio::test]
async fn a_failing_domain_is_retried_without_disturbing_other_sites() {
    let (pebble, edge, _up) = pebble_and_edge(
        None,
        |up| {
            acme_site("good", &["good.test"], Some(&["http-01"]), up)
                + &acme_site("bad", &["bad.test"], Some(&["http-01"]), up)
                + &acme_site(
                    "fallback",
                    &["nodns.test"],
                    Some(&["dns-01", "tls-alpn-01"]),
                    up,
                )
        },
        "",
    )
    .await;
    // bad.test resolves where graphfront does not listen: its validation always fails.
    pebble.resolve("bad.test", "127.0.0.2").await;
    let root = pebble.root_pem().await;
    wait_for(&edge, "good", Duration::from_secs(30), serving).await;
    let (status, _) = query_verified(&edge, &root, "good.test").await;
    assert_eq!(status, 200);

    // The DNS-01 record of nodns.test is never set: it falls back to TLS-ALPN-01 and succeeds.
    let f = wait_for(&edge, "fallback", Duration::from_secs(30), serving).await;
    // dns-01 first (failed), then tls-alpn-01; a retried nonce may add an order.
    assert!(f["acme"]["orders"].as_u64() >= Some(2), "{f}");
    assert!(
        edge.metric(r#"graphfront_acme_challenge_failures_total{type="dns-01"}"#)
            .await
            >= 1.0
    );

    let bad = wait_for(&edge, "bad", Duration::from_secs(40), |s| {
        s["acme"]["failures"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(bad["serving"], false, "{bad}");
    assert!(
        bad["acme"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("bad.test"),
        "{bad}"
    );
    // Its handshakes fail cleanly and are counted; the others are unaffected.
    assert!(served_leaf(&edge, "bad.test").await.is_none());
    assert!(
        edge.metric(r#"graphfront_tls_handshake_failures_total{reason="no_certificate"}"#)
            .await
            >= 1.0
    );
    let (status, _) = query_verified(&edge, &root, "good.test").await;
    assert_eq!(status, 200);
    assert!(
        edge.metric(r#"graphfront_acme_challenge_failures_total{type="http-01"}"#)
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn fifty_domains_are_ordered_concurrently() {
    let names: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
    let started = Instant::now();
    let (pebble, edge, _up) = pebble_and_edge(
        None,
        |up| {
            names
                .iter()
                .map(|n| acme_site(n, &[&format!("{n}.bulk.test")], Some(&["tls-alpn-01"]), up))
                .collect()
        },
        "",
    )
    .await;
    eventually(Duration::from_secs(120), "not all issued", async || {
        let sites = certificates(&edge).await;
        if sites.iter().all(serving) {
            return Ok(());
        }
        Err(format!("\n{}", edge.log()))
    })
    .await;
    println!("50 domains issued concurrently in {:?}", started.elapsed());
    let root = pebble.root_pem().await;
    for n in ["s0", "s25", "s49"] {
        let (status, _) = query_verified(&edge, &root, &format!("{n}.bulk.test")).await;
        assert_eq!(status, 200);
    }
    let metrics = edge.metrics().await;
    let failed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("graphfront_acme_orders_total{outcome=\"failed\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let log = edge.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("acme: order failed") || l.contains("challenge failed"))
        .collect();
    assert_eq!(failed, 0.0, "no order failed: {failures:#?}");
}

#[tokio::test]
async fn a_ca_requiring_external_account_binding_gets_it() {
    const KID: &str = "kid-1";
    const KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let (pebble, edge, _up) = pebble_and_edge_eab(
        None,
        Some((KID, KEY)),
        |up| acme_site("a", &["eab.test"], None, up),
        &format!("eab = {{ kid = \"{KID}\", hmac-key = \"{KEY}\" }}"),
    )
    .await;
    wait_for(&edge, "a", Duration::from_secs(30), serving).await;
    let (status, _) = query_verified(&edge, &pebble.root_pem().await, "eab.test").await;
    assert_eq!(status, 200);
    assert!(!edge.log().contains(KEY), "the HMAC key is never logged");

    // Without the binding the same CA refuses the account: nothing is served, the reason shows.
    let (_pebble, edge, _up) = pebble_and_edge_eab(
        None,
        Some((KID, KEY)),
        |up| acme_site("a", &["eab.test"], None, up),
        "",
    )
    .await;
    let s = wait_for(&edge, "a", Duration::from_secs(30), |s| {
        s["acme"]["failures"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(s["serving"], false);
    let error = s["acme"]["last_error"].as_str().unwrap().to_lowercase();
    assert!(error.contains("external"), "{error}");
}

/// The leaf served for `domain` once it differs from `old`.
async fn renewed_leaf(edge: &Edge, domain: &str, old: &[u8], within: Duration) -> Vec<u8> {
    eventually(within, "not renewed", async || {
        match served_leaf(edge, domain).await {
            Some(now) if now != old => Ok(now),
            _ => Err(format!("\n{}", edge.log())),
        }
    })
    .await
}

#[tokio::test]
async fn a_ca_that_forgot_the_account_or_a_deleted_account_gets_a_new_one_without_a_restart() {
    // 12 s certificates fall due with 4 s left.
    let (mut pebble, edge, _up) = pebble_and_edge(
        Some(Duration::from_secs(12)),
        |up| acme_site("a", &["forgot.test"], Some(&["http-01"]), up),
        "",
    )
    .await;
    wait_for(&edge, "a", Duration::from_secs(30), serving).await;
    let dir = account_dir(&edge);
    let first_account = std::fs::read(dir.join("account.json")).unwrap();

    // The operator deletes the account: the next renewal registers a new one.
    std::fs::remove_file(dir.join("account.json")).unwrap();
    let leaf = served_leaf(&edge, "forgot.test").await.unwrap();
    let leaf = renewed_leaf(&edge, "forgot.test", &leaf, Duration::from_secs(40)).await;
    let second_account = std::fs::read(dir.join("account.json")).unwrap();
    assert_ne!(second_account, first_account);
    assert_eq!(edge.log().matches("acme: account created").count(), 2);

    // The CA's database is reset: it answers accountDoesNotExist; graphfront registers anew,
    // keeps the old file beside the new one and orders at once.
    pebble.restart().await;
    renewed_leaf(&edge, "forgot.test", &leaf, Duration::from_secs(40)).await;
    let root = pebble.root_pem().await;
    let (status, _) = query_verified(&edge, &root, "forgot.test").await;
    assert_eq!(status, 200, "the certificate of the restarted CA serves");
    let log = edge.log();
    assert_eq!(
        log.matches("acme: the CA no longer knows the account")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("accountDoesNotExist"), "{log}");
    assert_eq!(log.matches("acme: account created").count(), 3, "{log}");
    let kept: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("account.json.replaced-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), second_account);
    assert_ne!(
        std::fs::read(dir.join("account.json")).unwrap(),
        second_account
    );
    let s = wait_for(&edge, "a", Duration::from_secs(10), |s| {
        s["acme"]["state"] == "valid"
    })
    .await;
    assert!(s["acme"]["last_error"].is_null(), "{s}");

    // Every ACME line of the log names its site.
    let unnamed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("acme:") && !l.contains("site=a"))
        .collect();
    assert!(unnamed.is_empty(), "{unnamed:#?}");
}

#[tokio::test]
async fn a_refused_nonce_sends_the_step_again_instead_of_a_new_order() {
    let addrs = EdgeAddrs::reserve();
    let mut pebble = Pebble::start(addrs.http.port(), addrs.https.port(), None, None).await;
    // Half of all nonces refused: instant-acme's three tries per request fail one time in
    // eight, so most orders would be lost if a refused nonce threw the order away.
    pebble.nonce_reject = 50;
    pebble.restart().await;
    let up = Upstream::start(false).await;
    let sites = acme_site("a", &["nonce.test"], Some(&["http-01"]), &up)
        + &acme_site("b", &["nonce2.test"], Some(&["tls-alpn-01"]), &up);
    let edge = Edge::start_at(addrs, &sites, &pebble.acme_toml("")).await;
    let root = pebble.root_pem().await;
    for (site, domain) in [("a", "nonce.test"), ("b", "nonce2.test")] {
        let s = wait_for(&edge, site, Duration::from_secs(60), serving).await;
        assert_eq!(s["acme"]["orders"], 1, "one order: {s}\n{}", edge.log());
        let (status, _) = query_verified(&edge, &root, domain).await;
        assert_eq!(status, 200);
    }
    assert!(
        pebble.log().contains("badNonce") || pebble.log().contains("nonce"),
        "Pebble refused nonces"
    );
}
