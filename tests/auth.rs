//! API keys at the edge (AppSync's API_KEY mode): missing, unknown and expired keys get
//! AppSync's 401 and never reach the upstream; the key's id is the principal of cache scopes.

mod common;

use common::{status_and_code, ApiSite, SiteCerts, Upstream};
use serde_json::{json, Value};

const KEY_A: &str = "da2-aaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "da2-bbbbbbbbbbbbbbbbbbbbbbbb";
const KEY_OLD: &str = "da2-oooooooooooooooooooooooo";

#[tokio::test]
async fn api_keys_are_checked_at_the_edge() {
    let up = Upstream::start(true).await;
    let certs = SiteCerts::new();
    let key_file = certs.dir.path().join("b.key");
    std::fs::write(&key_file, format!("{KEY_B}\n")).unwrap();
    let extra = format!(
        r#"[site.auth]
[[site.auth.api-key]]
id = "web"
key = "{KEY_A}"
expires = "2999-01-01T00:00:00Z"
[[site.auth.api-key]]
id = "mobile"
key-file = "{kf}"
[[site.auth.api-key]]
id = "retired"
key = "{KEY_OLD}"
expires = "2020-01-01T00:00:00Z"
[site.cache]
[[site.cache.rule]]
field = "Query.whoami"
ttl = "60s"
scope = "principal"
"#,
        kf = key_file.display()
    );
    let api = ApiSite::start(&up, certs, &extra).await;
    let (edge, client) = (&api.edge, &api.client);
    let send = |key: Option<&'static str>, who: &'static str| {
        let mut r = client
            .post(edge.url("api.test", "/graphql"))
            .header("content-type", "application/json")
            .header("x-principal", who)
            .body(json!({ "query": "{ whoami }" }).to_string());
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        r.send()
    };

    for (key, code) in [
        (None, "API_KEY_MISSING"),
        (Some("da2-not-a-configured-key-at-all"), "API_KEY_INVALID"),
        (Some(KEY_OLD), "API_KEY_EXPIRED"),
    ] {
        let r = send(key, "x").await.unwrap();
        let body_status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body_status, 401, "{code}");
        assert_eq!(body["errors"][0]["errorType"], "UnauthorizedException");
        assert_eq!(body["errors"][0]["extensions"]["code"], code);
    }
    assert_eq!(
        up.recorder.count(),
        0,
        "rejected requests never reach the upstream"
    );

    // Valid keys pass, the key is forwarded, and each key's cached answers stay its own.
    let whoami = |r: Value| r["data"]["whoami"].as_str().unwrap_or("").to_string();
    let a = send(Some(KEY_A), "web").await.unwrap();
    assert_eq!(a.headers()["x-cache"], "MISS");
    assert_eq!(whoami(a.json().await.unwrap()), "web");
    assert_eq!(up.recorder.requests()[0].headers["x-api-key"], KEY_A);
    let b = send(Some(KEY_B), "mobile").await.unwrap();
    assert_eq!(
        b.headers()["x-cache"],
        "MISS",
        "another key is another principal"
    );
    assert_eq!(whoami(b.json().await.unwrap()), "mobile");
    let a2 = send(Some(KEY_A), "web").await.unwrap();
    assert_eq!(a2.headers()["x-cache"], "HIT");
    assert_eq!(whoami(a2.json().await.unwrap()), "web");

    let rejected = edge
        .metric("graphfront_auth_decisions_total{mode=\"api_key\",outcome=\"rejected\",reason=\"expired\",site=\"api\"}")
        .await;
    assert_eq!(rejected, 1.0);
    assert!(!edge.log().contains(KEY_A), "keys never reach the log");
    let _ = status_and_code;
}
