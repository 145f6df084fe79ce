//! Two cached sites on one counting upstream, and queries that report the cache's answer, for
//! the cache and purge tests.

use std::time::Duration;

use serde_json::{json, Value};

use super::{eventually, header, site, Edge, SiteCerts, Upstream};

/// Sites `a` (`a.test`) and `b` (`b.test`) on one HTTPS upstream, and a client for both.
pub struct CachedSites {
    pub up: Upstream,
    pub certs: SiteCerts,
    pub edge: Edge,
    pub client: reqwest::Client,
}

/// A response, with what the cache said about it.
pub struct Answer {
    pub status: u16,
    pub x_cache: String,
    /// `x-cache-reason` (asked for on every request).
    pub reason: String,
    pub age: Option<u64>,
    pub body: Value,
}

impl Answer {
    /// The response `r`, read whole.
    pub async fn read(r: reqwest::Response) -> Self {
        Answer {
            status: r.status().as_u16(),
            x_cache: header(&r, "x-cache"),
            reason: header(&r, "x-cache-reason"),
            age: header(&r, "age").parse().ok(),
            body: r.json().await.unwrap_or(Value::Null),
        }
    }

    /// `getPost.version` in the body.
    pub fn post_version(&self) -> i64 {
        self.body["data"]["getPost"]["version"].as_i64().unwrap()
    }
}

impl CachedSites {
    /// The sites with `cache` as their `[site.cache]` table body and `global` as top-level TOML.
    pub async fn start(cache: &str, global: &str) -> Self {
        let up = Upstream::start(true).await;
        let certs = SiteCerts::new();
        let (c, k) = certs.write("sites", &["a.test", "b.test"]);
        let extra = format!(
            "upstream-ca-file = \"{}\"\n[site.cache]\n{cache}\n",
            up.ca_file().display()
        );
        let sites = site("a", &["a.test"], &up.url("/graphql"), &c, &k, &extra)
            + &site("b", &["b.test"], &up.url("/graphql"), &c, &k, &extra);
        let edge = Edge::start(&sites, global).await;
        let client = edge.client(&certs.ca_pem(), &["a.test", "b.test"], false);
        Self {
            up,
            certs,
            edge,
            client,
        }
    }

    /// POST the GraphQL `body` to `host` with `headers`, asking for the cache's reasons.
    pub async fn send(&self, host: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
        let mut req = self
            .client
            .post(self.edge.url(host, "/graphql"))
            .header("content-type", "application/json")
            .header("x-graphfront-cache-debug", "1")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Answer::read(req.send().await.unwrap()).await
    }

    /// The query `q` on `host`.
    pub async fn query_on(&self, host: &str, q: &str) -> Answer {
        self.send(host, json!({ "query": q }), &[]).await
    }

    /// The query `q` on `a.test`.
    pub async fn query(&self, q: &str) -> Answer {
        self.query_on("a.test", q).await
    }

    /// How many requests the upstream has received.
    pub fn upstream_count(&self) -> usize {
        self.up.recorder.count()
    }

    /// `q` on `a.test`, whose entry `cached` went stale while the upstream's post moved on:
    /// served STALE with `cached`'s version at once, then (refreshed in the background) a HIT
    /// with the next version.
    pub async fn stale_then_refreshed(&self, q: &str, cached: &Answer) {
        stale_then_refreshed(|| self.query(q), cached).await
    }
}

/// Asked with `ask`, an entry that went stale while the upstream's post moved on past `cached`:
/// served STALE with `cached`'s version at once, then (refreshed in the background) a HIT with
/// the next version.
pub async fn stale_then_refreshed<F, A>(ask: F, cached: &Answer)
where
    F: Fn() -> A,
    A: std::future::Future<Output = Answer>,
{
    let stale = ask().await;
    assert_eq!(stale.x_cache, "STALE");
    assert_eq!(
        stale.post_version(),
        cached.post_version(),
        "stale content is served at once"
    );
    let what = "no fresh entry after the refresh";
    eventually(Duration::from_secs(10), what, async || {
        let a = ask().await;
        if a.x_cache == "HIT" && a.post_version() == cached.post_version() + 1 {
            return Ok(());
        }
        Err(a.x_cache)
    })
    .await
}
