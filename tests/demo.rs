//! `graphfront demo`, the README's first command: the built-in API behind graphfront on https,
//! with the curl commands it prints working as printed.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, reserve_addr};

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_demo_serves_queries_mutations_and_edge_errors_over_https() {
    let (_r1, https) = reserve_addr();
    let (_r2, admin) = reserve_addr();
    let out = tempfile::NamedTempFile::new().unwrap();
    let _demo = Demo(
        Command::new(binary())
            .args(["demo", "--port", &https.port().to_string()])
            .args(["--admin-port", &admin.port().to_string()])
            .stdout(out.reopen().unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let ca_path = loop {
        let printed = std::fs::read_to_string(out.path()).unwrap();
        if let Some(ca) = printed
            .split_whitespace()
            .find(|w| w.ends_with("ca.pem"))
            .filter(|_| printed.contains("Stop with Ctrl-C"))
        {
            break ca.trim_end_matches(')').to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the demo printed no instructions: {printed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ca = std::fs::read(&ca_path).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", https)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/graphql", https.port());
    let post = |q: &str| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "query": q }).to_string())
            .send()
    };
    // The listener is up once the instructions are printed, but poll briefly for the handshake.
    let first = loop {
        match post("{ listPosts { id title } }").await {
            Ok(r) => break r,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["data"]["listPosts"][0]["title"], "Post 1");

    let r = post("mutation { createPost(title: \"hi\") { id title } }")
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["data"]["createPost"]["title"], "hi");

    let r = post("{ broken").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );

    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "graphfront_http_requests_total{operation=\"mutation\",site=\"demo\",status=\"2xx\"} 1"
        ),
        "{metrics}"
    );
}
