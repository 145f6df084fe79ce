//! The built-in demo API (an AppSync-flavoured blog with a real async-graphql executor), used by
//! `graphfront demo` and as the real GraphQL upstream of the integration tests.

mod certs;
mod http;
mod launch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_graphql::{Context, Object, Schema, SimpleObject, Subscription, ID};
use futures_util::Stream;
use tokio::sync::broadcast;

pub use certs::TestCa;
pub use http::{router, router_with_recorder, serve, tls_server_config, RecordedRequest, Recorder};
pub use launch::{prepare, ADMIN_TOKEN, API_KEY};

pub type DemoSchema = Schema<Query, Mutation, Subscription>;

/// The caller as the demo API sees it: the `x-principal` request header.
#[derive(Debug, Clone)]
pub struct Principal(pub String);

#[derive(SimpleObject, Clone, Debug)]
pub struct Post {
    id: ID,
    title: String,
    content: Option<String>,
    author: Option<String>,
    version: i32,
}

#[derive(Clone, Debug)]
enum Event {
    Created(Post),
    Updated(Post),
}

/// In-memory posts and the event feed of the subscriptions.
struct Store {
    posts: RwLock<BTreeMap<u64, Post>>,
    next_id: AtomicU64,
    events: broadcast::Sender<Event>,
}

impl Store {
    fn seeded() -> Self {
        let posts = (1..=3)
            .map(|i| {
                let post = Post {
                    id: ID(i.to_string()),
                    title: format!("Post {i}"),
                    content: Some(format!("The content of post {i}.")),
                    author: Some("demo".into()),
                    version: 1,
                };
                (i, post)
            })
            .collect();
        Self {
            posts: RwLock::new(posts),
            next_id: AtomicU64::new(4),
            events: broadcast::channel(256).0,
        }
    }

    fn get(&self, id: &ID) -> Option<Post> {
        let key: u64 = id.parse().ok()?;
        self.posts.read().ok()?.get(&key).cloned()
    }

    fn update(&self, id: &ID, change: impl FnOnce(&mut Post)) -> Option<Post> {
        let key: u64 = id.parse().ok()?;
        let mut posts = self.posts.write().ok()?;
        let post = posts.get_mut(&key)?;
        change(post);
        post.version += 1;
        let post = post.clone();
        let _ = self.events.send(Event::Updated(post.clone()));
        Some(post)
    }
}

fn store<'a>(ctx: &Context<'a>) -> &'a Store {
    ctx.data_unchecked::<Arc<Store>>()
}

pub struct Query;

#[Object]
impl Query {
    async fn get_post(&self, ctx: &Context<'_>, id: ID) -> Option<Post> {
        store(ctx).get(&id)
    }

    async fn list_posts(&self, ctx: &Context<'_>, limit: Option<i32>) -> Vec<Post> {
        let limit = limit.unwrap_or(100).clamp(0, 1000) as usize;
        let posts = store(ctx)
            .posts
            .read()
            .map(|p| p.values().take(limit).cloned().collect());
        posts.unwrap_or_default()
    }

    async fn hello(&self) -> &'static str {
        "Hello from the graphfront demo API"
    }

    /// The caller's `x-principal` header, so tests can see whose request made a response.
    async fn whoami(&self, ctx: &Context<'_>) -> Option<String> {
        ctx.data_opt::<Principal>().map(|p| p.0.clone())
    }

    /// Answers after `ms` milliseconds (at most 30 s): a slow upstream on demand.
    async fn slow(&self, ms: i32) -> String {
        let ms = ms.clamp(0, 30_000) as u64;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        format!("waited {ms} ms")
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    async fn create_post(&self, ctx: &Context<'_>, title: String, content: Option<String>) -> Post {
        let s = store(ctx);
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        let post = Post {
            id: ID(id.to_string()),
            title,
            content,
            author: ctx.data_opt::<Principal>().map(|p| p.0.clone()),
            version: 1,
        };
        if let Ok(mut posts) = s.posts.write() {
            posts.insert(id, post.clone());
        }
        let _ = s.events.send(Event::Created(post.clone()));
        post
    }

    async fn update_post(&self, ctx: &Context<'_>, id: ID, title: String) -> Option<Post> {
        store(ctx).update(&id, |p| p.title = title)
    }

    /// Bumps the post's version without changing anything else.
    async fn touch_post(&self, ctx: &Context<'_>, id: ID) -> Option<Post> {
        store(ctx).update(&id, |_| {})
    }
}

pub struct Subscription;

#[Subscription]
impl Subscription {
    async fn on_create_post(&self, ctx: &Context<'_>) -> impl Stream<Item = Post> {
        events(store(ctx), |e| match e {
            Event::Created(p) => Some(p),
            Event::Updated(_) => None,
        })
    }

    async fn on_update_post(&self, ctx: &Context<'_>, id: Option<ID>) -> impl Stream<Item = Post> {
        events(store(ctx), move |e| match e {
            Event::Updated(p) if id.as_ref().is_none_or(|id| *id == p.id) => Some(p),
            _ => None,
        })
    }
}

fn events(
    store: &Store,
    pick: impl Fn(Event) -> Option<Post> + Send + 'static,
) -> impl Stream<Item = Post> {
    let mut rx = store.events.subscribe();
    async_stream::stream! {
        loop {
            match rx.recv().await {
                Ok(e) => if let Some(p) = pick(e) { yield p },
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
}

/// A fresh demo API with its own seeded store.
pub fn schema() -> DemoSchema {
    Schema::build(Query, Mutation, Subscription)
        .data(Arc::new(Store::seeded()))
        .finish()
}
