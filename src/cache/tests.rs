//! The freshness decisions of [`ResponseCache::lookup`] and soft purges on a clock the tests
//! move: TTLs and stale windows of seconds and minutes, without sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use pingora::http::ResponseHeader;

use super::*;

/// A clock that stands still until a test moves it.
struct FakeClock(Mutex<Instant>);

impl FakeClock {
    fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new(Instant::now())))
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }
}

/// A cache on `clock`, holding one entry stored now (by `clock`) under key 1.
fn cache_with(
    clock: &Arc<FakeClock>,
    ttl: Duration,
    swr: Duration,
    sie: Duration,
) -> Arc<ResponseCache> {
    let cache = Arc::new(ResponseCache::with_clock(1 << 20, clock.clone()));
    cache.insert(
        KEY,
        Entry {
            header: ResponseHeader::build(200, None).unwrap(),
            body: Bytes::from_static(b"{\"data\":{}}"),
            stored: clock.now(),
            stored_at: SystemTime::now(),
            ttl,
            swr,
            stale_if_error: sie,
            refresh: None,
            site: 0,
            tags: vec![tags::Tag::from("entity:Post:1")],
            purged: Default::default(),
            removed: Default::default(),
        },
    );
    cache
}

const KEY: CacheKey = [1; 32];

/// What a lookup of key 1 finds: its freshness on a hit, `None` when the caller must fetch.
async fn lookup(cache: &Arc<ResponseCache>) -> Option<Freshness> {
    match cache.lookup(&KEY, Duration::ZERO).await {
        Lookup::Hit(_, f) => Some(f),
        Lookup::Lead(_) => None,
        Lookup::Miss => panic!("nobody else is fetching"),
    }
}

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

#[tokio::test]
async fn lookups_are_fresh_for_the_ttl_then_stale_while_revalidating() {
    let clock = FakeClock::new();
    let cache = cache_with(&clock, SEC, 60 * SEC, Duration::ZERO);
    assert_eq!(lookup(&cache).await, Some(Freshness::Fresh));
    clock.advance(999 * MS);
    assert_eq!(lookup(&cache).await, Some(Freshness::Fresh));
    clock.advance(MS);
    assert_eq!(lookup(&cache).await, Some(Freshness::Revalidate));
    clock.advance(59 * SEC + 999 * MS);
    assert_eq!(lookup(&cache).await, Some(Freshness::Revalidate));
    // Past both: the caller fetches, though moka (on its own clock) still holds the entry.
    clock.advance(MS);
    assert_eq!(lookup(&cache).await, None);
    let e = cache.get(&KEY).expect("moka has not expired it");
    assert_eq!(e.freshness(clock.now()), Freshness::OnlyIfError);
}

#[tokio::test]
async fn past_its_ttl_an_entry_without_revalidation_is_kept_for_errors_only() {
    let clock = FakeClock::new();
    let cache = cache_with(&clock, SEC, Duration::ZERO, 60 * SEC);
    assert_eq!(lookup(&cache).await, Some(Freshness::Fresh));
    clock.advance(SEC);
    assert_eq!(lookup(&cache).await, None);
    let e = cache.get(&KEY).expect("kept for stale-if-error");
    assert_eq!(e.freshness(clock.now()), Freshness::OnlyIfError);
    assert!(e.usable_on_error());
}

#[tokio::test]
async fn a_soft_purge_is_timed_by_the_cache_clock() {
    let clock = FakeClock::new();
    let cache = cache_with(&clock, 60 * SEC, 10 * SEC, Duration::ZERO);
    clock.advance(5 * SEC);
    assert_eq!(lookup(&cache).await, Some(Freshness::Fresh));
    assert_eq!(cache.purge(&Purge::All, true, PurgeKind::All), 1);
    assert_eq!(lookup(&cache).await, Some(Freshness::Revalidate));
    // Stale for its stale-while-revalidate from the purge on (5 s after it was stored).
    clock.advance(9 * SEC + 999 * MS);
    assert_eq!(lookup(&cache).await, Some(Freshness::Revalidate));
    clock.advance(MS);
    assert_eq!(lookup(&cache).await, None);
}
