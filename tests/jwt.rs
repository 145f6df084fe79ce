//! The JWT modes at the edge (OPENID_CONNECT and AMAZON_COGNITO_USER_POOLS) against a real
//! issuer on loopback (discovery document and JWKS over HTTPS): a matrix of tokens, each
//! accepted or refused as AppSync would, refused ones with no upstream request; key rotation
//! picked up on an unknown `kid`, fetches rate-limited, last good keys kept when the issuer
//! is down; API keys beside tokens.

mod common;

use base64::Engine;
use common::issuer::{now, IssuerServer, SigningKey};
use common::{ApiSite, SiteCerts, Upstream};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const POOL: &str = "eu-west-1_TestPool";
const API_KEY: &str = "da2-jwtsuitejwtsuitejwtsuite";

/// `claims` with `changes` applied: each key set to its value, or removed when it is null.
fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

struct Case {
    name: &'static str,
    authorization: Option<String>,
    api_key: Option<&'static str>,
    /// `None`: accepted (200).
    refused: Option<&'static str>,
}

fn case(name: &'static str, token: String, refused: Option<&'static str>) -> Case {
    Case {
        name,
        authorization: Some(token),
        api_key: None,
        refused,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_accepted_or_refused_as_appsync_would() {
    let up = Upstream::start(true).await;
    let k1 = SigningKey::rsa("k1");
    let e1 = SigningKey::ec("e1");
    let cog = SigningKey::rsa("c1");
    let stranger = SigningKey::rsa("stranger");
    let rotated = SigningKey::rsa("k2");
    let weak = SigningKey::rsa_bits("weak", 1024);
    // Signed by the upstream's CA, which the site already trusts.
    let issuer = IssuerServer::start(
        &up.ca,
        vec![k1.jwk.clone(), e1.jwk.clone(), weak.jwk.clone()],
        Some((POOL, vec![cog.jwk.clone()])),
    )
    .await;
    let iss = issuer.base.clone();
    let cognito_iss = format!("{iss}/{POOL}");

    let certs = SiteCerts::new();
    let extra = format!(
        r#"[site.auth]
[[site.auth.api-key]]
id = "ops"
key = "{API_KEY}"
[[site.auth.oidc]]
issuer = "{iss}"
client-id = "web-app|mobile-.*"
iat-ttl = "1h"
[[site.auth.cognito]]
user-pool-id = "{POOL}"
issuer = "{cognito_iss}"
app-client-id = "cognito-client"
groups = ["editors", "admins"]
[site.auth.jwt]
leeway = "30s"
jwks-refetch-interval = "3s"
"#,
    );
    let api = ApiSite::start(&up, certs, &extra).await;
    let (edge, client) = (&api.edge, &api.client);

    let t = now();
    let oidc = |changes: Value| {
        with(
            json!({ "iss": iss, "sub": "alice", "aud": "web-app", "exp": t + 600, "iat": t, "nbf": t - 10 }),
            changes,
        )
    };
    let cognito = |changes: Value| {
        with(
            json!({ "iss": cognito_iss, "sub": "bob", "token_use": "id", "aud": "cognito-client", "cognito:groups": ["editors"], "exp": t + 600, "iat": t }),
            changes,
        )
    };
    let valid = k1.sign(&oidc(json!({})));
    let tampered = {
        let parts: Vec<&str> = valid.split('.').collect();
        let payload = b64(oidc(json!({ "sub": "mallory" })).to_string().as_bytes());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(oidc(json!({})).to_string().as_bytes())
    );
    let hs256_with_public_key = jsonwebtoken::encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &oidc(json!({})),
        &EncodingKey::from_secret(&k1.public_pem),
    )
    .unwrap();
    let rs512_relabelled = {
        let parts: Vec<&str> = valid.split('.').collect();
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS512","typ":"JWT","kid":"k1"}"#),
            parts[1],
            parts[2]
        )
    };
    let big = k1.sign(&oidc(json!({ "padding": "x".repeat(16 * 1024) })));

    let cases = vec![
        case("valid, raw as AppSync takes it", valid.clone(), None),
        case("valid, as a bearer token", format!("Bearer {valid}"), None),
        case("aud list with a matching client", k1.sign(&oidc(json!({ "aud": ["other", "mobile-ios"] }))), None),
        case("expired", k1.sign(&oidc(json!({ "exp": t - 120 }))), Some("TOKEN_EXPIRED")),
        case("expired within the leeway", k1.sign(&oidc(json!({ "exp": t - 10 }))), None),
        case("not yet valid", k1.sign(&oidc(json!({ "nbf": t + 300 }))), Some("TOKEN_NOT_YET_VALID")),
        case("issued in the future", k1.sign(&oidc(json!({ "iat": t + 300 }))), Some("TOKEN_ISSUED_IN_FUTURE")),
        case("issued too long ago (iat-ttl)", k1.sign(&oidc(json!({ "iat": t - 7200 }))), Some("TOKEN_TOO_OLD")),
        case("no exp", k1.sign(&oidc(json!({ "exp": null }))), Some("TOKEN_MISSING_CLAIM")),
        case("exp as a string", k1.sign(&oidc(json!({ "exp": (t + 600).to_string() }))), Some("TOKEN_MALFORMED")),
        case("no sub", k1.sign(&oidc(json!({ "sub": null }))), Some("TOKEN_MISSING_CLAIM")),
        case("unknown issuer", k1.sign(&oidc(json!({ "iss": "https://evil.example" }))), Some("TOKEN_UNKNOWN_ISSUER")),
        case("no iss", k1.sign(&oidc(json!({ "iss": null }))), Some("TOKEN_MALFORMED")),
        case("wrong audience", k1.sign(&oidc(json!({ "aud": "evil-app" }))), Some("TOKEN_WRONG_AUDIENCE")),
        case("audience matching only a prefix", k1.sign(&oidc(json!({ "aud": "web-app-extra" }))), Some("TOKEN_WRONG_AUDIENCE")),
        case("no audience", k1.sign(&oidc(json!({ "aud": null }))), Some("TOKEN_WRONG_AUDIENCE")),
        case("alg none", alg_none, Some("TOKEN_MALFORMED")),
        case("HS256 signed with the RSA public key", hs256_with_public_key, Some("TOKEN_BAD_ALGORITHM")),
        case("RS256 signature relabelled RS512", rs512_relabelled, Some("TOKEN_BAD_ALGORITHM")),
        case("payload changed after signing", tampered, Some("TOKEN_BAD_SIGNATURE")),
        case("signed by another key claiming kid k1", stranger.sign_as(Some("k1"), &oidc(json!({}))), Some("TOKEN_BAD_SIGNATURE")),
        case("unknown kid", stranger.sign(&oidc(json!({}))), Some("TOKEN_UNKNOWN_KEY")),
        case("no kid while the issuer has several keys", k1.sign_as(None, &oidc(json!({}))), Some("TOKEN_UNKNOWN_KEY")),
        case("ES256 key", e1.sign(&oidc(json!({}))), None),
        case(
            "1024-bit RSA key",
            weak.sign(&oidc(json!({}))),
            Some("TOKEN_BAD_SIGNATURE"),
        ),
        case("RS256 token naming the ES256 key", k1.sign_as(Some("e1"), &oidc(json!({}))), Some("TOKEN_BAD_ALGORITHM")),
        case("16 KB token", big, Some("TOKEN_TOO_LARGE")),
        case("not a JWT", "abc".into(), Some("TOKEN_MALFORMED")),
        case("empty", String::new(), Some("TOKEN_MALFORMED")),
        case("Cognito id token", cog.sign(&cognito(json!({}))), None),
        case("Cognito access token", cog.sign(&cognito(json!({ "token_use": "access", "aud": null, "client_id": "cognito-client", "cognito:groups": ["admins"] }))), None),
        case("Cognito access token of another app client", cog.sign(&cognito(json!({ "token_use": "access", "aud": null, "client_id": "other-client" }))), Some("TOKEN_WRONG_AUDIENCE")),
        case("Cognito id token of another app client", cog.sign(&cognito(json!({ "aud": "other-client" }))), Some("TOKEN_WRONG_AUDIENCE")),
        case("Cognito token without token_use", cog.sign(&cognito(json!({ "token_use": null }))), Some("TOKEN_WRONG_TOKEN_USE")),
        case("Cognito refresh token_use", cog.sign(&cognito(json!({ "token_use": "refresh" }))), Some("TOKEN_WRONG_TOKEN_USE")),
        case("Cognito group not allowed", cog.sign(&cognito(json!({ "cognito:groups": ["viewers"] }))), Some("TOKEN_GROUP_NOT_ALLOWED")),
        case("Cognito token without groups", cog.sign(&cognito(json!({ "cognito:groups": null }))), Some("TOKEN_GROUP_NOT_ALLOWED")),
        case("OIDC key used for the Cognito issuer", k1.sign(&cognito(json!({}))), Some("TOKEN_UNKNOWN_KEY")),
        case("Cognito key used for the OIDC issuer", cog.sign(&oidc(json!({}))), Some("TOKEN_UNKNOWN_KEY")),
        Case { name: "no credentials", authorization: None, api_key: None, refused: Some("AUTHORIZATION_MISSING") },
        Case { name: "API key beside the token modes", authorization: None, api_key: Some(API_KEY), refused: None },
        Case { name: "bad token, good API key", authorization: Some("abc".into()), api_key: Some(API_KEY), refused: None },
        Case { name: "bad token, bad API key", authorization: Some("abc".into()), api_key: Some("da2-wrongwrongwrongwrong"), refused: Some("TOKEN_MALFORMED") },
    ];
    assert!(cases.len() >= 30);

    let mut failures = Vec::new();
    for c in &cases {
        let before = up.recorder.count();
        let mut r = client
            .post(edge.url("api.test", "/graphql"))
            .header("content-type", "application/json")
            .body(json!({ "query": "{ hello }" }).to_string());
        if let Some(a) = &c.authorization {
            r = r.header("authorization", a);
        }
        if let Some(k) = c.api_key {
            r = r.header("x-api-key", k);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or_default();
        let reached = up.recorder.count() - before;
        let got = match status {
            200 if body["data"]["hello"].is_string() && reached == 1 => None,
            401 if body["errors"][0]["errorType"] == "UnauthorizedException" && reached == 0 => {
                body["errors"][0]["extensions"]["code"]
                    .as_str()
                    .map(str::to_string)
            }
            _ => Some(format!(
                "status {status}, {reached} upstream requests: {body}"
            )),
        };
        if got.as_deref() != c.refused {
            failures.push(format!("{}: expected {:?}, got {got:?}", c.name, c.refused));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The unknown kids above fetched the keys again, but at most once per interval.
    let fetched = issuer.fetches();
    assert!((1..=3).contains(&fetched), "{fetched} JWKS fetches");

    // Rotation: a new key published by the issuer is picked up on its first token, once the
    // refetch interval has passed.
    issuer.keys.lock().unwrap().push(rotated.jwk.clone());
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let r = client
        .post(edge.url("api.test", "/graphql"))
        .header("content-type", "application/json")
        .header("authorization", rotated.sign(&oidc(json!({}))))
        .body(json!({ "query": "{ hello }" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "rotated key accepted");

    // The issuer down: the last good keys keep verifying (a token never seen before).
    issuer.task.abort();
    let fresh = k1.sign(&oidc(json!({ "sub": "carol" })));
    let r = client
        .post(edge.url("api.test", "/graphql"))
        .header("content-type", "application/json")
        .header("authorization", &fresh)
        .body(json!({ "query": "{ hello }" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "cached keys still verify");

    assert!(
        edge.metric("graphfront_auth_decisions_total{mode=\"oidc\",outcome=\"rejected\",reason=\"expired\",site=\"api\"}")
            .await
            >= 1.0
    );
    assert!(
        edge.metric("graphfront_auth_jwks_fetches_total{mode=\"oidc\",result=\"ok\",site=\"api\"}")
            .await
            >= 2.0
    );
    let log = edge.log();
    assert!(!log.contains(&valid), "tokens never reach the log");
    assert!(!log.contains("crypto provider was fixed"), "{log}");
}
