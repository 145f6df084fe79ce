//! Auth bypass, as a matrix: every path × method × upgrade × credentials × body size a client
//! could try without valid credentials, each on its own TLS connection to one edge, against a
//! site with an API key and against one with OIDC tokens. None may reach the upstream (the demo
//! API, which records every request), but for the one the edge forwards by design: a bare
//! WebSocket handshake on a forwarded path (see [`Combo::bare_handshake`]). Each refusal must
//! be the edge's own (400, 401 or 404 with an error code). A control with valid credentials
//! shows the upstream does record what gets through.

mod common;

use std::collections::BTreeMap;

use common::issuer::{now, IssuerServer, SigningKey};
use common::raw::{api_key_site, send_one, Response};
use common::{ApiSite, SiteCerts, Upstream};
use futures_util::StreamExt;
use serde_json::json;

const KEY: &str = "da2-bypassbypassbypassbypass";
const WRONG_KEY: &str = "da2-wrongwrongwrongwrongwron";
const BODY: &str = r#"{"query":"{ hello }"}"#;

/// Connections in flight at once.
const PARALLEL: usize = 8;

/// The GraphQL path, the real-time path, the forwarded WebSocket path, and near misses.
const PATHS: [&str; 10] = [
    "/graphql",
    "/graphql/realtime",
    "/graphql/ws",
    "/",
    "/other",
    "/graphql/",
    "/GRAPHQL",
    "/graphql%2f",
    "//graphql",
    "/graphql?x=1",
];

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "OPTIONS", "DELETE", "PATCH"];

/// The headers of a WebSocket handshake (graphql-transport-ws), or none.
const UPGRADES: [(&str, &str); 2] = [
    ("no upgrade", "Connection: close\r\n"),
    (
        "websocket",
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: graphql-transport-ws\r\n",
    ),
];

/// Credentials that are not valid: the headers they add, and the query parameter, if any.
struct Credentials {
    name: &'static str,
    headers: String,
    query: Option<String>,
}

fn creds(name: &'static str, headers: String, query: Option<String>) -> Credentials {
    Credentials {
        name,
        headers,
        query,
    }
}

/// No body, a small GraphQL body, and one with more than 64 KiB of padding inside the JSON.
fn bodies() -> [(&'static str, Option<String>); 3] {
    let padded = json!({"query": "{ hello }", "extensions": {"pad": "x".repeat(70 * 1024)}});
    [
        ("no", None),
        ("a small", Some(BODY.to_string())),
        ("a padded", Some(padded.to_string())),
    ]
}

/// One combination of the matrix.
struct Combo {
    id: usize,
    name: String,
    /// A WebSocket handshake as the site's forwarded `/graphql/ws` takes it: GET, no body.
    /// The one request without credentials the edge forwards, by design: on a forwarded path
    /// the credentials may come in `connection_init`, and no message is forwarded before they
    /// do (tests/attacks.rs).
    bare_handshake: bool,
    bytes: Vec<u8>,
}

fn matrix(credentials: &[Credentials]) -> Vec<Combo> {
    let bodies = bodies();
    let mut combos = Vec::new();
    for path in PATHS {
        for method in METHODS {
            for (upgrade, upgrade_headers) in UPGRADES {
                for c in credentials {
                    for (size, body) in &bodies {
                        let id = combos.len();
                        let target = match &c.query {
                            Some(q) if path.contains('?') => format!("{path}&{q}"),
                            Some(q) => format!("{path}?{q}"),
                            None => path.to_string(),
                        };
                        let framing = body
                            .as_ref()
                            .map(|b| format!("Content-Length: {}\r\n", b.len()))
                            .unwrap_or_default();
                        let bytes = format!(
                            "{method} {target} HTTP/1.1\r\nHost: api.test\r\n\
                             Content-Type: application/json\r\nx-matrix: {id}\r\n{}\
                             {upgrade_headers}{framing}\r\n{}",
                            c.headers,
                            body.as_deref().unwrap_or("")
                        );
                        combos.push(Combo {
                            id,
                            name: format!("{method} {target}, {upgrade}, {}, {size} body", c.name),
                            bare_handshake: path == "/graphql/ws"
                                && method == "GET"
                                && upgrade == "websocket"
                                && body.is_none(),
                            bytes: bytes.into_bytes(),
                        });
                    }
                }
            }
        }
    }
    combos
}

/// Send every combination (`PARALLEL` at a time); each one's answer, by id.
async fn run(site: &ApiSite, combos: &[Combo]) -> BTreeMap<usize, Option<Response>> {
    futures_util::stream::iter(combos)
        .map(|c| async move { (c.id, send_one(site, &c.bytes).await) })
        .buffer_unordered(PARALLEL)
        .collect()
        .await
}

/// The requests the upstream received, by the `x-matrix` id they carry: method, URI and
/// body size.
fn reached(up: &Upstream) -> BTreeMap<usize, (String, String, usize)> {
    up.recorder
        .requests()
        .into_iter()
        .filter_map(|r| {
            let id = r.headers.get("x-matrix")?.to_str().ok()?.parse().ok()?;
            Some((id, (r.method, r.uri, r.body.len())))
        })
        .collect()
}

/// The GraphQL error code of an answer the edge wrote itself.
fn edge_code(r: &Response) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    Some(
        body["errors"][0]["extensions"]["code"]
            .as_str()?
            .to_string(),
    )
}

