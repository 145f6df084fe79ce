//! `[site.websocket]`: a site's WebSockets (AppSync real-time and forwarded paths) and their
//! limits, as written in the file and validated.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::endpoint::Endpoint;
use super::value::UrlPath;
use super::{KeyPath, Validator};

/// `[site.websocket]` as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WebSocketFile {
    /// Rewrite the `host` inside AppSync real-time auth (handshake and `start` messages) to the
    /// upstream API's host. Default: on when the upstream is an AppSync endpoint.
    pub rewrite_host: Option<bool>,
    /// Browser origins allowed to open WebSockets (`Origin`); empty: any. Requests without
    /// `Origin` (non-browser clients) are not affected.
    pub allowed_origins: Vec<String>,
    /// Other paths whose WebSocket upgrades go to the upstream (same origin, same path), with
    /// the same limits: graphql-transport-ws, MQTT over WebSocket, ...
    pub paths: Vec<UrlPath>,
    /// Open WebSockets for the whole site.
    pub max_connections: usize,
    /// Open WebSockets per client address.
    pub max_connections_per_client: usize,
    /// Largest frame a client may send (close 1009 above).
    pub max_frame: ByteSize,
    /// Largest message a client may send, fragments together (close 1009 above).
    pub max_message: ByteSize,
    /// AppSync real-time: how long a client may take to send `connection_init`.
    #[serde(with = "humantime_serde")]
    pub connection_init_timeout: Duration,
    /// Close a WebSocket when the upstream sent nothing (AppSync sends `ka` every minute) for
    /// this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for WebSocketFile {
    fn default() -> Self {
        Self {
            rewrite_host: None,
            allowed_origins: Vec::new(),
            paths: Vec::new(),
            max_connections: 50_000,
            max_connections_per_client: 100,
            max_frame: ByteSize::kib(256),
            max_message: ByteSize::kib(256),
            connection_init_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// WebSockets of a site (see `WebSocketFile`).
#[derive(Debug, Clone)]
pub struct WebSocketPolicy {
    pub rewrite_host: bool,
    /// Lower-case origins; empty: any.
    pub allowed_origins: Vec<String>,
    pub paths: Vec<String>,
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub max_frame: usize,
    pub max_message: usize,
    pub connection_init_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Validator<'_> {
    pub(super) fn websocket(
        &mut self,
        at: KeyPath,
        w: &WebSocketFile,
        upstream: Option<&Endpoint>,
    ) -> WebSocketPolicy {
        let paths = w
            .paths
            .iter()
            .enumerate()
            .map(|(i, p)| self.url_path(at.key("paths").index(i), p))
            .collect();
        for (key, n) in [
            ("max-connections", w.max_connections),
            ("max-connections-per-client", w.max_connections_per_client),
            ("max-frame", w.max_frame.as_u64() as usize),
            ("max-message", w.max_message.as_u64() as usize),
        ] {
            if n == 0 {
                self.problem(at.key(key), "must be more than 0");
            }
        }
        let appsync = upstream.is_some_and(|u| u.host.contains(".appsync-api."));
        WebSocketPolicy {
            rewrite_host: w.rewrite_host.unwrap_or(appsync),
            allowed_origins: w
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            paths,
            max_connections: w.max_connections,
            max_connections_per_client: w.max_connections_per_client,
            max_frame: w.max_frame.as_u64() as usize,
            max_message: w.max_message.as_u64() as usize,
            connection_init_timeout: w.connection_init_timeout,
            idle_timeout: w.idle_timeout,
        }
    }
}
