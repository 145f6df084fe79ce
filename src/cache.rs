//! The query cache: whole GraphQL responses in a moka cache bounded in bytes, keyed by site,
//! normalized operation, canonical variables and scope; concurrent misses coalesced.

pub mod fill;
pub mod key;
pub mod policy;
pub mod purge;
pub mod refresh;
pub mod tags;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;
use pingora::http::ResponseHeader;
use tokio::sync::watch;

pub use key::{CacheKey, RequestPlan};
pub use purge::{Purge, PurgeKind};

use crate::graphql::{Complexity, Operation};

/// A parsed document: its selected operation and the digest of its normalized form.
#[derive(Debug)]
pub struct Analysed {
    pub op: Operation,
    pub normalized: [u8; 32],
    pub complexity: Complexity,
}

use crate::metrics;

/// What the rules need from a response body: its types, and whether it has errors.
#[derive(Debug, Default)]
pub struct Read {
    pub typenames: BTreeSet<String>,
    pub errors: bool,
}

impl Read {
    /// Parse `body`: a JSON object with `data`, or the reason it is not cached.
    pub fn parse(body: &[u8]) -> Result<Self, NotCached> {
        let parsed: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| NotCached::NotJson)?;
        let obj = parsed.as_object().ok_or(NotCached::NotJson)?;
        if obj.get("errors").is_some_and(|e| !e.is_null()) {
            return Err(NotCached::Errors);
        }
        Ok(Self {
            typenames: policy::typenames(obj.get("data").ok_or(NotCached::NoData)?),
            errors: false,
        })
    }
}

/// Why a response is not served from, or not stored in, the cache: the `reason` label of the
/// cache metrics and the `x-cache-reason` debug header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCached {
    /// Mutations are never cached (they purge).
    Mutation,
    Subscription,
    /// No `[[site.cache.rule]]` matches the operation.
    NoRule,
    /// The rule is per caller and the request names none.
    NoPrincipal,
    /// Credentials only the upstream can verify (IAM).
    UnverifiedAuth,
    /// `@cacheControl(scope: PRIVATE)` without a per-caller rule.
    Scope,
    /// The upstream said `no-store`, `private` or `max-age=0`.
    NoStore,
    Private,
    MaxAge,
    /// Not a 200.
    Status,
    SetCookie,
    /// A `content-encoding` the cache does not store.
    Encoded,
    Vary,
    /// Over `max-entry-size`.
    BodySize,
    NotJson,
    /// The response has GraphQL `errors`.
    Errors,
    NoData,
    /// A purge that matches it happened while it was fetched.
    Purged,
    /// Its headers could not be kept.
    Header,
}

impl NotCached {
    pub fn label(self) -> &'static str {
        match self {
            Self::Mutation => "mutation",
            Self::Subscription => "subscription",
            Self::NoRule => "no-rule",
            Self::NoPrincipal => "no-principal",
            Self::UnverifiedAuth => "unverified-auth",
            Self::Scope => "scope",
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::MaxAge => "max-age",
            Self::Status => "status",
            Self::SetCookie => "set-cookie",
            Self::Encoded => "encoded",
            Self::Vary => "vary",
            Self::BodySize => "body-size",
            Self::NotJson => "not-json",
            Self::Errors => "errors",
            Self::NoData => "no-data",
            Self::Purged => "purged",
            Self::Header => "header",
        }
    }
}

/// A cached response, ready to be written.
pub struct Entry {
    /// Status 200, content type, kept headers and content length: cloned per hit.
    pub header: ResponseHeader,
    pub body: Bytes,
    pub stored: Instant,
    pub stored_at: SystemTime,
    pub ttl: Duration,
    /// Served stale (while refreshing) until `stored + ttl + swr`.
    pub swr: Duration,
    /// Served stale when the upstream fails until `stored + ttl + stale_if_error`.
    pub stale_if_error: Duration,
    /// What to send upstream to refresh this entry in the background.
    pub refresh: Option<Arc<refresh::RefreshRequest>>,
    /// Site index (for purges and metrics).
    pub site: usize,
    /// What the response answers (`tags`), for purges.
    pub tags: Vec<tags::Tag>,
    /// When it was soft-purged, in nanoseconds after `stored`, plus one (0: it was not): from
    /// then on it is served as past its TTL, stale-while-revalidate counted from the purge.
    pub purged: AtomicU64,
    /// Hard-purged: never served again, not even in place of an upstream failure by a request
    /// that found it before the purge.
    pub removed: AtomicBool,
}

/// The time source of the freshness decisions the cache makes itself: [`Entry::freshness`] in
/// [`ResponseCache::lookup`] and the time of a soft purge. Production uses [`SystemClock`]; unit
/// tests move a fake one instead of sleeping (as `acme::schedule::Clock` does for renewals).
///
/// Not covered, on the real clock still: moka expires an entry once its lifetime (the TTL and
/// the longer stale window) has passed in its own (real) time; entries are stamped `stored`
/// with [`Instant::now`] when filled; [`Entry::age_secs`] and the stale-if-error window (in
/// `proxy::caching`) use `stored.elapsed()`. A test clock moved past an entry's lifetime so
/// finds an entry moka still holds (as a cache that has not run its pending tasks may), whose
/// freshness then says it is spent.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// [`Instant::now`].
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How fresh an entry is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Past its TTL but within stale-while-revalidate.
    Revalidate,
    /// Past both; usable only if the upstream fails (stale-if-error).
    OnlyIfError,
}

