use serde_json::json;

use super::*;

const QUERY: &str = "query Get($id: ID!) { getPost(id: $id) { id title } }";

fn limits() -> Limits {
    Limits {
        max_depth: Some(10),
        max_aliases: None,
        max_root_fields: None,
        max_fields: None,
        max_directives: None,
        max_tokens: None,
        introspection: true,
    }
}

/// A store of its own: metrics are process-wide, so each test counts under its own site name.
fn store() -> SiteStore {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let site = crate::config::Config::parse(
        &format!(
            r#"
[[site]]
name = "apq-unit-{n}"
domains = ["api.example.com"]
upstream = "https://abc.appsync-api.eu-west-1.amazonaws.com/graphql"
tls = "acme"
"#
        ),
        std::path::Path::new("."),
    )
    .unwrap()
    .sites[0]
        .clone();
    SiteStore::new(&site)
}

fn sha(q: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, q.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

fn post(s: Option<&SiteStore>, body: Value) -> Verdict {
    resolve(s, &limits(), body.to_string().as_bytes(), false)
}

fn body_of(v: Verdict) -> Value {
    match v {
        Verdict::Body(b) => serde_json::from_slice(&b).unwrap(),
        other => panic!("expected a body, got {other:?}"),
    }
}

fn code_of(v: Verdict) -> (u16, &'static str) {
    match v {
        Verdict::Reject(e) => (e.status(), e.code()),
        Verdict::Answer((_, code)) => (200, code),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn ordinary_requests_are_untouched() {
    let s = store();
    assert_eq!(
        post(Some(&s), json!({ "query": QUERY })),
        Verdict::Unchanged
    );
    let other_ext = json!({ "query": QUERY, "extensions": { "tracing": true } });
    assert_eq!(post(Some(&s), other_ext), Verdict::Unchanged);
    // Broken requests are the pipeline's to refuse, with its own codes.
    let broken = br#"{"extensions":{"persistedQuery":"#;
    assert_eq!(
        resolve(Some(&s), &limits(), broken, false),
        Verdict::Unchanged
    );
    let batch = json!([{ "extensions": persisted(&sha(QUERY)) }]);
    assert_eq!(post(Some(&s), batch), Verdict::Unchanged);
}

#[test]
fn register_then_hit_sends_the_full_query_without_the_extension() {
    let s = store();
    let hash = sha(QUERY);
    let mut ext = persisted(&hash);
    ext["other"] = json!(1);
    let hash_only =
        json!({ "operationName": "Get", "variables": { "id": "1" }, "extensions": ext });
    assert_eq!(
        code_of(post(Some(&s), hash_only.clone())),
        (200, "PERSISTED_QUERY_NOT_FOUND")
    );
    assert_eq!(s.miss.get(), 1);

    let mut register = hash_only.clone();
    register["query"] = json!(QUERY);
    let sent = body_of(post(Some(&s), register));
    let expected = json!({
        "query": QUERY, "operationName": "Get", "variables": { "id": "1" },
        "extensions": { "other": 1 },
    });
    assert_eq!(sent, expected);
    assert_eq!(s.registered.get(), 1);

    assert_eq!(body_of(post(Some(&s), hash_only)), expected);
    assert_eq!(s.hit.get(), 1);
    // Upper-case hex names the same hash; the extension alone goes away with it.
    let upper = json!({ "extensions": persisted(&hash.to_uppercase()) });
    assert_eq!(body_of(post(Some(&s), upper)), json!({ "query": QUERY }));
}

#[test]
fn a_query_that_does_not_match_its_hash_is_refused_and_not_stored() {
    let s = store();
    let other = sha("{ hello }");
    let body = json!({ "query": QUERY, "extensions": persisted(&other) });
    assert_eq!(
        code_of(post(Some(&s), body)),
        (400, "PERSISTED_QUERY_HASH_MISMATCH")
    );
    assert_eq!(s.mismatch.get(), 1);
    let not_hex = json!({ "query": QUERY, "extensions": persisted("xyz") });
    assert_eq!(
        code_of(post(Some(&s), not_hex)).1,
        "PERSISTED_QUERY_HASH_MISMATCH"
    );
    let hash_only = json!({ "extensions": persisted(&other) });
    assert_eq!(
        code_of(post(Some(&s), hash_only)).1,
        "PERSISTED_QUERY_NOT_FOUND"
    );
}

#[test]
fn malformed_persisted_queries_are_refused() {
    let s = store();
    let cases = [
        (
            json!({ "version": 2, "sha256Hash": sha(QUERY) }),
            "PERSISTED_QUERY_VERSION_NOT_SUPPORTED",
        ),
        (
            json!({ "sha256Hash": sha(QUERY) }),
            "PERSISTED_QUERY_VERSION_NOT_SUPPORTED",
        ),
        (json!({ "version": 1 }), "INVALID_REQUEST"),
        (
            json!({ "version": 1, "sha256Hash": "abc" }),
            "INVALID_REQUEST",
        ),
        (json!("abc"), "INVALID_REQUEST"),
    ];
    for (pq, code) in cases {
        let body = json!({ "extensions": { "persistedQuery": pq } });
        assert_eq!(code_of(post(Some(&s), body)), (400, code), "{pq}");
    }
}

#[test]
fn documents_the_site_refuses_are_not_stored() {
    let s = store();
    for q in [
        "{ broken",
        "query A { hello } query B { hello }",
        "{ a { b { c { d { e { f { g { h { i { j { k } } } } } } } } } } }",
    ] {
        let body = json!({ "query": q, "extensions": persisted(&sha(q)) });
        // Forwarded to the pipeline (which refuses it with its own code), never stored.
        assert_eq!(body_of(post(Some(&s), body))["query"], q);
        let again = json!({ "extensions": persisted(&sha(q)) });
        assert_eq!(
            code_of(post(Some(&s), again)).1,
            "PERSISTED_QUERY_NOT_FOUND"
        );
    }
    assert_eq!(s.registered.get(), 0);
}

#[test]
fn get_requests_are_expanded_into_a_query_string() {
    let s = store();
    let hash = sha(QUERY);
    let ext = persisted(&hash).to_string();
    let hash_only: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("operationName", "Get")
        .append_pair("variables", r#"{"id":"1"}"#)
        .append_pair("extensions", &ext)
        .finish();
    let get = |qs: &str| resolve(Some(&s), &limits(), qs.as_bytes(), true);
    assert_eq!(code_of(get(&hash_only)).1, "PERSISTED_QUERY_NOT_FOUND");
    let register = format!("{hash_only}&query={}", urlencode(QUERY));
    let Verdict::Query(first) = get(&register) else {
        panic!("registration by GET")
    };
    let Verdict::Query(expanded) = get(&hash_only) else {
        panic!("hit by GET")
    };
    assert_eq!(first, expanded);
    let request = crate::graphql::GraphqlRequest::from_query_string(&expanded).unwrap();
    assert_eq!(request.query, QUERY);
    assert_eq!(request.operation_name.as_deref(), Some("Get"));
    assert_eq!(request.variables.unwrap()["id"], "1");
    assert_eq!(
        request.extensions, None,
        "persistedQuery is dropped: {expanded}"
    );
}

#[test]
fn a_disabled_site_answers_hash_only_requests_not_supported() {
    let hash_only = json!({ "extensions": persisted(&sha(QUERY)) });
    assert_eq!(
        code_of(post(None, hash_only)),
        (200, "PERSISTED_QUERY_NOT_SUPPORTED")
    );
    let with_query = json!({ "query": QUERY, "extensions": persisted(&sha(QUERY)) });
    assert_eq!(post(None, with_query), Verdict::Unchanged);
}

#[test]
fn the_store_is_bounded_by_query_bytes() {
    let site = crate::config::Config::parse(
        r#"
[[site]]
name = "apq-unit-small"
domains = ["api.example.com"]
upstream = "https://abc.appsync-api.eu-west-1.amazonaws.com/graphql"
tls = "acme"
[site.apq]
max-size = "4KiB"
"#,
        std::path::Path::new("."),
    )
    .unwrap()
    .sites[0]
        .clone();
    let s = SiteStore::new(&site);
    for i in 0..200 {
        let q = format!("{{ a{i}: hello }}");
        post(
            Some(&s),
            json!({ "query": q, "extensions": persisted(&sha(&q)) }),
        );
    }
    s.queries.run_pending_tasks();
    assert!(
        s.queries.weighted_size() <= 4096,
        "{}",
        s.queries.weighted_size()
    );
    assert!(s.queries.entry_count() < 200);
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn the_rest_of_the_body_goes_upstream_as_it_came() {
    let s = store();
    let hash = sha(QUERY);
    // Numbers serde_json would write otherwise (a float's exponent, more digits than a u64).
    let raw = |query: &str| {
        format!(
            r#"{{{query}"variables":{{"id":"1","n":123456789012345678901234,"f":1e3}},"extensions":{{"persistedQuery":{{"version":1,"sha256Hash":"{hash}"}}}}}}"#
        )
    };
    let register = raw(&format!(r#""query":{},"#, json!(QUERY)));
    let Verdict::Body(sent) = resolve(Some(&s), &limits(), register.as_bytes(), false) else {
        panic!("expected a body");
    };
    let sent = std::str::from_utf8(&sent).unwrap();
    assert!(
        sent.contains(r#""variables":{"id":"1","n":123456789012345678901234,"f":1e3}"#),
        "{sent}"
    );
    let Verdict::Body(hit) = resolve(Some(&s), &limits(), raw("").as_bytes(), false) else {
        panic!("expected a body");
    };
    assert_eq!(std::str::from_utf8(&hit).unwrap(), sent);
}
