use super::*;
use crate::config::cache::Rule;

const X: [u8; 32] = [1; 32];

fn policy(rules: Vec<Rule>, default_ttl: u64) -> CachePolicy {
    CachePolicy {
        default_ttl: Duration::from_secs(default_ttl),
        default_scope: Scope::Public,
        default_swr: Duration::from_secs(5),
        stale_if_error: Duration::ZERO,
        principal: Some(PrincipalSource::Header(http::HeaderName::from_static(
            "x-user",
        ))),
        ignore_upstream_cache_control: false,
        allow_client_no_cache: false,
        max_entry_size: 1 << 20,
        keep_headers: vec![],
        coalesce_wait: Duration::from_secs(1),
        rules,
        key_fields: Default::default(),
        invalidate: crate::config::cache::Invalidate::Entity,
        mutations: Default::default(),
    }
}

fn rule(matcher: Matcher, ttl: u64, swr: u64, scope: Scope) -> Rule {
    Rule {
        matcher,
        ttl: Duration::from_secs(ttl),
        swr: Duration::from_secs(swr),
        scope,
    }
}

fn query(name: Option<&str>, fields: &[&str]) -> Operation {
    Operation {
        kind: OperationKind::Query,
        name: name.map(str::to_string),
        root_fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

fn cache_plan(d: Decision) -> CachePlan {
    match d {
        Decision::Cache(p) => p,
        Decision::Pass(r) => panic!("pass: {r:?}"),
    }
}

#[test]
fn mutations_subscriptions_and_unmatched_queries_pass() {
    let p = policy(vec![], 0);
    let mut m = query(None, &["a"]);
    m.kind = OperationKind::Mutation;
    assert_eq!(
        plan(0, &p, &m, &X, None, None),
        Decision::Pass(NotCached::Mutation)
    );
    m.kind = OperationKind::Subscription;
    assert_eq!(
        plan(0, &p, &m, &X, None, None),
        Decision::Pass(NotCached::Subscription)
    );
    assert_eq!(
        plan(0, &p, &query(None, &["a"]), &X, None, None),
        Decision::Pass(NotCached::NoRule)
    );
}

#[test]
fn overlapping_rules_take_the_smallest_ttl_and_the_union_of_scopes() {
    let p = policy(
        vec![
            rule(Matcher::Operation("Get".into()), 60, 30, Scope::Public),
            rule(Matcher::Field("getPost".into()), 10, 40, Scope::Principal),
            rule(Matcher::Field("other".into()), 1, 1, Scope::Public),
        ],
        0,
    );
    let plan_ = cache_plan(plan(
        0,
        &p,
        &query(Some("Get"), &["getPost"]),
        &X,
        None,
        Some(b"u1"),
    ));
    assert_eq!(plan_.ttl, Some(Duration::from_secs(10)));
    assert_eq!(plan_.swr, Duration::from_secs(30));
    assert_eq!(plan_.scope, Scope::Principal);
    // Without a principal, a principal-scoped request is not cached at all.
    assert_eq!(
        plan(0, &p, &query(Some("Get"), &["getPost"]), &X, None, None),
        Decision::Pass(NotCached::NoPrincipal)
    );
    // The default applies when no rule matches.
    let d = policy(vec![], 30);
    let plan_ = cache_plan(plan(0, &d, &query(None, &["z"]), &X, None, None));
    assert_eq!(
        (plan_.ttl, plan_.scope),
        (Some(Duration::from_secs(30)), Scope::Public)
    );
}

#[test]
fn type_rules_decide_after_the_response() {
    let p = policy(
        vec![rule(Matcher::Type("Post".into()), 20, 0, Scope::Public)],
        0,
    );
    let plan_ = cache_plan(plan(0, &p, &query(None, &["getPost"]), &X, None, None));
    assert_eq!(plan_.ttl, None);
    let posts: BTreeSet<String> = ["Post".to_string()].into();
    assert_eq!(
        store(&p, &plan_, &posts, None),
        Ok((Duration::from_secs(20), Duration::ZERO))
    );
    assert_eq!(
        store(&p, &plan_, &BTreeSet::new(), None),
        Err(NotCached::NoRule)
    );
    let private = policy(
        vec![rule(Matcher::Type("Post".into()), 20, 0, Scope::Principal)],
        0,
    );
    assert_eq!(store(&private, &plan_, &posts, None), Err(NotCached::Scope));
}

#[test]
fn upstream_cache_control_is_honoured_unless_ignored() {
    let mut p = policy(vec![], 60);
    let plan_ = cache_plan(plan(0, &p, &query(None, &["a"]), &X, None, None));
    let none = BTreeSet::new();
    assert_eq!(
        store(&p, &plan_, &none, Some("no-store")),
        Err(NotCached::NoStore)
    );
    assert_eq!(
        store(&p, &plan_, &none, Some("private, max-age=30")),
        Err(NotCached::Private)
    );
    assert_eq!(
        store(&p, &plan_, &none, Some("max-age=0")),
        Err(NotCached::MaxAge)
    );
    assert_eq!(
        store(&p, &plan_, &none, Some("public, max-age=7"))
            .unwrap()
            .0,
        Duration::from_secs(7)
    );
    assert_eq!(
        store(&p, &plan_, &none, Some("max-age=7, s-maxage=9"))
            .unwrap()
            .0,
        Duration::from_secs(9)
    );
    assert_eq!(
        store(&p, &plan_, &none, Some("max-age=600")).unwrap().0,
        Duration::from_secs(60)
    );
    p.ignore_upstream_cache_control = true;
    assert_eq!(
        store(&p, &plan_, &none, Some("no-store")).unwrap().0,
        Duration::from_secs(60)
    );
}

#[test]
fn principals_come_from_the_header_or_a_cookie() {
    let p = policy(vec![], 0);
    let mut h = http::HeaderMap::new();
    assert_eq!(principal_of(&p, &h), None);
    h.insert("x-user", "alice".parse().unwrap());
    assert_eq!(principal_of(&p, &h), Some(&b"alice"[..]));
    let mut c = policy(vec![], 0);
    c.principal = Some(PrincipalSource::Cookie("sid".into()));
    h.insert(
        http::header::COOKIE,
        "a=1; sid=s3cr3t; b=2".parse().unwrap(),
    );
    assert_eq!(principal_of(&c, &h), Some(&b"s3cr3t"[..]));
}

#[test]
fn typenames_are_collected_at_any_depth() {
    let v: Value =
        serde_json::from_str(r#"{"a":{"__typename":"Post","c":[{"__typename":"User"},{"x":1}]}}"#)
            .unwrap();
    let t: Vec<String> = typenames(&v).into_iter().collect();
    assert_eq!(t, ["Post", "User"]);
}