impl Entry {
    pub fn freshness(&self, now: Instant) -> Freshness {
        let mut age = now.saturating_duration_since(self.stored);
        let purged = self.purged.load(Ordering::Relaxed);
        if purged > 0 {
            // As if its TTL had ended at the purge (if it had not already).
            age += self.ttl.saturating_sub(Duration::from_nanos(purged - 1));
        }
        if age < self.ttl {
            Freshness::Fresh
        } else if age < self.ttl + self.swr {
            Freshness::Revalidate
        } else {
            Freshness::OnlyIfError
        }
    }

    /// Soft-purge the entry at `now`; false when it was already.
    pub fn soft_purge(&self, now: Instant) -> bool {
        let after = now.saturating_duration_since(self.stored).as_nanos();
        let at = after.min(u128::from(u64::MAX - 1)) as u64 + 1;
        self.purged
            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether it may stand in for an upstream failure: not hard-purged since it was found.
    pub fn usable_on_error(&self) -> bool {
        !self.removed.load(Ordering::Relaxed)
    }

    pub fn age_secs(&self) -> u64 {
        self.stored.elapsed().as_secs()
    }

    fn lifetime(&self) -> Duration {
        self.ttl + self.swr.max(self.stale_if_error)
    }

    fn weight(&self) -> u32 {
        let headers: usize = self
            .header
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        // Each tag is held here and, with the key, in the tag index.
        let tags: usize = self.tags.iter().map(|t| t.len() + 64).sum();
        (self.body.len() + headers + tags + 256).min(u32::MAX as usize) as u32
    }
}

struct EntryExpiry;

impl Expiry<CacheKey, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _k: &CacheKey,
        v: &Arc<Entry>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(v.lifetime())
    }
    fn expire_after_update(
        &self,
        _k: &CacheKey,
        v: &Arc<Entry>,
        _now: Instant,
        _d: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.lifetime())
    }
}

/// Keys are blake3 digests already: their first 8 bytes are a uniform hash, and SipHash over
/// them again would be wasted work on every lookup.
#[derive(Clone, Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Arrays hash their length first (write_usize), then their bytes: keep the first
        // 8 bytes of the digest, folded with whatever came before.
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
    }
}

type DigestState = std::hash::BuildHasherDefault<DigestHasher>;

/// The process-wide response cache and the request plans memoized by raw request.
pub struct ResponseCache {
    entries: Cache<CacheKey, Arc<Entry>, DigestState>,
    plans: Cache<[u8; 32], Arc<RequestPlan>, DigestState>,
    documents: Cache<[u8; 32], Arc<Analysed>, DigestState>,
    inflight: Mutex<HashMap<CacheKey, watch::Receiver<()>>>,
    /// Tag → keys, for purges by tag.
    index: purge::SharedIndex,
    /// Counts purges, and remembers the latest: a response fetched while one that matches it
    /// happened is not stored (it may hold what the purge removed).
    purges: purge::Recent,
    /// What "now" is for freshness (see [`Clock`]).
    clock: Arc<dyn Clock>,
}

/// A miss that leads: others asking for the same key wait until it is dropped.
pub struct Leader {
    cache: Arc<ResponseCache>,
    key: CacheKey,
    _done: watch::Sender<()>,
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Ok(mut m) = self.cache.inflight.lock() {
            m.remove(&self.key);
        }
    }
}

/// What a lookup found.
pub enum Lookup {
    Hit(Arc<Entry>, Freshness),
    /// Nobody is fetching this key: the caller fetches it.
    Lead(Leader),
    Miss,
}

impl ResponseCache {
    pub fn new(max_bytes: u64) -> Self {
        Self::with_clock(max_bytes, Arc::new(SystemClock))
    }

