//! What the https listener holds clients to, around pingora's HTTP: a cap on the connections
//! one address may hold, a total deadline for the TLS handshake, and, for HTTP/1, a total
//! deadline and a size cap for each request head. pingora's own timers restart on every read,
//! so a client trickling one byte at a time would otherwise hold a connection for ever.
//!
//! Below TLS, each accepted socket is put behind a [`Watched`] socket (pingora's virtual
//! socket): it holds the client's slot and cuts the handshake at its deadline. Above TLS, an
//! HTTP/1 connection's stream is a [`HeadGuard`], which times and measures each request head
//! and answers 408 or 431 itself before closing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::VirtualSocketStream;
use pingora::protocols::{GetSocketDigest, SocketDigest};

use crate::config::ClientLimits;
use crate::metrics;

mod head;
mod watched;

pub use head::{is_h2, HeadGuard, NextHead};
use watched::{Detached, Watched};

/// Accepted connections by client address, and the handshakes still under way.
pub struct Clients {
    limits: ClientLimits,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// TLS-ALPN-01 validations, answered before the handshake (sites with ACME).
    alpn: Option<crate::acme::AlpnChallengeHook>,
}

/// Handshakes not yet complete, by the task that runs them: pingora accepts, shakes hands and
/// serves a connection in one task, so the end of the handshake (`established`) finds its
/// socket here.
static HANDSHAKES: LazyLock<Mutex<HashMap<tokio::task::Id, Arc<AtomicBool>>>> =
    LazyLock::new(Default::default);

impl Clients {
    pub fn new(limits: ClientLimits, alpn: Option<crate::acme::AlpnChallengeHook>) -> Self {
        Self {
            limits,
            open: Mutex::new(HashMap::new()),
            alpn,
        }
    }

    /// A slot for one more connection from `ip`, or none when it holds its maximum.
    fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if self.limits.max_connections_per_client != 0
            && *n >= self.limits.max_connections_per_client
        {
            return None;
        }
        *n += 1;
        Some(Slot {
            clients: self.clone(),
            ip,
        })
    }
}

/// One connection of a client address, given back when the connection closes.
#[derive(Debug)]
struct Slot {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").finish_non_exhaustive()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Count a connection the edge closed or refused because of a client limit.
pub(super) fn limited(limit: &'static str) {
    metrics::get()
        .client_limits
        .with_label_values(&[limit])
        .inc();
}

fn refused(why: &'static str) -> Box<pingora::Error> {
    pingora::Error::explain(pingora::ErrorType::AcceptError, why)
}

/// Runs on each accepted connection before TLS: the client's slot, the watched socket, then
/// an ACME validation if one is open.
pub struct PreTls(pub Arc<Clients>);

#[async_trait]
impl PreTlsProcess for PreTls {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let clients = &self.0;
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(SocketAddr::as_inet).map(|a| a.ip()));
        let slot = match ip {
            Some(ip) => match clients.claim(ip) {
                Some(slot) => Some(slot),
                None => {
                    limited("connections_per_client");
                    return Err(refused("too many connections from this client"));
                }
            },
            None => None,
        };
        // The accepted stream moves behind a watched one, which keeps its socket digest.
        let tcp = std::mem::replace(
            stream,
            L4Stream::from(VirtualSocketStream::new(Box::new(Detached))),
        );
        let raw = tcp.as_raw_fd();
        let done = Arc::new(AtomicBool::new(false));
        let task = tokio::task::try_id();
        if let Some(id) = task {
            HANDSHAKES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, done.clone());
        }
        let watched = Watched {
            tcp,
            handshake: Some(Box::pin(tokio::time::sleep(clients.limits.tls_handshake))),
            done,
            task,
            _slot: slot,
        };
        let mut replaced = L4Stream::from(VirtualSocketStream::new(Box::new(watched)));
        replaced.set_socket_digest(SocketDigest::from_raw_fd(raw));
        *stream = replaced;
        match &clients.alpn {
            Some(alpn) => alpn.process(stream).await,
            None => Ok(()),
        }
    }
}

/// Called at the end of a TLS handshake, in the task that ran it: its deadline is lifted.
pub fn established() {
    let Some(id) = tokio::task::try_id() else {
        return;
    };
    let done = HANDSHAKES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    if let Some(done) = done {
        done.store(true, Ordering::Release);
    }
}
