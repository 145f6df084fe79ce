use super::*;

fn op(q: &str, name: Option<&str>) -> Operation {
    analyze(q, name).unwrap()
}

fn err(q: &str, name: Option<&str>) -> &'static str {
    analyze(q, name).unwrap_err().code()
}

#[test]
fn classifies_the_three_operation_types() {
    let q = op("{ getPost(id: 1) { id } }", None);
    assert_eq!(q.kind, OperationKind::Query);
    assert_eq!(q.name, None);
    assert_eq!(q.root_fields, ["getPost"]);
    let m = op(
        "mutation Touch($id: ID!) { touchPost(id: $id) { id } }",
        None,
    );
    assert_eq!(
        (m.kind, m.name.as_deref()),
        (OperationKind::Mutation, Some("Touch"))
    );
    let s = op("subscription { onCreatePost { id } }", None);
    assert_eq!(s.kind, OperationKind::Subscription);
}

#[test]
fn selects_the_named_operation() {
    let doc = "query A { a } mutation B { b } subscription C { c }";
    assert_eq!(op(doc, Some("B")).kind, OperationKind::Mutation);
    assert_eq!(op(doc, Some("C")).root_fields, ["c"]);
    assert_eq!(err(doc, None), "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(err(doc, Some("D")), "OPERATION_NOT_FOUND");
    assert_eq!(
        err("fragment F on Query { a }", None),
        "GRAPHQL_VALIDATION_FAILED"
    );
}

#[test]
fn root_fields_use_names_expand_fragments_and_dedupe() {
    let doc = r#"
        query Q { x: getPost(id: 1) { id } ...Root ... on Query { listPosts { id } } getPost(id: 2) { id } }
        fragment Root on Query { hello __typename ...Root }
    "#;
    assert_eq!(
        op(doc, None).root_fields,
        ["getPost", "hello", "__typename", "listPosts"]
    );
}

#[test]
fn fragment_cycles_terminate() {
    let doc = "query { ...A } fragment A on Query { a ...B } fragment B on Query { b ...A }";
    assert_eq!(op(doc, None).root_fields, ["a", "b"]);
}

#[test]
fn introspection_only() {
    assert!(is_introspection_only(&op(
        "{ __schema { types { name } } }",
        None
    )));
    assert!(!is_introspection_only(&op("{ __typename hello }", None)));
}

#[test]
fn syntax_errors_carry_the_position() {
    let e = analyze("{ hello ", None).unwrap_err();
    assert_eq!(e.code(), "GRAPHQL_PARSE_FAILED");
    assert!(e.to_string().contains("1:"), "{e}");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    for (open, close) in [("{ a ", "}"), ("[", "]")] {
        let deep = format!(
            "{{ a(x: {}1{}) }}",
            open.repeat(20_000),
            close.repeat(20_000)
        );
        let deep = if open == "[" {
            deep
        } else {
            format!("{}{}", open.repeat(20_000), close.repeat(20_000))
        };
        // On the 2 MiB stack of a tokio worker thread.
        let code = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || analyze(&deep, None).unwrap_err().code())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(code, "GRAPHQL_PARSE_FAILED");
    }
    let ok = format!("{}{}", "{ a ".repeat(20), "}".repeat(20));
    assert_eq!(op(&ok, None).root_fields, ["a"]);
}

#[test]
fn post_bodies() {
    let r = GraphqlRequest::from_json(
        br#"{"query":"{ a }","operationName":null,"variables":{"id":1},"extensions":null}"#,
    )
    .unwrap();
    assert_eq!(r.query, "{ a }");
    assert_eq!(r.operation_name, None);
    assert_eq!(r.variables.unwrap()["id"], 1);
    assert_eq!(r.extensions, None);

    let code = |b: &[u8]| GraphqlRequest::from_json(b).unwrap_err().code();
    assert_eq!(code(b"{"), "INVALID_JSON");
    assert_eq!(code(b""), "INVALID_JSON");
    assert_eq!(code(b"[{\"query\":\"{a}\"}]"), "BATCH_NOT_SUPPORTED");
    assert_eq!(code(b"\"{ a }\""), "INVALID_REQUEST");
    assert_eq!(code(b"{}"), "INVALID_REQUEST");
    assert_eq!(code(b"{\"query\":1}"), "INVALID_REQUEST");
    assert_eq!(
        code(b"{\"query\":\"{a}\",\"variables\":[1]}"),
        "INVALID_REQUEST"
    );
    assert_eq!(
        code(b"{\"query\":\"{a}\",\"operationName\":2}"),
        "INVALID_REQUEST"
    );
}

