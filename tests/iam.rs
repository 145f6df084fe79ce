//! AWS_IAM at the edge. Requests signed by the official `aws-sigv4` crate pass the SigV4
//! pre-check and reach the upstream exactly as signed (and never through the cache); tampered
//! ones are refused with no upstream request. Edge signing: the upstream receives a SigV4
//! signature that recomputing with the edge's credentials reproduces.

mod common;

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use common::{ApiSite, SiteCerts, Upstream};
use serde_json::{json, Value};

type Headers = Vec<(String, String)>;

const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// SigV4 headers (authorization, x-amz-date) for a POST of `body` to `https://{host}{path}`.
fn signed(
    host: &str,
    path: &str,
    body: &[u8],
    region: &str,
    service: &str,
    at: SystemTime,
) -> Vec<(String, String)> {
    let identity =
        aws_credential_types::Credentials::new(KEY_ID, SECRET, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("https://{host}{path}");
    let request = SignableRequest::new(
        "POST",
        &url,
        [("host", host), ("content-type", "application/json")].into_iter(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    instructions
        .headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// POST `body` as JSON to `url`, signed now for `host` (eu-west-1, appsync) as an AppSync
/// client signs, with `headers` besides: the response and the signature's headers.
async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    host: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (reqwest::Response, Headers) {
    let signature = signed(
        host,
        "/graphql",
        body.as_bytes(),
        "eu-west-1",
        "appsync",
        SystemTime::now(),
    );
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (n, v) in headers
        .iter()
        .copied()
        .chain(signature.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    {
        req = req.header(n, v);
    }
    (req.send().await.unwrap(), signature)
}

#[tokio::test]
async fn sigv4_requests_are_prechecked_and_forwarded_as_signed() {
    let up = Upstream::start(true).await;
    let extra = r#"[site.auth.iam]
region = "eu-west-1"
[site.cache]
[[site.cache.rule]]
field = "Query.hello"
ttl = "60s"
"#;
    let api = ApiSite::start(&up, SiteCerts::new(), extra).await;
    let (edge, client) = (&api.edge, &api.client);
    // Clients sign for the upstream API's host, which the edge forwards to.
    let host = format!("localhost:{}", up.addr.port());
    let body = json!({ "query": "{ hello }" }).to_string();
    let now = SystemTime::now();
    let send = |headers: Vec<(String, String)>| {
        let mut r = client
            .post(edge.url("api.test", "/graphql"))
            .header("content-type", "application/json")
            .body(body.clone());
        for (n, v) in headers {
            r = r.header(n, v);
        }
        r.send()
    };

    // Valid: forwarded with the signature untouched, twice (never from the cache).
    let good = signed(
        &host,
        "/graphql",
        body.as_bytes(),
        "eu-west-1",
        "appsync",
        now,
    );
    for _ in 0..2 {
        let r = send(good.clone()).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-cache"], "PASS");
    }
    let received = up.recorder.requests();
    assert_eq!(
        received.len(),
        2,
        "IAM requests are never answered from the cache"
    );
    for (name, value) in &good {
        assert_eq!(received[0].headers[name.as_str()], value.as_str(), "{name}");
    }
    assert_eq!(received[0].body, body.as_bytes());

    let with = |headers: &[(String, String)], name: &str, f: &dyn Fn(&str) -> String| {
        headers
            .iter()
            .map(|(n, v)| (n.clone(), if n == name { f(v) } else { v.clone() }))
            .collect::<Vec<_>>()
    };
    let cases: Vec<(&str, Headers, &str)> = vec![
        (
            "another region",
            signed(
                &host,
                "/graphql",
                body.as_bytes(),
                "us-east-1",
                "appsync",
                now,
            ),
            "IAM_WRONG_REGION",
        ),
        (
            "another service",
            signed(
                &host,
                "/graphql",
                body.as_bytes(),
                "eu-west-1",
                "execute-api",
                now,
            ),
            "IAM_WRONG_SERVICE",
        ),
        (
            "signed 10 minutes ago",
            signed(
                &host,
                "/graphql",
                body.as_bytes(),
                "eu-west-1",
                "appsync",
                now - Duration::from_secs(600),
            ),
            "IAM_SIGNATURE_EXPIRED",
        ),
        (
            "no x-amz-date",
            good.iter()
                .filter(|(n, _)| n != "x-amz-date")
                .cloned()
                .collect(),
            "IAM_DATE_MISSING",
        ),
        (
            "truncated signature",
            with(&good, "authorization", &|v| v[..v.len() - 2].to_string()),
            "IAM_SIGNATURE_MALFORMED",
        ),
        (
            "x-amz-date of another day",
            with(&good, "x-amz-date", &|_| "20200101T000000Z".to_string()),
            "IAM_SCOPE_DATE_MISMATCH",
        ),
        (
            "not SigV4 at all",
            vec![("authorization".into(), "AWS4-HMAC-SHA256 nonsense".into())],
            "IAM_SIGNATURE_MALFORMED",
        ),
        ("nothing", vec![], "AUTHORIZATION_MISSING"),
    ];
    for (name, headers, code) in cases {
        let r = send(headers).await.unwrap();
        assert_eq!(r.status(), 401, "{name}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["errors"][0]["errorType"], "UnauthorizedException",
            "{name}"
        );
        assert_eq!(v["errors"][0]["extensions"]["code"], code, "{name}");
    }
    assert_eq!(
        up.recorder.count(),
        2,
        "refused requests never reach the upstream"
    );
    assert_eq!(
        edge.metric("graphfront_auth_decisions_total{mode=\"iam\",outcome=\"accepted\",reason=\"ok\",site=\"api\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn the_edge_signs_upstream_requests_with_its_own_credentials() {
    let up = Upstream::start(true).await;
    let certs = SiteCerts::new();
    let secret_file = certs.dir.path().join("aws-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let extra = format!(
        r#"[site.auth]
[[site.auth.api-key]]
id = "web"
key = "da2-signingsigningsigning"
[site.upstream-signing]
access-key-id = "{KEY_ID}"
secret-access-key-file = "{}"
region = "eu-west-1"
"#,
        secret_file.display()
    );
    let api = ApiSite::start(&up, certs, &extra).await;
    let (edge, client) = (&api.edge, &api.client);
    let r = client
        .post(edge.url("api.test", "/graphql"))
        .header("content-type", "application/json")
        .header("x-api-key", "da2-signingsigningsigning")
        .header("authorization", "a client token the edge replaces")
        .body(json!({ "query": "{ hello }" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let got = &up.recorder.requests()[0];
    let header = |n: &str| got.headers[n].to_str().unwrap().to_string();
    let authorization = header("authorization");
    assert!(
        authorization.starts_with(&format!("AWS4-HMAC-SHA256 Credential={KEY_ID}/")),
        "{authorization}"
    );
    assert!(authorization.contains("/eu-west-1/appsync/aws4_request"));
    // Recompute the signature from what the upstream received.
    let amz_date = header("x-amz-date");
    let at = humantime::parse_rfc3339(&format!(
        "{}-{}-{}T{}:{}:{}Z",
        &amz_date[0..4],
        &amz_date[4..6],
        &amz_date[6..8],
        &amz_date[9..11],
        &amz_date[11..13],
        &amz_date[13..15]
    ))
    .unwrap();
    let expected = signed(
        &header("host"),
        &got.uri,
        &got.body,
        "eu-west-1",
        "appsync",
        at,
    );
    let expected_auth = &expected
        .iter()
        .find(|(n, _)| n == "authorization")
        .unwrap()
        .1;
    assert_eq!(&authorization, expected_auth);
    assert!(
        !edge.log().contains(SECRET),
        "the secret never reaches the log"
    );
}

#[tokio::test]
async fn a_signed_mutation_goes_as_signed_and_still_purges_what_it_returns() {
    const API_KEY: &str = "da2-graphfront-test-key-0001";
    let up = Upstream::start(true).await;
    let extra = format!(
        r#"[[site.auth.api-key]]
id = "web"
key = "{API_KEY}"
[site.auth.iam]
region = "eu-west-1"
[site.cache]
default-ttl = "60s"
"#
    );
    let api = ApiSite::start(&up, SiteCerts::new(), &extra).await;
    let url = api.edge.url("api.test", "/graphql");
    let read = || async {
        let q = r#"{ getPost(id: "1") { title version } }"#;
        let r = common::post_gql_with_key(&api.client, &url, API_KEY, q)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        common::header(&r, "x-cache")
    };
    assert_eq!(read().await, "MISS");
    assert_eq!(read().await, "HIT");

    // Signed by the client for the upstream's host, as AppSync clients sign; their generated
    // documents select __typename.
    let host = format!("localhost:{}", up.addr.port());
    let body = json!({ "query": "mutation { touchPost(id: \"1\") { __typename id version } }" })
        .to_string();
    let headers = [("accept-encoding", "identity")];
    let (r, good) = post_signed(&api.client, &url, &host, &body, &headers).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["touchPost"]["__typename"], "Post", "{v}");

    // Forwarded exactly as signed: body and headers (accept-encoding included) untouched.
    let received = up.recorder.requests().pop().unwrap();
    assert_eq!(received.body, body.as_bytes());
    assert_eq!(received.headers["accept-encoding"], "identity");
    for (name, value) in &good {
        assert_eq!(received.headers[name.as_str()], value.as_str(), "{name}");
    }
    // Its response named Post 1: the cached getPost(1) is gone.
    assert_eq!(read().await, "MISS");
}

#[tokio::test]
async fn signed_persisted_queries_reach_the_upstream_as_signed() {
    let up = Upstream::start(true).await;
    let api = ApiSite::start(
        &up,
        SiteCerts::new(),
        "[site.auth.iam]\nregion = \"eu-west-1\"\n",
    )
    .await;
    let host = format!("localhost:{}", up.addr.port());
    let url = api.edge.url("api.test", "/graphql");
    let query = "{ hello }";
    let hash: String = ring::digest::digest(&ring::digest::SHA256, query.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    // Expanding a hash would change what the client signed: the edge says it cannot.
    let hash_only = json!({ "extensions": extensions }).to_string();
    let (r, _) = post_signed(&api.client, &url, &host, &hash_only, &[]).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_SUPPORTED"
    );
    assert_eq!(up.recorder.count(), 0);
    // With the query: forwarded exactly as it came, the signature intact.
    let full = json!({ "query": query, "extensions": extensions }).to_string();
    let (r, _) = post_signed(&api.client, &url, &host, &full, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.recorder.requests().pop().unwrap().body, full.as_bytes());
}
