//! Forwarding to a real HTTPS GraphQL upstream (the demo API with its own test CA) over h1 and
//! h2: what the upstream receives, GraphQL over HTTP rules, failures as GraphQL errors, metrics.

mod common;

use common::{gql, post_gql, site, status_and_code, Edge, SiteCerts, Upstream};
use serde_json::Value;

struct Setup {
    up: Upstream,
    certs: SiteCerts,
    edge: Edge,
}

/// One site `api.test` with `/api/graphql` mapped to the upstream's `/graphql`.
async fn setup(site_extra: &str) -> Setup {
    let up = Upstream::start(true).await;
    let certs = SiteCerts::new();
    let (c, k) = certs.write("api", &["api.test"]);
    let extra = format!(
        "graphql-path = \"/api/graphql\"\nupstream-ca-file = \"{}\"\n{site_extra}",
        up.ca_file().display()
    );
    let sites = site("api", &["api.test"], &up.url("/graphql"), &c, &k, &extra);
    let edge = Edge::start(&sites, "").await;
    Setup { up, certs, edge }
}

impl Setup {
    fn client(&self, h1_only: bool) -> reqwest::Client {
        self.edge
            .client(&self.certs.ca_pem(), &["api.test"], h1_only)
    }
    fn url(&self) -> String {
        self.edge.url("api.test", "/api/graphql")
    }
    async fn post(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .client(true)
            .post(self.url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn forwards_over_h1_and_h2_with_host_path_and_forwarded_headers() {
    let s = setup("").await;
    for (h1_only, version) in [
        (true, reqwest::Version::HTTP_11),
        (false, reqwest::Version::HTTP_2),
    ] {
        s.up.recorder.clear();
        let body = gql("query Get { getPost(id: \"1\") { id title } }");
        let r = s
            .client(h1_only)
            .post(s.url())
            .header("content-type", "application/json")
            .header("x-forwarded-for", "203.0.113.7")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.version(), version);
        assert_eq!(r.status(), 200);
        let got: Value = r.json().await.unwrap();
        assert_eq!(got["data"]["getPost"]["id"], "1", "{got}");

        let seen = s.up.recorder.requests();
        assert_eq!(seen.len(), 1);
        let req = &seen[0];
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.uri, "/graphql",
            "the site path is mapped to the upstream path"
        );
        assert_eq!(
            req.body,
            body.as_bytes(),
            "the body reaches the upstream unchanged"
        );
        let h = |n: &str| {
            req.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(h("host"), format!("localhost:{}", s.up.addr.port()));
        assert_eq!(h("x-forwarded-for"), "203.0.113.7, 127.0.0.1");
        assert_eq!(h("x-forwarded-proto"), "https");
        assert_eq!(
            h("x-forwarded-host"),
            format!("api.test:{}", s.edge.https.port())
        );
    }
}

#[tokio::test]
async fn get_queries_pass_and_get_mutations_are_refused() {
    let s = setup("").await;
    let client = s.client(true);
    // A bare GET is what a cross-site <img> or link sends: refused (CSRF prevention).
    let r = client
        .get(s.url())
        .query(&[("query", "{ getPost(id: \"2\") { id } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        status_and_code(r).await,
        (400, "CSRF_PREVENTED".to_string())
    );
    assert_eq!(s.up.recorder.count(), 0);
    let r = client
        .get(s.url())
        .header("apollo-require-preflight", "true")
        .query(&[("query", "{ getPost(id: \"2\") { id } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["getPost"]["id"], "2");
    let seen = s.up.recorder.requests();
    assert_eq!(seen[0].method, "GET");
    assert!(
        seen[0].uri.starts_with("/graphql?query="),
        "{}",
        seen[0].uri
    );

    let before = s.up.recorder.count();
    let r = client
        .get(s.url())
        .header("x-apollo-operation-name", "Touch")
        .query(&[("query", "mutation { touchPost(id: \"1\") { id } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), "METHOD_NOT_ALLOWED");
    assert_eq!(s.up.recorder.count(), before);
}

#[tokio::test]
async fn broken_requests_get_400_and_never_reach_the_upstream() {
    let s = setup("").await;
    let cases = [
        ("{\"query\": ", "INVALID_JSON"),
        ("[{\"query\": \"{ hello }\"}]", "BATCH_NOT_SUPPORTED"),
        ("{\"variables\": {}}", "INVALID_REQUEST"),
        ("{\"query\": \"{ hello \"}", "GRAPHQL_PARSE_FAILED"),
        (
            "{\"query\": \"query A { hello } query B { hello }\"}",
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "{\"query\": \"query A { hello }\", \"operationName\": \"B\"}",
            "OPERATION_NOT_FOUND",
        ),
    ];
    for (body, want) in cases {
        let (status, got) = s.post(body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(code(&got), want, "{body}: {got}");
        assert_eq!(got["errors"][0]["errorType"], "BadRequestException");
    }
    assert_eq!(s.up.recorder.count(), 0);
    let rejected = s
        .edge
        .metric("graphfront_http_rejections_total{code=\"GRAPHQL_PARSE_FAILED\",site=\"api\"}")
        .await;
    assert_eq!(rejected, 1.0);
}

/// A valid query padded with whitespace to exactly `len` bytes.
fn padded(len: usize) -> String {
    let q = gql("{ hello }");
    let mut s = q[..q.len() - 1].to_string();
    s.push_str(&" ".repeat(len - q.len()));
    s.push('}');
    assert_eq!(s.len(), len);
    s
}

#[tokio::test]
async fn bodies_over_64kib_are_refused_never_forwarded_unchecked() {
    let s = setup("").await;
    let (status, body) = s.post(padded(64 * 1024)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["hello"], "Hello from the graphfront demo API");
    let before = s.up.recorder.count();
    let (status, body) = s.post(padded(64 * 1024 + 1)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(code(&body), "BODY_TOO_LARGE");
    assert_eq!(s.up.recorder.count(), before);

    let limited = setup("max-body = \"1KiB\"").await;
    let (status, body) = limited.post(padded(1025)).await;
    assert_eq!(status, 413);
    assert_eq!(code(&body), "BODY_TOO_LARGE");
    assert_eq!(limited.up.recorder.count(), 0);
    let (status, _) = limited.post(padded(1024)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let certs = SiteCerts::new();
    let (c, k) = certs.write("api", &["down.test", "slow.test"]);
    let up = Upstream::start(true).await;
    let ca = format!("upstream-ca-file = \"{}\"\n", up.ca_file().display());
    let (_reserved, dead_port) = common::refused_port();
    let dead = format!("https://127.0.0.1:{dead_port}/graphql");
    let sites = site("down", &["down.test"], &dead, &c, &k, &ca)
        + &site(
            "slow",
            &["slow.test"],
            &up.url("/graphql"),
            &c,
            &k,
            &format!("{ca}[site.timeouts]\nread = \"300ms\"\n"),
        );
    let edge = Edge::start(&sites, "").await;
    let client = edge.client(&certs.ca_pem(), &["down.test", "slow.test"], true);

    let r = post_gql(&client, &edge.url("down.test", "/graphql"), "{ hello }").await;
    let (status, code) = status_and_code(r.unwrap()).await;
    assert_eq!((status, code.as_str()), (502, "UPSTREAM_UNAVAILABLE"));

    let r = post_gql(
        &client,
        &edge.url("slow.test", "/graphql"),
        "{ slow(ms: 5000) }",
    )
    .await;
    let (status, code) = status_and_code(r.unwrap()).await;
    assert_eq!((status, code.as_str()), (504, "UPSTREAM_TIMEOUT"));

    assert_eq!(
        edge.metric("graphfront_upstream_errors_total{kind=\"connect\",site=\"down\"}")
            .await,
        1.0
    );
    assert_eq!(
        edge.metric("graphfront_upstream_errors_total{kind=\"timeout\",site=\"slow\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn an_upstream_with_an_untrusted_certificate_is_refused() {
    // No upstream-ca-file: the upstream's test CA is not trusted, so TLS verification fails.
    let up = Upstream::start(true).await;
    let certs = SiteCerts::new();
    let (c, k) = certs.write("api", &["api.test"]);
    let edge = Edge::start(
        &site("api", &["api.test"], &up.url("/graphql"), &c, &k, ""),
        "",
    )
    .await;
    let client = edge.client(&certs.ca_pem(), &["api.test"], true);
    let r = post_gql(&client, &edge.url("api.test", "/graphql"), "{ hello }").await;
    let (status, code) = status_and_code(r.unwrap()).await;
    assert_eq!((status, code.as_str()), (502, "UPSTREAM_TLS_FAILED"));
    assert_eq!(up.recorder.count(), 0);
}

#[tokio::test]
async fn metrics_count_requests_by_site_operation_and_status() {
    let s = setup("").await;
    let q = "graphfront_http_requests_total{operation=\"query\",site=\"api\",status=\"2xx\"}";
    let m = "graphfront_http_requests_total{operation=\"mutation\",site=\"api\",status=\"2xx\"}";
    assert_eq!(s.edge.metric(q).await, 0.0);
    for _ in 0..3 {
        assert_eq!(s.post(gql("{ hello }")).await.0, 200);
    }
    assert_eq!(
        s.post(gql("mutation { touchPost(id: \"1\") { id } }"))
            .await
            .0,
        200
    );
    assert_eq!(s.edge.metric_settled(q, 3.0).await, 3.0);
    assert_eq!(s.edge.metric_settled(m, 1.0).await, 1.0);
    let text = s.edge.metrics().await;
    for name in [
        "graphfront_http_request_duration_seconds_bucket",
        "graphfront_upstream_response_duration_seconds_bucket",
        "graphfront_http_response_body_bytes_total",
        "graphfront_tls_handshakes_total",
        "graphfront_tls_connections_open",
        "graphfront_tls_certificate_expiry_timestamp_seconds{site=\"api\"}",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    // The access log carries the classification, never the query text.
    let log = s.edge.log();
    assert!(
        log.contains("operation=\"mutation\"") || log.contains("operation=mutation"),
        "{log}"
    );
    assert!(!log.contains("touchPost"), "query text leaked into the log");
}

#[tokio::test]
async fn plain_http_redirects_to_https_and_unknown_paths_are_404() {
    let s = setup("").await;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{}/api/graphql?query=x", s.edge.http))
        .header("host", "api.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!(
            "https://api.test:{}/api/graphql?query=x",
            s.edge.https.port()
        )
        .as_str()
    );
    let r = s
        .client(true)
        .get(s.edge.url("api.test", "/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), "NOT_FOUND");
}

#[tokio::test]
async fn upstream_h2_is_negotiated_when_configured() {
    let s = setup("upstream-h2 = true").await;
    assert_eq!(s.post(gql("{ hello }")).await.0, 200);
    assert_eq!(s.up.recorder.requests()[0].version, http::Version::HTTP_2);
    let h1 = setup("").await;
    assert_eq!(h1.post(gql("{ hello }")).await.0, 200);
    assert_eq!(h1.up.recorder.requests()[0].version, http::Version::HTTP_11);
}

#[tokio::test]
async fn operations_over_the_limits_are_refused_at_the_edge() {
    let s = setup("[site.limits]\nmax-depth = 2\nintrospection = false\n").await;
    assert_eq!(s.post(gql("{ getPost(id: \"1\") { id } }")).await.0, 200);
    let before = s.up.recorder.count();
    for (query, want) in [
        (
            "{ getPost(id: \"1\") { id ...F } } fragment F on Post { id }",
            None,
        ),
        (
            "{ a: getPost(id: \"1\") { ...F } } fragment F on Post { x { y } }",
            Some("LIMIT_DEPTH"),
        ),
        (
            "{ __type(name: \"Post\") { name } }",
            Some("INTROSPECTION_DISABLED"),
        ),
        (
            "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
            Some("FRAGMENT_CYCLE"),
        ),
    ] {
        let (status, body) = s.post(gql(query)).await;
        match want {
            None => assert_eq!(status, 200, "{query}: {body}"),
            Some(code_) => {
                assert_eq!((status, code(&body)), (400, code_), "{query}: {body}");
            }
        }
    }
    assert_eq!(
        s.up.recorder.count(),
        before + 1,
        "refused operations never reach the upstream"
    );
}

#[tokio::test]
async fn cors_preflights_are_answered_at_the_edge_for_allowed_origins() {
    let s = setup("[site.cors]\nallow-origins = [\"https://app.test\"]\nmax-age = \"5m\"\n").await;
    let client = s.client(true);
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, s.url())
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-api-key")
            .send()
    };
    let r = preflight("https://app.test").await.unwrap();
    assert_eq!(r.status(), 204);
    let h = |r: &reqwest::Response, n: &str| {
        r.headers().get(n).map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://app.test")
    );
    assert!(h(&r, "access-control-allow-headers")
        .unwrap()
        .contains("x-api-key"));
    assert_eq!(h(&r, "access-control-max-age").as_deref(), Some("300"));
    let r = preflight("https://evil.test").await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(h(&r, "access-control-allow-origin"), None);
    assert_eq!(
        s.up.recorder.count(),
        0,
        "preflights never reach the upstream"
    );

    // Actual requests from the allowed origin carry the CORS headers, errors included.
    let post = |origin: &'static str, body: String| {
        client
            .post(s.url())
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post("https://app.test", gql("{ hello }")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://app.test")
    );
    let r = post("https://app.test", gql("{ broken")).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        h(&r, "access-control-allow-origin").as_deref(),
        Some("https://app.test")
    );
    let r = post("https://evil.test", gql("{ hello }")).await.unwrap();
    assert_eq!(h(&r, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn simple_cross_site_posts_are_refused_unless_csrf_is_off() {
    let s = setup("").await;
    let form = |client: reqwest::Client, url: String| async move {
        client
            .post(url)
            .header("content-type", "text/plain")
            .body(gql("mutation { touchPost(id: \"1\") { id } }"))
            .send()
            .await
            .unwrap()
    };
    let r = form(s.client(true), s.url()).await;
    assert_eq!(
        status_and_code(r).await,
        (400, "CSRF_PREVENTED".to_string())
    );
    assert_eq!(s.up.recorder.count(), 0);

    let off = setup("csrf = false").await;
    let r = form(off.client(true), off.url()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(off.up.recorder.count(), 1);
}

#[tokio::test]
async fn every_answer_the_edge_writes_carries_the_sites_cors_headers() {
    let certs = SiteCerts::new();
    let (c, k) = certs.write("api", &["down.test", "slow.test"]);
    let up = Upstream::start(true).await;
    let cors = "[site.cors]\nallow-origins = [\"https://app.test\"]\n";
    let ca = format!("upstream-ca-file = \"{}\"\n", up.ca_file().display());
    let (_reserved, dead_port) = common::refused_port();
    let dead = format!("https://127.0.0.1:{dead_port}/graphql");
    let sites = site(
        "down",
        &["down.test"],
        &dead,
        &c,
        &k,
        &format!("{ca}{cors}"),
    ) + &site(
        "slow",
        &["slow.test"],
        &up.url("/graphql"),
        &c,
        &k,
        &format!("{ca}max-body = \"1KiB\"\n[site.timeouts]\nread = \"300ms\"\n{cors}"),
    );
    let edge = Edge::start(&sites, "").await;
    let client = edge.client(&certs.ca_pem(), &["down.test", "slow.test"], true);
    let post = |domain: &str, body: String| {
        client
            .post(edge.url(domain, "/graphql"))
            .header("origin", "https://app.test")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let allowed = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string())
    };
    let cases = [
        ("down.test", gql("{ hello }"), 502),
        ("slow.test", gql("{ slow(ms: 5000) }"), 504),
        (
            "slow.test",
            gql(&format!("{{ hello }} # {}", "x".repeat(2048))),
            413,
        ),
    ];
    for (domain, body, status) in cases {
        let r = post(domain, body)
            .await
            .unwrap_or_else(|e| panic!("{status}: {e:?}"));
        assert_eq!(r.status(), status, "{domain}");
        assert_eq!(allowed(&r).as_deref(), Some("https://app.test"), "{status}");
        // The edge closes after these: it says so, or the client's next request on the
        // connection would meet a reset.
        assert_eq!(r.headers()["connection"], "close", "{status}");
    }
    // 421: a connection made for slow.test asking for down.test carries down.test's headers.
    let mut tls = common::ws::tls_connect(edge.https, "slow.test", &certs.ca_pem()).await;
    let body = gql("{ hello }");
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: down.test\r\nOrigin: https://app.test\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut tls, request.as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut out).await;
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 421"), "{text}");
    assert!(
        text.contains("access-control-allow-origin: https://app.test"),
        "{text}"
    );
}
