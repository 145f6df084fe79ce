//! Cache tags and invalidation by mutations, against the AppSync simulator: the upstream gets
//! `__typename`s the client never sees; a mutation returning an entity purges the cached
//! responses holding that entity and leaves the others cached.
//!
//! Needs node and `npm ci --prefix tests/js`.

mod common;

use common::appsync::AppSyncSim;
use common::{header, post_gql_with_key, ApiSite};
use serde_json::{json, Value};

const API_KEY: &str = "da2-appsyncsimappsyncsimappsy";

async fn setup(cache: &str) -> (AppSyncSim, ApiSite) {
    let sim = AppSyncSim::start(API_KEY, None).await;
    let extra = format!(
        "[site.auth]\n[[site.auth.api-key]]\nid = \"web\"\nkey = \"{API_KEY}\"\n\
         [site.cache]\ndefault-ttl = \"5m\"\n{cache}\n"
    );
    let site = sim.site(&extra).await;
    (sim, site)
}

/// POST `query` with the key: status, x-cache, body.
async fn ask(site: &ApiSite, query: &str) -> (u16, String, Value) {
    let r = post_gql_with_key(&site.client, &site.url(), API_KEY, query)
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cache = header(&r, "x-cache");
    (status, cache, r.json().await.unwrap())
}

#[tokio::test]
async fn a_mutation_purges_the_cached_responses_holding_its_entity_only() {
    let (sim, site) = setup("").await;
    let get = |id: &str| format!(r#"{{ getPost(id: "{id}") {{ title }} }}"#);

    let (status, cache, body) = ask(&site, &get("1")).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    // Exactly the shape asked for, though the upstream was asked for __typename.
    assert_eq!(
        body,
        json!({"data": {"getPost": {"title": "First post"}}}),
        "{body}"
    );
    let upstream_saw = sim.stats().await.last_body.unwrap();
    assert!(upstream_saw.contains("__typename"), "{upstream_saw}");
    assert_eq!(ask(&site, &get("1")).await.1, "HIT");
    assert_eq!(ask(&site, &get("2")).await.1, "MISS");
    let (_, cache, body) = ask(&site, &get("2")).await;
    assert_eq!(cache, "HIT");
    assert_eq!(
        body["data"]["getPost"].as_object().unwrap().len(),
        1,
        "{body}"
    );

    // A mutation returning Post 1: its own response has no __typename either.
    let (status, _, body) = ask(
        &site,
        r#"mutation { createPost(id: "1", title: "Edited") { id title } }"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"data": {"createPost": {"id": "1", "title": "Edited"}}})
    );

    // getPost(1) is fetched again (and sees the edit); getPost(2) is still cached.
    let before = sim.stats().await.graphql_requests;
    let (_, cache, body) = ask(&site, &get("1")).await;
    assert_eq!(cache, "MISS");
    assert_eq!(body["data"]["getPost"]["title"], "Edited");
    assert_eq!(ask(&site, &get("2")).await.1, "HIT");
    assert_eq!(sim.stats().await.graphql_requests, before + 1);
    let purged = site
        .edge
        .metric(r#"graphfront_cache_purged_entries_total{kind="mutation"}"#)
        .await;
    assert_eq!(purged, 1.0);
}

#[tokio::test]
async fn per_mutation_rules_purge_types_and_listed_root_fields() {
    let (_sim, site) = setup(
        "[[site.cache.mutation]]\nfield = \"createPost\"\ninvalidate = \"none\"\npurge-fields = [\"listPosts\"]\n",
    )
    .await;
    let list = "{ listPosts { id title } }";
    let get = r#"{ getPost(id: "2") { title } }"#;
    assert_eq!(ask(&site, list).await.1, "MISS");
    assert_eq!(ask(&site, list).await.1, "HIT");
    assert_eq!(ask(&site, get).await.1, "MISS");
    let (_, _, body) = ask(&site, list).await;
    // Asked without __typename: none anywhere in the list.
    assert!(!body.to_string().contains("__typename"), "{body}");

    // createPost(id 2) returns Post 2, but the rule purges listPosts only.
    ask(
        &site,
        r#"mutation { createPost(id: "9", title: "New") { id } }"#,
    )
    .await;
    let (_, cache, body) = ask(&site, list).await;
    assert_eq!(cache, "MISS");
    assert!(body.to_string().contains("New"), "{body}");
    assert_eq!(ask(&site, get).await.1, "HIT");
}

#[tokio::test]
async fn clients_asking_for_typename_keep_it_where_they_asked() {
    let (_sim, site) = setup("").await;
    let q =
        r#"query P { getPost(id: "1") { __typename title ...A } } fragment A on Post { author }"#;
    let (_, _, body) = ask(&site, q).await;
    assert_eq!(
        body,
        json!({"data": {"getPost": {"__typename": "Post", "title": "First post", "author": "alice"}}})
    );
    let (_, cache, again) = ask(&site, q).await;
    assert_eq!((cache.as_str(), &again), ("HIT", &body));
}

#[tokio::test]
async fn responses_already_naming_their_types_pass_unchanged_and_still_purge() {
    // Apollo Client asks for __typename in every selection set: nothing to add or remove.
    let (sim, site) = setup("").await;
    let get = r#"{ getPost(id: "1") { __typename id title } }"#;
    let (_, cache, body) = ask(&site, get).await;
    assert_eq!(cache, "MISS");
    assert_eq!(
        body,
        json!({"data": {"getPost": {"__typename": "Post", "id": "1", "title": "First post"}}})
    );
    let upstream_saw: Value = serde_json::from_str(&sim.stats().await.last_body.unwrap()).unwrap();
    assert_eq!(upstream_saw["query"], get, "sent on as the client wrote it");
    assert_eq!(ask(&site, get).await.1, "HIT");

    let edit = r#"mutation { createPost(id: "1", title: "Edited") { __typename id title } }"#;
    let r = post_gql_with_key(&site.client, &site.url(), API_KEY, edit)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Passed on as the upstream sent it, length and all.
    assert!(r.content_length().is_some(), "{:?}", r.headers());
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"data": {"createPost": {"__typename": "Post", "id": "1", "title": "Edited"}}})
    );
    let upstream_saw: Value = serde_json::from_str(&sim.stats().await.last_body.unwrap()).unwrap();
    assert_eq!(upstream_saw["query"], edit);

    let (_, cache, body) = ask(&site, get).await;
    assert_eq!(cache, "MISS");
    assert_eq!(body["data"]["getPost"]["title"], "Edited");
}

