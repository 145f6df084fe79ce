//! A site as the request path uses it: its configuration, its upstream peers and its metric
//! handles resolved once (label lookups kept off the hot path).

pub mod websockets;

use std::sync::Arc;
use std::time::Duration;

use pingora_prometheus::prometheus::{Counter, Histogram, IntCounter};

use crate::cache::refresh::Refresher;
use crate::config::Site;
use crate::graphql::OperationKind;
use crate::metrics;
use crate::upstream::{Upstream, UpstreamError};

pub struct SiteRuntime {
    pub index: usize,
    pub config: Arc<Site>,
    pub upstream: Upstream,
    pub realtime: Upstream,
    pub upstream_seconds: Histogram,
    /// Background refreshes for stale-while-revalidate (when the site uses it).
    pub refresher: Option<Arc<Refresher>>,
    /// The auth pre-check, when the site has one.
    pub auth: Option<super::auth::SiteAuth>,
    /// `cache_requests[hit, stale, miss, pass]`.
    cache_requests: [IntCounter; 4],
    /// `requests[operation][status class]`.
    requests: [[IntCounter; 6]; 4],
    durations: [Histogram; 4],
    bytes_in: Counter,
    bytes_out: Counter,
    /// Open WebSockets, for the connection limits.
    pub websockets: Arc<websockets::Connections>,
    pub ws: WebSocketCounters,
}

/// WebSocket counters of a site, resolved once.
#[derive(Debug)]
pub struct WebSocketCounters {
    pub messages_in: IntCounter,
    pub messages_out: IntCounter,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub subscriptions: IntCounter,
}

const OPERATIONS: [&str; 4] = ["query", "mutation", "subscription", "none"];
const STATUS: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn op_index(op: Option<OperationKind>) -> usize {
    match op {
        Some(OperationKind::Query) => 0,
        Some(OperationKind::Mutation) => 1,
        Some(OperationKind::Subscription) => 2,
        None => 3,
    }
}

impl SiteRuntime {
    pub fn new(
        index: usize,
        config: Arc<Site>,
        dns_ttl: Duration,
        global_ca: &[Vec<u8>],
    ) -> Result<Self, UpstreamError> {
        // Pools are per site and endpoint: peers with different trust never share connections.
        let group = (index as u64) << 1;
        let upstream = Upstream::new(
            &config.upstream,
            &config,
            group,
            dns_ttl,
            config.upstream_h2,
        )?;
        let realtime = Upstream::new(&config.realtime, &config, group | 1, dns_ttl, false)?;
        let m = metrics::get();
        let name = config.name.as_str();
        let uses_swr = !config.cache.default_swr.is_zero()
            || config.cache.rules.iter().any(|r| !r.swr.is_zero());
        // One client for what the edge fetches itself (refreshes, issuers' keys, the
        // authorizer), trusting what the proxy does.
        let auth_needs_client = config
            .auth
            .as_ref()
            .is_some_and(super::auth::SiteAuth::needs_client);
        let side_client = if uses_swr || auth_needs_client {
            let ca = match &config.upstream_ca_file {
                Some(p) => crate::upstream::read_ca_file(p)?,
                None => global_ca.to_vec(),
            };
            match crate::upstream::side_client(&config, &ca) {
                Ok(c) => Some(c),
                Err(e) => {
                    // No refreshes; tokens and authorizer verdicts fail closed.
                    tracing::error!(site = %config.name, error = %e, "cannot build the client for refreshes, token issuers and the authorizer");
                    None
                }
            }
        } else {
            None
        };
        let refresher = side_client
            .clone()
            .filter(|_| uses_swr)
            .map(|c| Arc::new(Refresher::new(&config, c)));
        let auth = config.auth.as_ref().map(|a| {
            let client = side_client.filter(|_| auth_needs_client);
            super::auth::SiteAuth::new(&config, a, client)
        });
        let cache_requests = ["hit", "stale", "miss", "pass"]
            .map(|st| m.cache_requests.with_label_values(&[name, st]));
        let requests =
            OPERATIONS.map(|op| STATUS.map(|st| m.requests.with_label_values(&[name, op, st])));
        let durations = OPERATIONS.map(|op| m.request_seconds.with_label_values(&[name, op]));
        // Series with a small, known label set start at 0, so rates and dashboards see them
        // before the first event.
        for kind in crate::upstream::FailureKind::ALL {
            m.upstream_errors.with_label_values(&[name, kind.label()]);
        }
        for result in ["stored", "refused", "failed"] {
            m.cache_refreshes.with_label_values(&[name, result]);
        }
        for outcome in ["upgraded", "refused", "failed"] {
            m.websocket_connections.with_label_values(&[name, outcome]);
        }
        let ws = WebSocketCounters {
            messages_in: m.websocket_messages.with_label_values(&[name, "in"]),
            messages_out: m.websocket_messages.with_label_values(&[name, "out"]),
            bytes_in: m.websocket_bytes.with_label_values(&[name, "in"]),
            bytes_out: m.websocket_bytes.with_label_values(&[name, "out"]),
            subscriptions: m.websocket_subscriptions.with_label_values(&[name]),
        };
        Ok(Self {
            index,
            upstream_seconds: m.upstream_seconds.with_label_values(&[name]),
            refresher,
            auth,
            cache_requests,
            requests,
            durations,
            bytes_in: m.request_bytes.with_label_values(&[name]),
            bytes_out: m.response_bytes.with_label_values(&[name]),
            upstream,
            realtime,
            config,
            websockets: Arc::default(),
            ws,
        })
    }

    /// The counter of one cache outcome ("hit", "stale", "miss", "pass").
    pub fn cache_requests(&self, status: &str) -> &IntCounter {
        let i = match status {
            "hit" => 0,
            "stale" => 1,
            "miss" => 2,
            _ => 3,
        };
        &self.cache_requests[i]
    }

    /// Count one answered request.
    pub fn observe(
        &self,
        op: Option<OperationKind>,
        status: u16,
        seconds: f64,
        bytes: (usize, usize),
    ) {
        let class = match status {
            100..=599 => (status / 100 - 1) as usize,
            _ => 5,
        };
        let o = op_index(op);
        self.requests[o][class].inc();
        self.durations[o].observe(seconds);
        self.bytes_in.inc_by(bytes.0 as f64);
        self.bytes_out.inc_by(bytes.1 as f64);
    }
}
