//! Below TLS: each accepted socket behind a [`Watched`] one (pingora's virtual socket), which
//! holds the client's slot and cuts the TLS handshake at its deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::{limited, Slot, HANDSHAKES};

/// Stands in for an accepted stream while it moves behind a [`Watched`] one.
#[derive(Debug)]
pub(super) struct Detached;

impl VirtualSocket for Detached {
    fn set_socket_option(&self, _: VirtualSockOpt) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Detached {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Detached {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(0))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// An accepted socket, as pingora's TLS layer sees it.
pub(super) struct Watched {
    pub(super) tcp: L4Stream,
    /// Until the handshake is done.
    pub(super) handshake: Option<Pin<Box<Sleep>>>,
    pub(super) done: Arc<AtomicBool>,
    pub(super) task: Option<tokio::task::Id>,
    pub(super) _slot: Option<Slot>,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").field("tcp", &self.tcp).finish()
    }
}

impl Watched {
    /// Whether the handshake ran out of time.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.handshake.as_mut() else {
            return false;
        };
        if self.done.load(Ordering::Acquire) {
            self.handshake = None;
            return false;
        }
        if deadline.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.handshake = None;
        limited("tls_handshake_timeout");
        true
    }
}

fn handshake_timeout() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake deadline")
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let (Some(id), false) = (self.task, self.done.load(Ordering::Acquire)) {
            HANDSHAKES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }
}

impl VirtualSocket for Watched {
    /// The listener set its options on the socket before it was watched.
    fn set_socket_option(&self, _: VirtualSockOpt) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(handshake_timeout()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(handshake_timeout()));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(handshake_timeout()));
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