#[test]
fn get_parameters() {
    let r = GraphqlRequest::from_query_string(
        "query=query%20Q(%24id%3A%20ID)%20%7B%20a%20%7D&operationName=Q&variables=%7B%22id%22%3A%221%22%7D&other=x",
    )
    .unwrap();
    assert_eq!(r.query, "query Q($id: ID) { a }");
    assert_eq!(r.operation_name.as_deref(), Some("Q"));
    assert_eq!(r.variables.unwrap()["id"], "1");
    let code = |q: &str| GraphqlRequest::from_query_string(q).unwrap_err().code();
    assert_eq!(code("variables=%7B"), "INVALID_REQUEST");
    assert_eq!(code("query=%7Ba%7D&variables=%7B"), "INVALID_REQUEST");
    assert_eq!(code(""), "INVALID_REQUEST");
    let plus = GraphqlRequest::from_query_string("query=%7B+a+%7D&variables=").unwrap();
    assert_eq!(plus.query, "{ a }");
    assert_eq!(plus.variables, None);
}

#[test]
fn normalization_ignores_layout_comments_and_unused_definitions() {
    let a = "query Get($id: ID!) { getPost(id: $id) { ...F } } fragment F on Post { id title ...G } fragment G on Post { author } fragment Unused on Post { x }";
    let b = "# a comment\nfragment G on Post { author }\nquery Other { hello }\n\nquery Get($id: ID!) {\n  getPost(id: $id) {\n    ...F\n  }\n}\nfragment F on Post {\n id\n title ...G }";
    let (ra, rb) = (
        analyze_normalized(a, Some("Get")).unwrap(),
        analyze_normalized(b, Some("Get")).unwrap(),
    );
    let (op_a, na, op_b, nb) = (ra.op, ra.normalized, rb.op, rb.normalized);
    assert_eq!(na, nb);
    assert_eq!(op_a, op_b);
    assert!(!na.contains("Unused") && !na.contains("Other"), "{na}");
    // A different selection normalizes differently.
    let nc = analyze_normalized("query Get($id: ID!) { getPost(id: $id) { id } }", None)
        .unwrap()
        .normalized;
    assert_ne!(na, nc);
}

