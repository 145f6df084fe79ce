//! Purges: the tag index (tag → keys of the stored entries carrying it), kept in step with the
//! cache by its eviction listener, and purging everything, a site, or the entries with a tag.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::tags::Tag;
use super::{CacheKey, DigestState, Entry, ResponseCache};
use crate::metrics;

/// What to purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Every entry of every site.
    All,
    /// Every entry of one site (its index in `Config::sites`).
    Site(usize),
    /// The entries carrying any of `tags`, of one site or (`None`) of every site.
    Tagged { site: Option<usize>, tags: Vec<Tag> },
}

impl Purge {
    fn matches(&self, e: &Entry) -> bool {
        match self {
            Self::All => true,
            Self::Site(site) => e.site == *site,
            Self::Tagged { site, tags } => {
                site.is_none_or(|s| e.site == s) && e.tags.iter().any(|t| tags.contains(t))
            }
        }
    }
}

/// Why a purge was made: the `kind` label of the purge metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeKind {
    All,
    Site,
    Operation,
    Field,
    Type,
    Entity,
    /// Invalidation by a mutation that went through the edge.
    Mutation,
}

impl PurgeKind {
    pub const EVERY: [Self; 7] = [
        Self::All,
        Self::Site,
        Self::Operation,
        Self::Field,
        Self::Type,
        Self::Entity,
        Self::Mutation,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Site => "site",
            Self::Operation => "operation",
            Self::Field => "field",
            Self::Type => "type",
            Self::Entity => "entity",
            Self::Mutation => "mutation",
        }
    }
}

/// Tag → keys of the entries carrying it. Each key counts the stored values (under that key)
/// carrying the tag whose removal the cache has not reported yet: 1, or 2 while a replaced
/// value's removal is being reported. Counting, rather than a set, makes the order of an insert
/// and the removal notice of the value it replaced irrelevant: a replaced entry's old tags never
/// take the new entry's key out. Values are counted before they are stored, so their removal is
/// always reported after; the index holds only keys of entries still in the cache.
#[derive(Default)]
pub(super) struct TagIndex {
    by_tag: HashMap<Tag, HashMap<CacheKey, u32, DigestState>>,
}

impl TagIndex {
    pub(super) fn add(&mut self, key: &CacheKey, tags: &[Tag]) {
        for tag in tags {
            *self
                .by_tag
                .entry(tag.clone())
                .or_default()
                .entry(*key)
                .or_default() += 1;
        }
    }

    pub(super) fn remove(&mut self, key: &CacheKey, tags: &[Tag]) {
        for tag in tags {
            let Some(keys) = self.by_tag.get_mut(tag) else {
                continue;
            };
            if let Some(n) = keys.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    keys.remove(key);
                }
            }
            if keys.is_empty() {
                self.by_tag.remove(tag);
            }
        }
    }

    fn keys(&self, tags: &[Tag]) -> HashSet<CacheKey, DigestState> {
        tags.iter()
            .filter_map(|t| self.by_tag.get(t))
            .flat_map(|keys| keys.keys().copied())
            .collect()
    }

    /// (tag, key) pairs held, for tests.
    #[cfg(test)]
    fn pairs(&self) -> usize {
        self.by_tag.values().map(HashMap::len).sum()
    }
}

/// Purges remembered for responses being fetched while they happen (a fetch takes well under
/// a second; more purges than this during one only cost that response its place in the cache).
const RECENT_PURGES: usize = 256;

/// The purge count (read without a lock when a fetch starts), and the latest purges with the
/// count each one made.
#[derive(Default)]
pub(super) struct Recent {
    generation: AtomicU64,
    purges: Mutex<VecDeque<Remembered>>,
}

/// A purge as fetches under way check it: its tags in a set, so that checking costs what the
/// entry's tags do, however many the purge named.
struct Remembered {
    generation: u64,
    site: Option<usize>,
    /// `None`: every entry (of `site`).
    tags: Option<HashSet<Tag>>,
}

impl Remembered {
    fn picks(&self, e: &Entry) -> bool {
        self.site.is_none_or(|s| e.site == s)
            && self
                .tags
                .as_ref()
                .is_none_or(|set| e.tags.iter().any(|t| set.contains(t)))
    }
}

