//! A site's open WebSockets, counted in all and by client address, within its
//! `[site.websocket]` caps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::WebSocketPolicy;
use crate::rejection::{EdgeError, Rejection};

/// The open WebSockets of a site, in all and by client address.
#[derive(Debug, Default)]
pub struct Connections {
    by_client: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a WebSocket was refused at the handshake (the `reason` label).
pub type Refusal = (&'static str, EdgeError);

impl Connections {
    /// Count one more connection from `client`, within the site's limits.
    pub fn open(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        policy: &WebSocketPolicy,
    ) -> Result<ConnectionGuard, Refusal> {
        let mut g = self.by_client.lock().expect("connections lock");
        if g.0 >= policy.max_connections {
            return Err((
                "site_limit",
                Rejection::TooManyConnections
                    .because("this API has as many WebSocket connections open as it allows"),
            ));
        }
        if let Some(ip) = client {
            let n = g.1.entry(ip).or_insert(0);
            if *n >= policy.max_connections_per_client {
                return Err((
                    "client_limit",
                    Rejection::TooManyConnections
                        .because("too many WebSocket connections from this address"),
                ));
            }
            *n += 1;
        }
        g.0 += 1;
        Ok(ConnectionGuard {
            connections: self.clone(),
            client,
        })
    }

    pub fn open_count(&self) -> usize {
        self.by_client.lock().expect("connections lock").0
    }
}

/// One counted connection; uncounted when dropped (with the request context).
#[derive(Debug)]
pub struct ConnectionGuard {
    connections: Arc<Connections>,
    client: Option<IpAddr>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut g = self.connections.by_client.lock().expect("connections lock");
        g.0 -= 1;
        if let Some(ip) = self.client {
            if let Some(n) = g.1.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    g.1.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_limited_per_site_and_client() {
        let policy = WebSocketPolicy {
            rewrite_host: false,
            allowed_origins: vec![],
            paths: vec![],
            max_connections: 3,
            max_connections_per_client: 2,
            max_frame: 1024,
            max_message: 1024,
            connection_init_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(1),
        };
        let c = Arc::new(Connections::default());
        let (a, b) = (
            Some("10.0.0.1".parse().unwrap()),
            Some("10.0.0.2".parse().unwrap()),
        );
        let a1 = c.open(a, &policy).unwrap();
        let _a2 = c.open(a, &policy).unwrap();
        assert_eq!(c.open(a, &policy).unwrap_err().0, "client_limit");
        let _b1 = c.open(b, &policy).unwrap();
        assert_eq!(c.open(b, &policy).unwrap_err().0, "site_limit");
        drop(a1);
        assert_eq!(c.open_count(), 2);
        let _a3 = c.open(a, &policy).unwrap();
    }
}