#[test]
fn strings_the_printer_would_change_still_tell_documents_apart() {
    // graphql-parser prints a string with a line break as a block string, which loses
    // trailing line breaks and indentation: the key must not.
    let n = |q: &str| analyze_normalized(q, None).unwrap().normalized;
    let pairs = [
        (r#"{ a(q: "x\n") }"#, r#"{ a(q: "x\n\n") }"#),
        (r#"{ a(q: "  a\n  b") }"#, r#"{ a(q: "a\nb") }"#),
    ];
    for (a, b) in pairs {
        assert_ne!(n(a), n(b), "{a} / {b}");
    }
    // Which string stands where counts: definitions printed in another order than written,
    // and operations that are not selected, must not move strings between places.
    let on = |q: &str| analyze_normalized(q, Some("A")).unwrap().normalized;
    let victim = r#"query A { ...F1 ...F2 } fragment F1 on Query { f(x: "x\n") }
                    fragment F2 on Query { g(x: "x\n\n") }"#;
    let other = r#"query A { ...F1 ...F2 } fragment F2 on Query { g(x: "x\n") }
                   fragment F1 on Query { f(x: "x\n\n") }"#;
    assert_ne!(on(victim), on(other));
    let victim = r#"query A { f(x: "x\n") } query B { f(x: "x\n\n") }"#;
    let other = r#"query B { f(x: "x\n") } query A { f(x: "x\n\n") }"#;
    assert_ne!(on(victim), on(other));
    // The same value written another way is the same string (a block string's indentation
    // and blank first and last lines are not part of its value).
    assert_eq!(n("{ a(q: \"\"\"\n  x\n\"\"\") }"), n(r#"{ a(q: "x") }"#));
    // Layout outside strings still does not count.
    assert_eq!(n(r#"{ a(q: "x\n") }"#), n("{\n  a( q : \"x\\n\" ) }"));
}

fn complexity(q: &str) -> Complexity {
    analyze_normalized(q, None).unwrap().complexity
}

fn limits() -> Limits {
    Limits {
        max_depth: Some(3),
        max_aliases: Some(2),
        max_root_fields: Some(2),
        max_fields: Some(6),
        max_directives: Some(1),
        max_tokens: Some(40),
        introspection: false,
    }
}

fn verdict(q: &str) -> Result<(), &'static str> {
    limits().check(&complexity(q)).map_err(|(code, _)| code)
}

#[test]
fn each_limit_at_its_bound_and_one_past() {
    // depth 3 passes, 4 does not (fragments count where they are spread)
    assert_eq!(verdict("{ a { b { c } } }"), Ok(()));
    assert_eq!(verdict("{ a { b { c { d } } } }"), Err("LIMIT_DEPTH"));
    assert_eq!(
        verdict("{ a { ...F } } fragment F on T { b { c { d } } }"),
        Err("LIMIT_DEPTH")
    );
    // aliases
    assert_eq!(verdict("{ x: a y: b }"), Ok(()));
    assert_eq!(verdict("{ x: a y: b { z: c } }"), Err("LIMIT_ALIASES"));
    // root fields
    assert_eq!(verdict("{ a b }"), Ok(()));
    assert_eq!(verdict("{ a b c }"), Err("LIMIT_ROOT_FIELDS"));
    // fields after expansion: F has 3 fields, spread twice → 1 + 3 + 1 + 3 = 8
    assert_eq!(verdict("{ a { ...F } } fragment F on T { b c d }"), Ok(()));
    assert_eq!(
        verdict("{ a { ...F } b { ...F } } fragment F on T { b c d }"),
        Err("LIMIT_FIELDS")
    );
    // directives on one selection
    assert_eq!(verdict("{ a @include(if: true) }"), Ok(()));
    assert_eq!(
        verdict("{ a @include(if: true) @skip(if: false) }"),
        Err("LIMIT_DIRECTIVES")
    );
    // tokens: `{ a }` is 3
    let long = format!("{{ {} }}", "a ".repeat(38));
    assert_eq!(count_tokens(&long), 40);
    assert_eq!(
        limits().check(&Complexity {
            tokens: 40,
            ..Default::default()
        }),
        Ok(())
    );
    assert_eq!(
        verdict(&format!("{{ {} }}", "a ".repeat(39))),
        Err("LIMIT_TOKENS")
    );
    // introspection
    assert_eq!(verdict("{ __typename }"), Ok(()));
    assert_eq!(
        verdict("{ __schema { types { name } } }"),
        Err("INTROSPECTION_DISABLED")
    );
    assert_eq!(
        verdict("{ a { __type(name: \"T\") { name } } }"),
        Err("INTROSPECTION_DISABLED")
    );
}

#[test]
fn fragment_cycles_are_refused() {
    assert_eq!(
        verdict("{ ...A } fragment A on Q { a ...B } fragment B on Q { ...A }"),
        Err("FRAGMENT_CYCLE")
    );
    assert_eq!(
        verdict("{ ...A } fragment A on Q { ...A }"),
        Err("FRAGMENT_CYCLE")
    );
}

#[test]
fn a_fragment_bomb_is_measured_in_linear_time() {
    // Each fragment spreads the previous one 10 times: 10^40 fields once expanded.
    let mut q = String::from("{ ...F40 } fragment F0 on Q { a }\n");
    for i in 1..=40 {
        q += &format!(
            "fragment F{i} on Q {{ {} }}\n",
            format!("...F{} ", i - 1).repeat(10)
        );
    }
    let started = std::time::Instant::now();
    let c = complexity(&q);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(c.fields, u64::MAX, "saturated, not overflowed");
    assert_eq!(verdict(&q), Err("LIMIT_TOKENS"));
    let relaxed = Limits {
        max_tokens: None,
        ..limits()
    };
    assert_eq!(relaxed.check(&c).map_err(|e| e.0), Err("LIMIT_FIELDS"));
}

#[test]
fn token_counting() {
    assert_eq!(
        count_tokens("query Q($a: Int = 1) { f(x: \"s{}\", y: [1, 2.5e3]) # comment {\n ...F }"),
        26
    );
    assert_eq!(count_tokens("{ a(s: \"\"\"block \" { } \"\"\") }"), 8);
}
