//! Every metric graphfront exports, registered in one place. Names are public API:
//! `graphfront_<subsystem>_<thing>_{total,seconds,bytes}`, labels bounded (site, kind, reason).

use pingora_prometheus::prometheus::{
    self, register_counter_vec, register_histogram_vec, register_int_counter,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec, CounterVec, Encoder,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

/// Latency buckets in seconds, from 0.5 ms to 30 s.
const LATENCY: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The `kind` label values of purges (the cache's `PurgeKind` labels: a test there keeps the
/// two lists equal, and metrics stays a leaf).
pub const PURGE_KINDS: [&str; 7] = [
    "all",
    "site",
    "operation",
    "field",
    "type",
    "entity",
    "mutation",
];

/// Every `limit` of `graphfront_client_limits_total` (its series start at 0).
const CLIENT_LIMITS: [&str; 5] = [
    "connections_per_client",
    "tls_handshake_timeout",
    "request_header_timeout",
    "request_header_too_large",
    "request_body_timeout",
];

/// Every `reason` of `graphfront_tls_handshake_failures_total` (its series start at 0).
pub const HANDSHAKE_FAILURE_REASONS: [&str; 8] = [
    "unknown_sni",
    "no_sni",
    "no_certificate",
    "timeout",
    "client_closed",
    "incompatible",
    "client_alert",
    "other",
];

#[derive(Debug)]
pub struct Metrics {
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub upstream_seconds: HistogramVec,
    pub request_bytes: CounterVec,
    pub response_bytes: CounterVec,
    pub in_flight: IntGauge,
    pub connections_open: IntGauge,
    pub tls_handshakes: IntCounter,
    pub tls_handshake_failures: IntCounterVec,
    pub cert_expiry: IntGaugeVec,
    pub cert_expires_in: IntGaugeVec,
    pub acme_orders: IntCounterVec,
    pub acme_challenge_failures: IntCounterVec,
    pub cert_reloads: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub rejections: IntCounterVec,
    pub cache_requests: IntCounterVec,
    pub cache_passes: IntCounterVec,
    pub cache_entries: IntGauge,
    pub cache_bytes: IntGauge,
    pub cache_evictions: IntCounter,
    pub cache_coalesced: IntCounter,
    pub cache_refreshes: IntCounterVec,
    pub cache_purges: IntCounterVec,
    pub cache_purged_entries: IntCounterVec,
    pub auth_decisions: IntCounterVec,
    pub jwks_fetches: IntCounterVec,
    pub authorizer_requests: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub websocket_open: IntGauge,
    pub websocket_connections: IntCounterVec,
    pub websocket_messages: IntCounterVec,
    pub websocket_bytes: IntCounterVec,
    pub websocket_subscriptions: IntCounterVec,
    pub websocket_rejections: IntCounterVec,
    pub apq_requests: IntCounterVec,
    pub client_limits: IntCounterVec,
}

static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(Metrics::register);

/// The process-wide metrics (registered on first use).
pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn register() -> Self {
        let m = || -> prometheus::Result<Self> {
            Ok(Self {
                requests: register_int_counter_vec!(
                    "graphfront_http_requests_total",
                    "Requests answered, by site, GraphQL operation type (query, mutation, subscription, none) and status class (2xx, 4xx, ...).",
                    &["site", "operation", "status"]
                )?,
                request_seconds: register_histogram_vec!(
                    "graphfront_http_request_duration_seconds",
                    "Time from the request header to the end of the response, by site and operation type.",
                    &["site", "operation"],
                    LATENCY.to_vec()
                )?,
                upstream_seconds: register_histogram_vec!(
                    "graphfront_upstream_response_duration_seconds",
                    "Time from sending the request upstream to receiving the upstream's response header, by site.",
                    &["site"],
                    LATENCY.to_vec()
                )?,
                request_bytes: register_counter_vec!(
                    "graphfront_http_request_body_bytes_total",
                    "Request body bytes received from clients, by site.",
                    &["site"]
                )?,
                response_bytes: register_counter_vec!(
                    "graphfront_http_response_body_bytes_total",
                    "Response body bytes sent to clients, by site.",
                    &["site"]
                )?,
                in_flight: register_int_gauge!(
                    "graphfront_http_requests_in_flight",
                    "Requests being processed right now."
                )?,
                connections_open: register_int_gauge!(
                    "graphfront_tls_connections_open",
                    "Client TLS connections currently open (after a completed handshake)."
                )?,
                tls_handshakes: register_int_counter!(
                    "graphfront_tls_handshakes_total",
                    "Completed client TLS handshakes."
                )?,
                tls_handshake_failures: register_int_counter_vec!(
                    "graphfront_tls_handshake_failures_total",
                    "Client TLS handshakes refused, by reason (unknown_sni, no_sni, no_certificate).",
                    &["reason"]
                )?,
                cert_expiry: register_int_gauge_vec!(
                    "graphfront_tls_certificate_expiry_timestamp_seconds",
                    "Expiry (Unix time) of the certificate each site serves.",
                    &["site"]
                )?,
                cert_expires_in: register_int_gauge_vec!(
                    "graphfront_tls_certificate_expires_in_seconds",
                    "Seconds until the certificate each site serves expires (as of the scrape; negative once expired).",
                    &["site"]
                )?,
                acme_orders: register_int_counter_vec!(
                    "graphfront_acme_orders_total",
                    "ACME certificate orders, by site and outcome (issued, failed).",
                    &["site", "outcome"]
                )?,
                acme_challenge_failures: register_int_counter_vec!(
                    "graphfront_acme_challenge_failures_total",
                    "ACME challenges that did not validate, by type (http-01, tls-alpn-01, dns-01).",
                    &["type"]
                )?,
                cert_reloads: register_int_counter_vec!(
                    "graphfront_tls_certificate_loads_total",
                    "Certificate loads from files or the admin API, by site and result (ok, error).",
                    &["site", "result"]
                )?,
                upstream_errors: register_int_counter_vec!(
                    "graphfront_upstream_errors_total",
                    "Failed upstream exchanges, by site and kind (dns, connect, tls, timeout, closed, other).",
                    &["site", "kind"]
                )?,
                rejections: register_int_counter_vec!(
                    "graphfront_http_rejections_total",
                    "Requests answered at the edge with an error, by site and stable error code.",
                    &["site", "code"]
                )?,
                cache_requests: register_int_counter_vec!(
                    "graphfront_cache_requests_total",
                    "Requests by cache outcome (hit, stale, miss, pass), by site.",
                    &["site", "status"]
                )?,
                cache_passes: register_int_counter_vec!(
                    "graphfront_cache_passes_total",
                    "Responses not served from or stored in the cache, by site and reason (mutation, no-rule, errors, private, body-size, ...).",
                    &["site", "reason"]
                )?,
                cache_entries: register_int_gauge!(
                    "graphfront_cache_entries",
                    "Responses held in the cache."
                )?,
                cache_bytes: register_int_gauge!(
                    "graphfront_cache_size_bytes",
                    "Memory the cached responses account for (keys, headers, bodies)."
                )?,
                cache_evictions: register_int_counter!(
                    "graphfront_cache_evictions_total",
                    "Responses evicted to stay within the cache's size."
                )?,
                cache_coalesced: register_int_counter!(
                    "graphfront_cache_coalesced_waits_total",
                    "Misses that waited for a concurrent request for the same key instead of going upstream."
                )?,
                cache_refreshes: register_int_counter_vec!(
                    "graphfront_cache_refreshes_total",
                    "Background refreshes of stale entries, by site and result (stored, refused, failed).",
                    &["site", "result"]
                )?,
                cache_purges: register_int_counter_vec!(
                    "graphfront_cache_purges_total",
                    "Cache purges, by kind (all, site, operation, field, type, entity: the admin API; mutation: invalidation by a mutation) and mode (hard: removed, soft: served stale until refreshed).",
                    &["kind", "mode"]
                )?,
                cache_purged_entries: register_int_counter_vec!(
                    "graphfront_cache_purged_entries_total",
                    "Cached responses purged, by kind of purge (all, site, operation, field, type, entity, mutation).",
                    &["kind"]
                )?,
                auth_decisions: register_int_counter_vec!(
                    "graphfront_auth_decisions_total",
                    "Auth decisions at the edge, by site, mode, outcome (accepted, rejected) and reason (a stable code).",
                    &["site", "mode", "outcome", "reason"]
                )?,
                jwks_fetches: register_int_counter_vec!(
                    "graphfront_auth_jwks_fetches_total",
                    "Fetches of token issuers' signing keys (JWKS), by site, mode (oidc, cognito) and result (ok, error).",
                    &["site", "mode", "result"]
                )?,
                authorizer_requests: register_int_counter_vec!(
                    "graphfront_auth_authorizer_requests_total",
                    "Calls to a site's HTTP authorizer (verdicts not reused from the cache), by site and result (authorized, denied, error).",
                    &["site", "result"]
                )?,
                build_info: register_int_gauge_vec!(
                    "graphfront_build_info",
                    "Always 1: the version and git commit of the running binary.",
                    &["version", "commit"]
                )?,
                websocket_open: register_int_gauge!(
                    "graphfront_websocket_connections_open",
                    "WebSocket connections (AppSync real-time, graphql-ws) currently proxied."
                )?,
                websocket_connections: register_int_counter_vec!(
                    "graphfront_websocket_connections_total",
                    "WebSocket upgrade requests, by site and outcome (upgraded, refused: the upstream answered without switching protocols, failed: no upstream answer).",
                    &["site", "outcome"]
                )?,
                websocket_messages: register_int_counter_vec!(
                    "graphfront_websocket_messages_total",
                    "WebSocket data messages proxied, by site and direction (in: from clients, out: to clients).",
                    &["site", "direction"]
                )?,
                websocket_bytes: register_int_counter_vec!(
                    "graphfront_websocket_bytes_total",
                    "WebSocket bytes proxied (frames included), by site and direction (in, out).",
                    &["site", "direction"]
                )?,
                websocket_subscriptions: register_int_counter_vec!(
                    "graphfront_websocket_subscriptions_started_total",
                    "AppSync real-time `start` messages forwarded, by site.",
                    &["site"]
                )?,
                websocket_rejections: register_int_counter_vec!(
                    "graphfront_websocket_rejections_total",
                    "WebSockets refused or closed by the edge, by site and reason (origin, site_limit, client_limit, auth, start_auth, bad_header, too_big, protocol, init_timeout).",
                    &["site", "reason"]
                )?,
                apq_requests: register_int_counter_vec!(
                    "graphfront_apq_requests_total",
                    "Requests carrying an automatic persisted query hash, by site and outcome (hit: expanded from the store, miss: answered PersistedQueryNotFound, registered: the query was verified and stored, mismatch: the query did not match its hash).",
                    &["site", "outcome"]
                )?,
                client_limits: register_int_counter_vec!(
                    "graphfront_client_limits_total",
                    "Connections and requests the edge cut or refused under a client limit, by limit (connections_per_client, tls_handshake_timeout, request_header_timeout, request_header_too_large, request_body_timeout).",
                    &["limit"]
                )?,
            })
        };
        let metrics = m().expect("metric names are unique and registered once");
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("GRAPHFRONT_COMMIT")])
            .set(1);
        for reason in HANDSHAKE_FAILURE_REASONS {
            metrics.tls_handshake_failures.with_label_values(&[reason]);
        }
        for limit in CLIENT_LIMITS {
            metrics.client_limits.with_label_values(&[limit]);
        }
        for kind in ["http-01", "tls-alpn-01", "dns-01"] {
            metrics.acme_challenge_failures.with_label_values(&[kind]);
        }
        for kind in PURGE_KINDS {
            metrics.cache_purged_entries.with_label_values(&[kind]);
            for mode in ["hard", "soft"] {
                metrics.cache_purges.with_label_values(&[kind, mode]);
            }
        }
        metrics
    }
}

/// One request in `graphfront_http_requests_in_flight`, for as long as this lives: counted
/// down exactly once, whichever way the request ends (pingora also calls `logging` for
/// requests that failed before they were counted).
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        get().in_flight.inc();
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        get().in_flight.dec();
    }
}

/// The Prometheus text exposition of every registered metric.
pub fn render() -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * 1024);
    let families = prometheus::gather();
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = prometheus::TextEncoder::new().encode(&families, &mut out);
    out
}
