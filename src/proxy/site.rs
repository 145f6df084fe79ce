//! A site as the request path uses it: its configuration, its upstream peers and its metric
//! handles resolved once (label lookups kept off the hot path).

use std::sync::Arc;
use std::time::Duration;

use pingora_prometheus::prometheus::{Counter, Histogram, IntCounter};

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
    pub unanalysed: IntCounter,
    /// `requests[operation][status class]`.
    requests: [[IntCounter; 6]; 4],
    durations: [Histogram; 4],
    bytes_in: Counter,
    bytes_out: Counter,
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
    pub fn new(index: usize, config: Arc<Site>, dns_ttl: Duration) -> Result<Self, UpstreamError> {
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
        let requests =
            OPERATIONS.map(|op| STATUS.map(|st| m.requests.with_label_values(&[name, op, st])));
        let durations = OPERATIONS.map(|op| m.request_seconds.with_label_values(&[name, op]));
        Ok(Self {
            index,
            upstream_seconds: m.upstream_seconds.with_label_values(&[name]),
            unanalysed: m.unanalysed.with_label_values(&[name, "body_size"]),
            requests,
            durations,
            bytes_in: m.request_bytes.with_label_values(&[name]),
            bytes_out: m.response_bytes.with_label_values(&[name]),
            upstream,
            realtime,
            config,
        })
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
