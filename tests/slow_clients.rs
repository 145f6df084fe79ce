//! Slow and fat clients on the https listener: total deadlines for the TLS handshake, the
//! request head and the request body, a cap on the head's size and on the connections one
//! address holds. Each case asserts what the client sees, that the edge closes, that the
//! upstream saw nothing, and the metric that counts it.

mod common;

use std::time::{Duration, Instant};

use common::ws::{h2_connect, tls_connect, try_tls_connect};
use common::{eventually, ApiSite, SiteCerts, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deadlines of one second (so the cases run fast), a 8 KiB head, 4 connections per client.
const LIMITS: &str = "[timeouts]\ntls-handshake = \"1s\"\nrequest-header = \"1s\"\n\
                      request-body = \"1s\"\n[listeners]\nmax-request-header = \"8KiB\"\n\
                      max-connections-per-client = 4\n";

async fn setup() -> (Upstream, ApiSite) {
    setup_with(LIMITS).await
}

async fn setup_with(top: &str) -> (Upstream, ApiSite) {
    let up = Upstream::start(false).await;
    let extra = format!("upstream-ca-file = \"{}\"\n", up.ca_file().display());
    let site =
        ApiSite::start_with_top(&up.url("/graphql"), SiteCerts::new(), &extra, "0s", top).await;
    (up, site)
}

async fn limit(site: &ApiSite, name: &str) -> f64 {
    site.edge
        .metric(&format!(
            "graphfront_client_limits_total{{limit=\"{name}\"}}"
        ))
        .await
}

/// Read until the peer closes (at most `within`); what arrived, and whether it closed.
async fn read_to_close<R: AsyncReadExt + Unpin>(r: &mut R, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    let closed = loop {
        match tokio::time::timeout_at(deadline, r.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

const QUERY: &str = r#"{"query":"{ hello }"}"#;

fn post(extra_headers: &str) -> String {
    format!(
        "POST /graphql?mark=slow HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra_headers}\r\n{QUERY}",
        QUERY.len()
    )
}

fn upstream_saw_nothing(up: &Upstream) {
    let seen: Vec<String> = up.recorder.requests().into_iter().map(|r| r.uri).collect();
    assert!(seen.is_empty(), "the upstream saw {seen:?}");
}

#[tokio::test]
async fn a_trickled_request_head_gets_408_and_the_connection_closes() {
    let (up, site) = setup().await;
    let tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let started = Instant::now();
    wr.write_all(b"POST /graphql HTTP/1.1\r\nHost: api.test\r\n")
        .await
        .unwrap();
    // One header line every 200 ms: each read alone is quick, the head never ends.
    let trickle = tokio::spawn(async move {
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let (text, closed) = read_to_close(&mut rd, Duration::from_secs(8)).await;
    trickle.abort();
    assert!(closed, "the trickling connection stayed open: {text}");
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("REQUEST_HEADER_TIMEOUT"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    // Cut at the deadline, long before the trickle (10 s) would have ended.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    upstream_saw_nothing(&up);
    assert!(limit(&site, "request_header_timeout").await >= 1.0);
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_without_an_answer() {
    let (up, site) = setup().await;
    let mut tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    let (text, closed) = read_to_close(&mut tls, Duration::from_secs(6)).await;
    assert!(closed, "a silent connection stayed open");
    assert_eq!(text, "", "an answer nobody asked for");
    upstream_saw_nothing(&up);
}

#[tokio::test]
async fn keep_alive_connections_may_idle_between_requests_longer_than_the_head_deadline() {
    let (up, site) = setup().await;
    let mut tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    for round in 0..2 {
        if round == 1 {
            // Idle for more than request-header: the next head is timed from its first byte.
            tokio::time::sleep(Duration::from_millis(2500)).await;
        }
        tls.write_all(post("").as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while !String::from_utf8_lossy(&got).contains("\"hello\"") {
            let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(
                n > 0,
                "closed after round {round}: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"HTTP/1.1 200 "),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(up.recorder.requests().len(), 2);
}

#[tokio::test]
async fn tls_handshakes_have_a_total_deadline() {
    let (up, site) = setup().await;
    // A connection that never starts TLS, and one that stops half-way through its hello.
    let mut silent = tokio::net::TcpStream::connect(site.edge.https)
        .await
        .unwrap();
    let mut partial = tokio::net::TcpStream::connect(site.edge.https)
        .await
        .unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let started = Instant::now();
    for (name, s) in [("silent", &mut silent), ("partial hello", &mut partial)] {
        let (_, closed) = read_to_close(s, Duration::from_secs(6)).await;
        assert!(closed, "{name}: still open after {:?}", started.elapsed());
    }
    assert!(limit(&site, "tls_handshake_timeout").await >= 2.0);
    // A handshake in time still works.
    let mut tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    tls.write_all(post("Connection: close\r\n").as_bytes())
        .await
        .unwrap();
    let (text, _) = read_to_close(&mut tls, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert_eq!(up.recorder.requests().len(), 1);
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_and_a_fitting_one_passes() {
    let (up, site) = setup().await;
    let big = format!("x-big: {}\r\n", "a".repeat(10 * 1024));
    let mut tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    tls.write_all(post(&big).as_bytes()).await.unwrap();
    let (text, closed) = read_to_close(&mut tls, Duration::from_secs(5)).await;
    assert!(closed, "{text}");
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    assert!(text.contains("REQUEST_HEADER_TOO_LARGE"), "{text}");
    upstream_saw_nothing(&up);
    assert!(limit(&site, "request_header_too_large").await >= 1.0);

    // More header lines than pingora parses: the edge's own 431, not pingora's bare 400.
    let many: String = (0..300).map(|i| format!("x-{i}: 1\r\n")).collect();
    let mut tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    tls.write_all(post(&many).as_bytes()).await.unwrap();
    let (text, closed) = read_to_close(&mut tls, Duration::from_secs(5)).await;
    assert!(closed, "{text}");
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    assert!(text.contains("REQUEST_HEADER_TOO_LARGE"), "{text}");
    assert!(!text.contains("Pingora"), "{text}");

    let fits = format!("x-big: {}\r\nConnection: close\r\n", "a".repeat(6 * 1024));
    let mut tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    tls.write_all(post(&fits).as_bytes()).await.unwrap();
    let (text, _) = read_to_close(&mut tls, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");

    // HTTP/2 header lists have the same limit.
    let mut h2 = h2_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    let req = http::Request::post("https://api.test/graphql?mark=h2big")
        .header("content-type", "application/json")
        .header("x-big", "a".repeat(10 * 1024))
        .body(())
        .unwrap();
    let refused = match h2.send_request(req, false) {
        Ok((resp, mut body)) => {
            let _ = body.send_data(bytes::Bytes::from_static(QUERY.as_bytes()), true);
            match tokio::time::timeout(Duration::from_secs(5), resp).await {
                Ok(Ok(r)) => r.status() != 200,
                Ok(Err(_)) => true,
                Err(_) => panic!("no answer to an oversized h2 header list"),
            }
        }
        Err(_) => true,
    };
    assert!(refused, "an oversized h2 header list was served");
    let seen: Vec<String> = up.recorder.requests().into_iter().map(|r| r.uri).collect();
    assert!(!seen.iter().any(|u| u.contains("h2big")), "{seen:?}");
}

#[tokio::test]
async fn one_client_address_holds_at_most_its_connections() {
    let (up, site) = setup().await;
    let ca = site.certs.ca_pem();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tls_connect(site.edge.https, "api.test", &ca).await);
    }
    // The fifth is closed before its handshake.
    let fifth = try_tls_connect(site.edge.https, "api.test", &ca).await;
    assert!(fifth.is_err(), "a fifth connection was accepted");
    assert!(limit(&site, "connections_per_client").await >= 1.0);
    // The held ones still work.
    let first = held.first_mut().unwrap();
    first.write_all(post("").as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    // Once one closes, a new one gets its slot.
    held.pop();
    let what = "the freed slot was not given back";
    eventually(Duration::from_secs(5), what, async || {
        try_tls_connect(site.edge.https, "api.test", &ca)
            .await
            .map(drop)
    })
    .await;
    assert_eq!(up.recorder.requests().len(), 1);
}

#[tokio::test]
async fn slow_request_bodies_get_408_on_http1_and_http2() {
    let (up, site) = setup().await;
    let mut tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    let head = format!(
        "POST /graphql?mark=slowbody HTTP/1.1\r\nHost: api.test\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        QUERY.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let trickle = tokio::spawn(async move {
        for b in QUERY.as_bytes() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let (text, closed) = read_to_close(&mut rd, Duration::from_secs(6)).await;
    trickle.abort();
    assert!(closed, "{text}");
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("REQUEST_BODY_TIMEOUT"), "{text}");
    // Answered at the deadline, not after waiting out the body.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let mut h2 = h2_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    let req = http::Request::post("https://api.test/graphql?mark=slowbody")
        .header("content-type", "application/json")
        .header("content-length", QUERY.len())
        .body(())
        .unwrap();
    let (resp, mut body) = h2.send_request(req, false).unwrap();
    body.send_data(bytes::Bytes::from_static(&QUERY.as_bytes()[..3]), false)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(6), resp)
        .await
        .expect("an answer to a stalled h2 body")
        .unwrap();
    assert_eq!(resp.status(), 408);
    upstream_saw_nothing(&up);
    assert!(limit(&site, "request_body_timeout").await >= 2.0);
}

#[tokio::test]
async fn many_slow_clients_are_all_cut_while_others_are_served() {
    let (up, site) = setup_with(
        "[timeouts]\nrequest-header = \"2s\"\n[listeners]\nmax-connections-per-client = 0\n",
    )
    .await;
    let ca = site.certs.ca_pem();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut tls = tls_connect(site.edge.https, "api.test", &ca).await;
        tls.write_all(b"GET /graphql?query=%7Bhello%7D HTTP/1.1\r\n")
            .await
            .unwrap();
        slow.push(tls);
    }
    // The edge answers others meanwhile.
    let resp = site
        .client
        .post(site.url())
        .header("content-type", "application/json")
        .body(QUERY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut tasks = Vec::new();
    for mut tls in slow {
        tasks.push(tokio::spawn(async move {
            // Keep trickling; the edge must cut each one at its deadline all the same.
            for i in 0..40 {
                if tls
                    .write_all(format!("x-{i}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    return true;
                }
                let mut buf = [0u8; 1024];
                match tokio::time::timeout(Duration::from_millis(250), tls.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    Ok(Ok(_)) => {
                        // The 408; the close follows.
                        let (_, closed) = read_to_close(&mut tls, Duration::from_secs(2)).await;
                        return closed;
                    }
                    Err(_) => {}
                }
            }
            false
        }));
    }
    let mut cut = 0;
    for t in tasks {
        if t.await.unwrap() {
            cut += 1;
        }
    }
    assert_eq!(cut, 200, "slow connections left open");
    assert!(limit(&site, "request_header_timeout").await >= 200.0);
    assert_eq!(up.recorder.requests().len(), 1);
}