    /// [`ResponseCache::new`] deciding freshness by `clock` (tests).
    pub fn with_clock(max_bytes: u64, clock: Arc<dyn Clock>) -> Self {
        let index = purge::SharedIndex::default();
        let listener_index = index.clone();
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &CacheKey, v: &Arc<Entry>| v.weight())
            .expire_after(EntryExpiry)
            // Called once for every stored value that leaves: expired, evicted, removed or
            // replaced (with the old value).
            .eviction_listener(move |k: Arc<CacheKey>, v: Arc<Entry>, cause| {
                if cause == RemovalCause::Size {
                    metrics::get().cache_evictions.inc();
                }
                if !v.tags.is_empty() {
                    purge::lock(&listener_index).remove(&k, &v.tags);
                }
            })
            .build_with_hasher(DigestState::default());
        // Plans are small; bounded by count.
        let plans = Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(Duration::from_secs(600))
            .build_with_hasher(DigestState::default());
        // Analysed documents, by query text and operation name: a known document with new
        // variables is keyed without parsing it again.
        let documents = Cache::builder()
            .max_capacity(10_000)
            .time_to_idle(Duration::from_secs(3600))
            .build_with_hasher(DigestState::default());
        Self {
            entries,
            plans,
            documents,
            inflight: Mutex::new(HashMap::new()),
            purges: Default::default(),
            index,
            clock,
        }
    }

    /// Now, by the cache's [`Clock`].
    fn now(&self) -> Instant {
        self.clock.now()
    }

    pub fn plan(&self, raw: &[u8; 32]) -> Option<Arc<RequestPlan>> {
        self.plans.get(raw)
    }

    pub fn remember_plan(&self, raw: [u8; 32], plan: Arc<RequestPlan>) {
        self.plans.insert(raw, plan);
    }

    pub fn document(&self, key: &[u8; 32]) -> Option<Arc<Analysed>> {
        self.documents.get(key)
    }

    pub fn remember_document(&self, key: [u8; 32], doc: Arc<Analysed>) {
        self.documents.insert(key, doc);
    }

    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.entries.get(key)
    }

    /// Look up `key`; on a miss, become the leader or wait (at most `wait`) for the current
    /// leader's response, then look again.
    pub async fn lookup(self: &Arc<Self>, key: &CacheKey, wait: Duration) -> Lookup {
        if let Some(e) = self.entries.get(key) {
            match e.freshness(self.now()) {
                Freshness::OnlyIfError => {}
                f => return Lookup::Hit(e, f),
            }
        }
        let waiting = {
            let Ok(mut inflight) = self.inflight.lock() else {
                return Lookup::Miss;
            };
            match inflight.get(key) {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(());
                    inflight.insert(*key, rx);
                    return Lookup::Lead(Leader {
                        cache: self.clone(),
                        key: *key,
                        _done: tx,
                    });
                }
            }
        };
        metrics::get().cache_coalesced.inc();
        let mut rx = waiting;
        // Returns when the leader finishes (its sender is dropped) or the wait is over.
        let _ = tokio::time::timeout(wait, rx.changed()).await;
        match self.entries.get(key).map(|e| {
            let f = e.freshness(self.now());
            (e, f)
        }) {
            Some((e, f)) if f != Freshness::OnlyIfError => Lookup::Hit(e, f),
            _ => Lookup::Miss,
        }
    }

    /// The purge count, read when a fetch starts.
    pub fn purge_generation(&self) -> u64 {
        self.purges.generation()
    }

    /// Store `entry` unless a purge that picks it happened since `generation` was read (or
    /// so many purges happened that the ones since then are no longer known).
    pub fn insert_unless_purged(
        &self,
        key: CacheKey,
        entry: Entry,
        generation: u64,
    ) -> Result<(), NotCached> {
        // Held while storing: a purge that starts later finds the entry in the index.
        let recent = self.purges.lock();
        if recent.picked_since(generation, &entry) {
            return Err(NotCached::Purged);
        }
        self.insert(key, entry);
        drop(recent);
        Ok(())
    }

    pub fn insert(&self, key: CacheKey, entry: Entry) {
        // Indexed before it is stored, so that its removal is reported after.
        if !entry.tags.is_empty() {
            purge::lock(&self.index).add(&key, &entry.tags);
        }
        self.entries.insert(key, Arc::new(entry));
    }

    /// Store a minimal fresh entry (for benchmarks of the hit path).
    #[doc(hidden)]
    pub fn insert_for_bench(&self, key: CacheKey, body: Bytes) {
        let mut header = ResponseHeader::build(200, None).expect("static status");
        let _ = header.insert_header("x-cache", "HIT");
        self.insert(
            key,
            Entry {
                header,
                body,
                stored: Instant::now(),
                stored_at: SystemTime::now(),
                ttl: Duration::from_secs(3600),
                swr: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                refresh: None,
                site: 0,
                tags: Vec::new(),
                purged: Default::default(),
                removed: Default::default(),
            },
        );
    }

    pub fn remove(&self, key: &CacheKey) {
        self.entries.invalidate(key);
    }

    /// Claim the right to refresh `key` in the background (false when a fetch is under way).
    pub fn claim_refresh(self: &Arc<Self>, key: &CacheKey) -> Option<Leader> {
        let mut inflight = self.inflight.lock().ok()?;
        if inflight.contains_key(key) {
            return None;
        }
        let (tx, rx) = watch::channel(());
        inflight.insert(*key, rx);
        Some(Leader {
            cache: self.clone(),
            key: *key,
            _done: tx,
        })
    }

    /// Publish entry count and size (moka counts lazily; called before each scrape).
    pub fn publish_gauges(&self) {
        self.entries.run_pending_tasks();
        let m = metrics::get();
        m.cache_entries.set(self.entries.entry_count() as i64);
        m.cache_bytes.set(self.entries.weighted_size() as i64);
    }
}
