//! Above TLS, for HTTP/1: the connection's stream as a [`HeadGuard`], which times and measures
//! each request head and answers 408 or 431 itself before closing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::limited;
use crate::config::ClientLimits;
use crate::rejection::Rejection;

/// Whether an established connection speaks HTTP/2 (else HTTP/1).
pub fn is_h2(stream: &Stream) -> bool {
    matches!(stream.selected_alpn_proto(), Some(ALPN::H2))
}

/// Shared by an HTTP/1 connection's [`HeadGuard`] and the loop that serves its requests: set
/// before each request, cleared when its head has arrived.
#[derive(Debug, Default)]
pub struct NextHead(AtomicBool);

impl NextHead {
    /// A new request may start: its head is timed from its first byte.
    pub fn expect(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// An HTTP/1 connection's stream, timing and measuring each request head on its way to
/// pingora's parser. A head is over at its first empty line after something else: bytes past
/// it (a body, a pipelined request) are not looked at.
pub struct HeadGuard {
    inner: Stream,
    next: Arc<NextHead>,
    request_header: Duration,
    max: usize,
    /// Runs while a head is on its way.
    timer: Pin<Box<Sleep>>,
    /// Whether `timer` runs (it is set once per connection and reset for each head).
    timing: bool,
    /// Bytes of this head so far, and whether any was not CR or LF.
    seen: usize,
    started: bool,
    /// Line feeds in a row (CRs between them ignored), and lines in this head.
    feeds: u8,
    lines: usize,
    /// The answer being written before the connection closes, and how much of it is out.
    refusal: Option<(&'static [u8], usize, std::io::ErrorKind)>,
}

impl std::fmt::Debug for HeadGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadGuard")
            .field("inner", &self.inner)
            .finish()
    }
}

/// Lines in a request head (request line and headers) pingora parses; more are refused as
/// too large.
const MAX_HEAD_LINES: usize = 256;

/// A whole HTTP/1.1 answer with the edge's error body, closing the connection.
fn answer(rejection: Rejection, reason: &str, message: &str) -> Vec<u8> {
    let status = rejection.status();
    let body = rejection.because(message).body();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

static TIMEOUT_408: LazyLock<Vec<u8>> = LazyLock::new(|| {
    answer(
        Rejection::RequestHeaderTimeout,
        "Request Timeout",
        "the request head did not arrive in time",
    )
});
static TOO_LARGE_431: LazyLock<Vec<u8>> = LazyLock::new(|| {
    answer(
        Rejection::RequestHeaderTooLarge,
        "Request Header Fields Too Large",
        "the request head is larger than the edge accepts",
    )
});

impl HeadGuard {
    /// Guard a newly established connection: its first request is timed from now.
    pub fn new(inner: Stream, limits: &ClientLimits) -> (Self, Arc<NextHead>) {
        let next = Arc::new(NextHead::default());
        next.expect();
        let guard = Self {
            inner,
            next: next.clone(),
            request_header: limits.request_header,
            max: limits.max_request_header,
            timer: Box::pin(tokio::time::sleep(limits.request_header)),
            timing: true,
            seen: 0,
            started: false,
            feeds: 0,
            lines: 0,
            refusal: None,
        };
        (guard, next)
    }

    fn refuse(&mut self, answer: &'static [u8], kind: std::io::ErrorKind, limit: &'static str) {
        limited(limit);
        self.timing = false;
        self.refusal = Some((answer, 0, kind));
    }

    /// Write the refusal, then fail the read so pingora drops the connection.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some((answer, written, kind)) = self.refusal.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while *written < answer.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..])) {
                Ok(0) | Err(_) => break,
                Ok(n) => *written += n,
            }
        }
        let kind = *kind;
        let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
        Poll::Ready(Err(std::io::Error::new(kind, "request head refused")))
    }

    /// Follow the bytes of a head; where its end is, if it is among them.
    fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'\n' if self.started => {
                    self.feeds += 1;
                    self.lines += 1;
                    if self.feeds == 2 {
                        return Some(i + 1);
                    }
                }
                b'\r' | b'\n' => {}
                _ => {
                    self.started = true;
                    self.feeds = 0;
                }
            }
        }
        None
    }
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.refusal.is_some() {
            return this.poll_refusal(cx);
        }
        let awaiting = this.next.0.load(Ordering::Acquire);
        if awaiting && this.timing && this.timer.as_mut().poll(cx).is_ready() {
            if this.seen == 0 {
                // Nothing of a request came: close without an answer.
                limited("request_header_timeout");
                this.timing = false;
                this.next.0.store(false, Ordering::Release);
                return Poll::Ready(Ok(()));
            }
            this.refuse(
                &TIMEOUT_408,
                std::io::ErrorKind::TimedOut,
                "request_header_timeout",
            );
            return this.poll_refusal(cx);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if !awaiting {
            return Poll::Ready(Ok(()));
        }
        let fresh = &buf.filled()[before..];
        if fresh.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if !this.timing {
            let deadline = tokio::time::Instant::now() + this.request_header;
            this.timer.as_mut().reset(deadline);
            this.timing = true;
        }
        let end = this.scan(fresh);
        this.seen += end.unwrap_or(fresh.len());
        // pingora answers more header lines than it parses with a bare 400 of its own.
        if this.seen > this.max || this.lines > MAX_HEAD_LINES {
            this.refuse(
                &TOO_LARGE_431,
                std::io::ErrorKind::InvalidData,
                "request_header_too_large",
            );
            return this.poll_refusal(cx);
        }
        if end.is_some() {
            this.next.0.store(false, Ordering::Release);
            this.timing = false;
            this.seen = 0;
            this.started = false;
            this.feeds = 0;
            this.lines = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadGuard {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadGuard {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadGuard {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadGuard {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadGuard {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_whole_responses() {
        for answer in [&*TIMEOUT_408, &*TOO_LARGE_431] {
            let text = std::str::from_utf8(answer).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let declared: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(declared, body.len(), "{head}");
            let json: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(json["errors"][0]["extensions"]["code"].is_string());
        }
    }
}