/// The remembered purges, locked: a fetch's check and its store happen under it, so a purge
/// made after the check finds the stored entry in the index.
pub(super) struct RecentGuard<'a> {
    generation: &'a AtomicU64,
    purges: MutexGuard<'a, VecDeque<Remembered>>,
}

impl Recent {
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(super) fn lock(&self) -> RecentGuard<'_> {
        RecentGuard {
            generation: &self.generation,
            purges: self.purges.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn push(&self, selector: &Purge) {
        let mut guard = self.lock();
        let generation = guard.generation.load(Ordering::Acquire) + 1;
        let (site, tags) = match selector {
            Purge::All => (None, None),
            Purge::Site(s) => (Some(*s), None),
            Purge::Tagged { site, tags } => (*site, Some(tags.iter().cloned().collect())),
        };
        if guard.purges.len() == RECENT_PURGES {
            guard.purges.pop_front();
        }
        guard.purges.push_back(Remembered {
            generation,
            site,
            tags,
        });
        guard.generation.store(generation, Ordering::Release);
    }
}

impl RecentGuard<'_> {
    /// Whether a purge made after `generation` picks `entry`.
    pub(super) fn picked_since(&self, generation: u64, entry: &Entry) -> bool {
        if generation == self.generation.load(Ordering::Acquire) {
            return false;
        }
        let forgotten = self
            .purges
            .front()
            .is_none_or(|p| p.generation > generation + 1);
        forgotten
            || self
                .purges
                .iter()
                .rev()
                .take_while(|p| p.generation > generation)
                .any(|p| p.picks(entry))
    }
}

/// The index, shared with the cache's eviction listener. Never held while calling into the
/// cache: the listener runs inside cache calls.
pub(super) type SharedIndex = Arc<Mutex<TagIndex>>;

pub(super) fn lock(index: &SharedIndex) -> MutexGuard<'_, TagIndex> {
    // A panic while holding the lock leaves the counts as they were: keep going.
    index.lock().unwrap_or_else(|e| e.into_inner())
}

impl ResponseCache {
    /// Purge the entries `selector` picks; returns how many were purged: entries in the cache
    /// and not yet expired at the time (and, for a soft purge, not soft-purged already).
    /// Hard: removed. Soft: marked purged, so they are served as past their TTL
    /// (stale-while-revalidate and stale-if-error still apply) until refreshed.
    pub fn purge(&self, selector: &Purge, soft: bool, kind: PurgeKind) -> usize {
        self.purges.push(selector);
        let n = match selector {
            // The iterator skips expired entries and allows removals while it runs.
            Purge::All | Purge::Site(_) => self
                .entries
                .iter()
                .filter(|(key, e)| selector.matches(e) && self.purge_one(key, e, selector, soft))
                .count(),
            Purge::Tagged { tags, .. } => {
                let keys = lock(&self.index).keys(tags);
                keys.iter()
                    .filter(|key| match self.entries.get(*key) {
                        Some(e) => selector.matches(&e) && self.purge_one(key, &e, selector, soft),
                        None => false,
                    })
                    .count()
            }
        };
        let m = metrics::get();
        let mode = if soft { "soft" } else { "hard" };
        m.cache_purges
            .with_label_values(&[kind.label(), mode])
            .inc();
        m.cache_purged_entries
            .with_label_values(&[kind.label()])
            .inc_by(n as u64);
        if kind == PurgeKind::Mutation {
            // One per mutation: not worth a line each in production.
            tracing::debug!(kind = kind.label(), mode, purged = n, "cache purge");
        } else {
            tracing::info!(kind = kind.label(), mode, purged = n, "cache purge");
        }
        n
    }

    /// Hard-purge what a mutation through the edge changed: the entries of `site` carrying any
    /// of `tags`. Counted as kind `mutation`.
    pub fn purge_mutation(&self, site: usize, tags: &[Tag]) -> usize {
        let selector = Purge::Tagged {
            site: Some(site),
            tags: tags.to_vec(),
        };
        self.purge(&selector, false, PurgeKind::Mutation)
    }

    /// Purge the entry `seen` (found under `key` and matching `selector`).
    fn purge_one(&self, key: &CacheKey, seen: &Arc<Entry>, selector: &Purge, soft: bool) -> bool {
        if soft {
            return seen.soft_purge(self.now());
        }
        // Requests that found it before the purge must not serve it when the upstream fails.
        seen.removed.store(true, Ordering::Relaxed);
        // The entry may have been replaced since it was looked at: the new one is live too,
        // and counts if it matches as well.
        self.entries.remove(key).is_some_and(|removed| {
            let picked = Arc::ptr_eq(&removed, seen) || selector.matches(&removed);
            if picked {
                removed.removed.store(true, Ordering::Relaxed);
            }
            picked
        })
    }