#[tokio::test]
async fn type_rules_see_the_types_the_edge_asked_for() {
    // Cached for 5 minutes by default; responses holding a Post for 1 second.
    let (_sim, site) = setup("[[site.cache.rule]]\ntype = \"Post\"\nttl = \"1s\"\n").await;
    let missing = r#"{ getPost(id: "404") { title } }"#;
    let (_, cache, body) = ask(&site, missing).await;
    assert_eq!(
        (cache.as_str(), &body),
        ("MISS", &json!({"data": {"getPost": null}}))
    );
    // The client never selected __typename, but the upstream named the Post to the edge.
    let post = r#"{ getPost(id: "1") { title } }"#;
    let (status, cache, body) = ask(&site, post).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
    assert_eq!(body, json!({"data": {"getPost": {"title": "First post"}}}));
    assert_eq!(ask(&site, post).await.1, "HIT");
    // Past the Post rule's 1 s TTL (the edge's clock: real time).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        ask(&site, post).await.1,
        "MISS",
        "the Post rule's TTL applied"
    );
    assert_eq!(
        ask(&site, missing).await.1,
        "HIT",
        "the default TTL applied"
    );
}

#[tokio::test]
async fn the_upstream_gets_the_clients_strings_exactly() {
    // graphql-parser would print these strings otherwise (a line break makes a block string,
    // which drops trailing line breaks and indentation); the edge only adds its field.
    let (sim, site) = setup("").await;
    let title = "  two\n  lines 😀\n\n";
    let mutation = format!(
        "mutation {{ createPost(id: \"1\", title: {}) {{ id title }} }}",
        json!(title)
    );
    let (status, _, body) = ask(&site, &mutation).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["createPost"]["title"], title);
    let sent: Value = serde_json::from_str(&sim.stats().await.last_body.unwrap()).unwrap();
    let sent = sent["query"].as_str().unwrap();
    assert_eq!(
        sent.replace(" graphfront__typename: __typename", ""),
        mutation
    );

    let (_, cache, body) = ask(&site, r#"{ getPost(id: "1") { title } }"#).await;
    assert_eq!(cache, "MISS");
    assert_eq!(body["data"]["getPost"]["title"], title);
}
