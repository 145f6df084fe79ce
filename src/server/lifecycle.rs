//! Where the process is in its life: serving, or draining (a stop or an upgrade hand-over has
//! begun). A leaf: the proxy, the admin API and the signal handler all read or set it here.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set when a stop or an upgrade begins. From then on HTTP/1.1 responses close their
/// connection, so busy keep-alive clients reconnect (to the new process, during an upgrade)
/// before pingora closes the idle connections of this one.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Whether this process is stopping or handing over to a new one.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// From now on this process is stopping or handing over.
pub fn begin_draining() {
    DRAINING.store(true, Ordering::Relaxed);
}
