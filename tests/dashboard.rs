//! `conf/grafana/graphfront.json` only queries what graphfront exports: every metric in every
//! panel's PromQL exists in `/metrics` of a running edge that served some traffic, and every
//! label a query filters or groups on exists on that metric.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{post_gql, post_gql_with_key, ApiSite, SiteCerts, Upstream};
use serde_json::Value;

const DASHBOARD: &str = include_str!("../conf/grafana/graphfront.json");

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// Metric name → label names seen on its series, from the text exposition.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_string()).or_default();
        if let Some(body) = line[name_end..]
            .strip_prefix('{')
            .and_then(|b| b.split('}').next())
        {
            for pair in body.split("\",") {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.trim().to_string());
                }
            }
        }
    }
    out
}

/// Identifiers in `s` that look like graphfront metric names, with what follows each.
fn metric_refs(expr: &str) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("graphfront_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push((tail[..end].to_string(), &tail[end..]));
        rest = &tail[end..];
    }
    out
}

#[tokio::test]
async fn every_dashboard_query_uses_exported_metrics_and_labels() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let mut ids = BTreeSet::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        assert!(ids.insert(p["id"].as_i64().unwrap()), "duplicate id {p}");
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 20, "only {} queries", all.len());

    // An edge with auth and a cache rule that answered a hit, a miss, a pass and rejections.
    let up = Upstream::start(true).await;
    let extra = r#"[site.auth]
[[site.auth.api-key]]
id = "web"
key = "da2-dashboarddashboarddashboard"
# Never contacted (no token is sent): their series exist from the start.
[[site.auth.oidc]]
issuer = "https://issuer.invalid"
[site.auth.authorizer]
url = "https://authorizer.invalid/check"
[site.cache]
[[site.cache.rule]]
field = "Query.hello"
ttl = "60s"
"#;
    let api = ApiSite::start(&up, SiteCerts::new(), extra).await;
    let (edge, client) = (&api.edge, &api.client);
    let url = edge.url("api.test", "/graphql");
    for (query, key) in [
        ("{ hello }", "da2-dashboarddashboarddashboard"),
        ("{ hello }", "da2-dashboarddashboarddashboard"),
        (
            "mutation { createPost(title: \"x\") { id } }",
            "da2-dashboarddashboarddashboard",
        ),
        ("{ hello }", "da2-wrong"),
    ] {
        let r = post_gql_with_key(client, &url, key, query).await.unwrap();
        assert!(
            r.status().is_success() || r.status() == 401,
            "{}",
            r.status()
        );
    }
    let r = post_gql(client, &edge.url("api.test", "/nowhere"), "{ hello }")
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let exported = exported(&edge.metrics().await);
    let mut problems = Vec::new();
    for expr in &all {
        for (name, after) in metric_refs(expr) {
            let Some(labels) = exported.get(&name) else {
                problems.push(format!("{name} (in `{expr}`) is not exported"));
                continue;
            };
            // Labels in the selector right after the name must exist on the metric.
            if let Some(sel) = after.strip_prefix('{').and_then(|s| s.split('}').next()) {
                for matcher in sel.split(',').filter(|m| !m.trim().is_empty()) {
                    let label = matcher.split(['=', '!']).next().unwrap_or_default().trim();
                    if label != "instance" && !labels.contains(label) {
                        problems.push(format!("{name} has no label `{label}` (in `{expr}`)"));
                    }
                }
            }
        }
    }
    // Labels a query groups by must exist on one of its metrics (`le` on a histogram's buckets).
    for expr in &all {
        let names: Vec<String> = metric_refs(expr).into_iter().map(|(n, _)| n).collect();
        for clause in expr.split("by (").skip(1) {
            for label in clause.split(')').next().unwrap_or_default().split(',') {
                let label = label.trim();
                let known = ["instance", "le"].contains(&label)
                    || names
                        .iter()
                        .any(|n| exported.get(n).is_some_and(|l| l.contains(label)));
                if !known {
                    problems.push(format!("no metric has label `{label}` (in `{expr}`)"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