    /// (tag, key) pairs in the tag index (after pending removals are processed), for tests.
    #[cfg(test)]
    pub(super) fn indexed_pairs(&self) -> usize {
        self.entries.run_pending_tasks();
        lock(&self.index).pairs()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use pingora::http::ResponseHeader;

    use super::*;
    use crate::cache::{Freshness, NotCached};

    #[test]
    fn every_kind_has_its_metric_label() {
        assert_eq!(
            PurgeKind::EVERY.map(|k| k.label()),
            crate::metrics::PURGE_KINDS
        );
    }

    fn key(n: u8) -> CacheKey {
        let mut k = [0u8; 32];
        k[0] = n;
        k[31] = n;
        k
    }

    fn entry(site: usize, tags: &[&str], ttl: Duration, swr: Duration) -> Entry {
        Entry {
            header: ResponseHeader::build(200, None).unwrap(),
            body: bytes::Bytes::from_static(b"{\"data\":{}}"),
            stored: Instant::now(),
            stored_at: SystemTime::now(),
            ttl,
            swr,
            stale_if_error: Duration::ZERO,
            refresh: None,
            site,
            tags: tags.iter().map(|t| Tag::from(*t)).collect(),
            purged: Default::default(),
            removed: Default::default(),
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_response_fetched_across_a_purge_is_not_stored() {
        let cache = ResponseCache::new(1 << 20);
        let generation = cache.purge_generation();
        // A mutation lands while the fetch is under way.
        cache.purge_mutation(0, &[Tag::from("entity:Post:1")]);
        let stored = cache.insert_unless_purged(key(9), fresh(0, &["entity:Post:1"]), generation);
        assert_eq!(stored, Err(NotCached::Purged));
        assert!(cache.get(&key(9)).is_none());
        let now = cache.purge_generation();
        assert!(cache
            .insert_unless_purged(key(9), fresh(0, &[]), now)
            .is_ok());
        assert!(cache.get(&key(9)).is_some());
    }

    #[test]
    fn only_purges_that_pick_a_response_keep_it_out() {
        let cache = ResponseCache::new(1 << 20);
        let generation = cache.purge_generation();
        // Another entity, another site, another field: none of them is in this response.
        cache.purge_mutation(0, &[Tag::from("entity:Post:2")]);
        cache.purge_mutation(1, &[Tag::from("entity:Post:1")]);
        cache.purge(
            &tagged(Some(0), &["field:listPosts"]),
            true,
            PurgeKind::Field,
        );
        let post1 = || fresh(0, &["field:getPost", "entity:Post:1"]);
        assert_eq!(
            cache.insert_unless_purged(key(1), post1(), generation),
            Ok(())
        );
        // Any purge of the site, or everything, does pick it.
        for selector in [Purge::Site(0), Purge::All] {
            let generation = cache.purge_generation();
            cache.purge(&selector, false, PurgeKind::Site);
            assert_eq!(
                cache.insert_unless_purged(key(2), post1(), generation),
                Err(NotCached::Purged),
                "{selector:?}"
            );
        }
        // More purges than are remembered: what happened first is not known, so not stored.
        let generation = cache.purge_generation();
        for _ in 0..=RECENT_PURGES {
            cache.purge_mutation(0, &[Tag::from("entity:Comment:1")]);
        }
        assert_eq!(
            cache.insert_unless_purged(key(3), post1(), generation),
            Err(NotCached::Purged)
        );
        let generation = cache.purge_generation() - RECENT_PURGES as u64 + 1;
        assert_eq!(
            cache.insert_unless_purged(key(3), post1(), generation),
            Ok(())
        );
    }

    fn fresh(site: usize, tags: &[&str]) -> Entry {
        entry(site, tags, MINUTE, Duration::ZERO)
    }

    fn tagged(site: Option<usize>, tags: &[&str]) -> Purge {
        Purge::Tagged {
            site,
            tags: tags.iter().map(|t| Tag::from(*t)).collect(),
        }
    }

    /// Poll `done` (running the cache's pending tasks) until it holds or 5 s pass.
    fn eventually(cache: &ResponseCache, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            cache.entries.run_pending_tasks();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn insert_indexes_tags_and_a_hard_purge_removes_and_unindexes() {
        let cache = ResponseCache::new(1 << 20);
        cache.insert(key(1), fresh(0, &["op:A", "type:Post"]));
        cache.insert(key(2), fresh(0, &["op:B", "type:Post"]));
        cache.insert(key(3), fresh(0, &[]));
        assert_eq!(cache.indexed_pairs(), 4);

        assert_eq!(
            cache.purge(&tagged(None, &["op:A"]), false, PurgeKind::Operation),
            1
        );
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get(&key(2)).is_some());
        assert_eq!(
            cache.indexed_pairs(),
            2,
            "the removed entry's tags are gone"
        );
        // Any of several tags; each entry counted once.
        let n = cache.purge(
            &tagged(None, &["op:B", "type:Post", "op:A"]),
            false,
            PurgeKind::Type,
        );
        assert_eq!(n, 1);
        assert_eq!(cache.indexed_pairs(), 0);
        assert!(cache.get(&key(3)).is_some(), "untagged entries stay");
        assert_eq!(
            cache.purge(&tagged(None, &["type:Post"]), false, PurgeKind::Type),
            0
        );
    }

    #[test]
    fn a_replaced_entry_keeps_only_the_new_tags() {
        let cache = ResponseCache::new(1 << 20);
        cache.insert(key(1), fresh(0, &["op:A", "type:Post"]));
        cache.insert(key(1), fresh(0, &["type:Post", "type:User"]));
        assert_eq!(cache.indexed_pairs(), 2, "type:Post and type:User");
        assert_eq!(
            cache.purge(&tagged(None, &["op:A"]), false, PurgeKind::Operation),
            0
        );
        assert!(cache.get(&key(1)).is_some());
        // The old entry's removal did not take the shared tag's key out.
        assert_eq!(
            cache.purge(&tagged(None, &["type:Post"]), false, PurgeKind::Type),
            1
        );
        assert_eq!(cache.indexed_pairs(), 0);
    }

    #[test]
    fn concurrent_replacements_leave_the_index_exact() {
        let cache = Arc::new(ResponseCache::new(1 << 20));
        let sets: [&[&str]; 3] = [&["t:a", "t:b"], &["t:b"], &["t:b", "t:c", "t:d"]];
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let k = key((i % 7) as u8);
                        cache.insert(k, fresh(0, sets[(t + i) % 3]));
                        if i % 11 == 0 {
                            cache.remove(&k);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        cache.entries.run_pending_tasks();
        let live: usize = cache.entries.iter().map(|(_, e)| e.tags.len()).sum();
        assert_eq!(cache.indexed_pairs(), live);
        let with_b = cache.entries.iter().count();
        assert_eq!(
            cache.purge(&tagged(None, &["t:b"]), false, PurgeKind::Type),
            with_b
        );
        assert_eq!(cache.indexed_pairs(), 0);
    }

    #[test]
    fn expired_entries_are_not_counted_and_leave_the_index() {
        let cache = ResponseCache::new(1 << 20);
        let short = Duration::from_millis(20);
        cache.insert(key(1), entry(0, &["type:Post"], short, Duration::ZERO));
        cache.insert(key(2), fresh(0, &["type:Post"]));
        eventually(&cache, "entry never expired", || {
            cache.get(&key(1)).is_none()
        });
        // Expired but perhaps not yet removed: not counted, by tag or by site.
        assert_eq!(cache.purge(&Purge::Site(0), true, PurgeKind::Site), 1);
        assert_eq!(
            cache.purge(&tagged(None, &["type:Post"]), false, PurgeKind::Type),
            1
        );
        eventually(&cache, "expired entry still indexed", || {
            cache.indexed_pairs() == 0
        });
    }

    #[test]
    fn evicted_entries_leave_the_index() {
        let cache = ResponseCache::new(8 * 1024);
        for i in 0..100 {
            cache.insert(key(i), fresh(0, &["type:Post", "op:A"]));
        }
        cache.entries.run_pending_tasks();
        let live = cache.entries.entry_count() as usize;
        assert!(live < 100, "some entries were evicted");
        assert_eq!(cache.indexed_pairs(), 2 * live);
        assert_eq!(
            cache.purge(&tagged(None, &["op:A"]), false, PurgeKind::Operation),
            live
        );
    }

    #[test]
    fn purges_by_site_and_everything_count_what_was_there() {
        let cache = ResponseCache::new(1 << 20);
        cache.insert(key(1), fresh(0, &["type:Post"]));
        cache.insert(key(2), fresh(0, &["type:User"]));
        cache.insert(key(3), fresh(1, &["type:Post"]));
        cache.insert(key(4), fresh(1, &[]));
        cache.insert(key(5), fresh(2, &[]));
        assert_eq!(
            cache.purge(&tagged(Some(1), &["type:Post"]), false, PurgeKind::Type),
            1
        );
        assert!(cache.get(&key(1)).is_some(), "another site's entry stays");
        assert_eq!(cache.purge(&Purge::Site(0), false, PurgeKind::Site), 2);
        assert_eq!(cache.purge(&Purge::Site(0), false, PurgeKind::Site), 0);
        assert_eq!(cache.purge(&Purge::All, false, PurgeKind::All), 2);
        assert_eq!(cache.purge(&Purge::All, false, PurgeKind::All), 0);
        assert_eq!(cache.indexed_pairs(), 0);
    }

    #[test]
    fn a_soft_purge_makes_entries_revalidate_and_keeps_them() {
        let cache = ResponseCache::new(1 << 20);
        cache.insert(key(1), entry(0, &["entity:Post:1"], MINUTE, MINUTE));
        cache.insert(key(2), entry(0, &["entity:Post:2"], MINUTE, MINUTE));
        let now = Instant::now();
        assert_eq!(cache.get(&key(1)).unwrap().freshness(now), Freshness::Fresh);

        let one = tagged(Some(0), &["entity:Post:1"]);
        assert_eq!(cache.purge(&one, true, PurgeKind::Entity), 1);
        let e = cache.get(&key(1)).expect("a soft purge keeps the entry");
        assert_eq!(e.freshness(Instant::now()), Freshness::Revalidate);
        assert_eq!(cache.get(&key(2)).unwrap().freshness(now), Freshness::Fresh);
        // Already soft-purged: not counted again.
        assert_eq!(cache.purge(&one, true, PurgeKind::Entity), 0);
        assert_eq!(cache.indexed_pairs(), 2);
        // A hard purge still removes it, and a request that found it before cannot serve it
        // in place of an error.
        assert!(e.usable_on_error());
        assert_eq!(cache.purge(&one, false, PurgeKind::Entity), 1);
        assert!(cache.get(&key(1)).is_none());
        assert!(!e.usable_on_error());
    }

    #[test]
    fn a_soft_purged_entry_is_stale_for_its_swr_from_the_purge_on() {
        let secs = Duration::from_secs;
        let e = entry(0, &[], MINUTE, secs(10));
        let t0 = e.stored;
        assert!(e.soft_purge(t0 + secs(1)));
        assert!(!e.soft_purge(t0 + secs(2)), "once");
        assert_eq!(e.freshness(t0 + secs(1)), Freshness::Revalidate);
        assert_eq!(e.freshness(t0 + secs(10)), Freshness::Revalidate);
        // Ten seconds after the purge, not ten after the TTL would have ended.
        assert_eq!(e.freshness(t0 + secs(12)), Freshness::OnlyIfError);
        // Purged when already past its TTL: nothing changes.
        let late = entry(0, &[], secs(5), secs(10));
        assert!(late.soft_purge(late.stored + secs(7)));
        assert_eq!(
            late.freshness(late.stored + secs(14)),
            Freshness::Revalidate
        );
        assert_eq!(
            late.freshness(late.stored + secs(15)),
            Freshness::OnlyIfError
        );
    }

    #[test]
    fn mutation_purges_are_hard_site_bound_and_counted() {
        let cache = ResponseCache::new(1 << 20);
        cache.insert(key(1), fresh(0, &["entity:Post:1"]));
        cache.insert(key(2), fresh(1, &["entity:Post:1"]));
        let series = |kind: &str| {
            metrics::get()
                .cache_purges
                .with_label_values(&[kind, "hard"])
                .get()
        };
        let before = series("mutation");
        assert_eq!(cache.purge_mutation(0, &[Tag::from("entity:Post:1")]), 1);
        assert!(cache.get(&key(1)).is_none());
        assert!(cache.get(&key(2)).is_some());
        assert_eq!(series("mutation"), before + 1);
    }
}