/// Run the whole matrix on `site`, then the control (`valid` credential headers on a POST
/// of `BODY` to /graphql, which must reach the upstream), and fail listing every combination
/// that reached the upstream (other than a bare handshake) or was not refused by the edge.
async fn matrix_holds(up: &Upstream, site: &ApiSite, credentials: &[Credentials], valid: &str) {
    let combos = matrix(credentials);
    assert_eq!(
        combos.len(),
        PATHS.len() * METHODS.len() * UPGRADES.len() * credentials.len() * 3
    );
    let answers = run(site, &combos).await;
    let reached = reached(up);
    let mut problems = Vec::new();
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    for c in &combos {
        let answer = &answers[&c.id];
        let status = answer.as_ref().map(|r| r.status);
        if let Some((method, uri, body)) = reached.get(&c.id) {
            let bare = c.bare_handshake && *body == 0 && status == Some(101);
            if !bare {
                problems.push(format!(
                    "{}: reached the upstream as {method} {uri} with {body} body bytes \
                     (the client got {status:?})",
                    c.name
                ));
            }
            continue;
        }
        match answer.as_ref().map(|r| (r.status, edge_code(r))) {
            Some((s @ (400 | 401 | 404), Some(code))) => {
                *refusals.entry(format!("{s} {code}")).or_default() += 1
            }
            other => problems.push(format!(
                "{}: not refused by the edge: {other:?} {:?}",
                c.name,
                answer.as_ref().map(|r| &r.head)
            )),
        }
    }

    // The control: the same edge, valid credentials, and the upstream records the request.
    let control = format!(
        "POST /graphql?control=1 HTTP/1.1\r\nHost: api.test\r\n\
         Content-Type: application/json\r\n{valid}Connection: close\r\n\
         Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let answer = send_one(site, control.as_bytes()).await.expect("an answer");
    assert_eq!(answer.status, 200, "{answer:?}");
    let forwarded = up
        .request_to("/graphql?control=1")
        .expect("the control reached the upstream");
    assert_eq!(forwarded.body.as_ref(), BODY.as_bytes());

    assert!(
        problems.is_empty(),
        "{} of {} combinations failed (refused by the edge: {refusals:?}):\n{}",
        problems.len(),
        combos.len(),
        problems.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_combination_without_a_valid_api_key_reaches_the_upstream() {
    let (up, site) = api_key_site(KEY).await;
    let credentials = [
        creds("no key", String::new(), None),
        creds("a wrong key", format!("x-api-key: {WRONG_KEY}\r\n"), None),
        creds(
            "the key then a wrong one",
            format!("x-api-key: {KEY}\r\nx-api-key: {WRONG_KEY}\r\n"),
            None,
        ),
        creds(
            "a wrong key then the key",
            format!("x-api-key: {WRONG_KEY}\r\nx-api-key: {KEY}\r\n"),
            None,
        ),
        creds(
            "the key in the query only",
            String::new(),
            Some(format!("x-api-key={KEY}")),
        ),
        creds("an empty key", "x-api-key: \r\n".to_string(), None),
    ];
    matrix_holds(&up, &site, &credentials, &format!("x-api-key: {KEY}\r\n")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_combination_without_a_valid_token_reaches_the_upstream() {
    let up = Upstream::start(true).await;
    let signer = SigningKey::ec("e1");
    let stranger = SigningKey::ec("e1");
    let issuer = IssuerServer::start(&up.ca, vec![signer.jwk.clone()], None).await;
    let extra = format!(
        "[site.auth]\n[[site.auth.oidc]]\nissuer = \"{}\"\nclient-id = \"web-app\"\n\
         [site.limits]\nintrospection = false\n\
         [site.websocket]\npaths = [\"/graphql/ws\"]\n",
        issuer.base
    );
    let site = ApiSite::start(&up, SiteCerts::new(), &extra).await;
    let t = now();
    let claims =
        json!({"iss": issuer.base, "sub": "alice", "aud": "web-app", "exp": t + 600, "iat": t});
    let valid = signer.sign(&claims);
    // Same kid, same claims, another key: only the signature is wrong.
    let forged = stranger.sign(&claims);
    let credentials = [
        creds("no token", String::new(), None),
        creds(
            "a forged token",
            format!("Authorization: {forged}\r\n"),
            None,
        ),
        creds(
            "the token then a forged one",
            format!("Authorization: {valid}\r\nAuthorization: {forged}\r\n"),
            None,
        ),
        creds(
            "a forged token then the token",
            format!("Authorization: {forged}\r\nAuthorization: Bearer {valid}\r\n"),
            None,
        ),
        creds(
            "the token in the query only",
            String::new(),
            Some(format!("access_token={valid}")),
        ),
        creds(
            "an empty Authorization",
            "Authorization: \r\n".to_string(),
            None,
        ),
    ];
    matrix_holds(
        &up,
        &site,
        &credentials,
        &format!("Authorization: Bearer {valid}\r\n"),
    )
    .await;
}
