//! Raw HTTP/1.1 over TLS against `api.test`: an edge with API-key auth in front of the demo API
//! (which records every request), bytes written as they are on a connection of their own, and
//! what came back: all of it until the edge closes, or the first response. For the attack
//! suites (`tests/smuggling.rs`, `tests/auth_bypass.rs`).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::ws::tls_connect;
use super::{ApiSite, SiteCerts, Upstream};

/// `api.test` with the API key `key`, no introspection, and `/graphql/ws` forwarded as is, in
/// front of the demo API over plain HTTP/1.
pub async fn api_key_site(key: &str) -> (Upstream, ApiSite) {
    let up = Upstream::start(false).await;
    let extra = format!(
        "{}[site.auth]\n[[site.auth.api-key]]\nid = \"web\"\nkey = \"{key}\"\n\
         [site.limits]\nintrospection = false\n\
         [site.websocket]\npaths = [\"/graphql/ws\"]\n",
        up.realtime_toml()
    );
    let site = ApiSite::start_with(&up.url("/graphql"), SiteCerts::new(), &extra, "0s").await;
    (up, site)
}

/// What the edge sent back on one connection, and whether it closed.
pub struct Answer {
    pub text: String,
    pub closed: bool,
}

/// A new TLS connection to the edge for `api.test`, `bytes` written on it in the background
/// (a write the edge cuts short, having answered and closed before reading a body, is not an
/// error): the half to read from, and the writer to abort when done.
async fn open(
    site: &ApiSite,
    bytes: &[u8],
) -> (
    ReadHalf<TlsStream<TcpStream>>,
    tokio::task::JoinHandle<WriteHalf<TlsStream<TcpStream>>>,
) {
    let tls = tls_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    let (rd, mut wr) = tokio::io::split(tls);
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        let _ = wr.flush().await;
        // Kept open: the edge, not the client, decides when the connection ends.
        wr
    });
    (rd, writer)
}

/// Write `bytes` on a new TLS connection to the edge and read until it closes, or until it
/// has been quiet for `quiet` (then `closed` is false).
pub async fn send_raw(site: &ApiSite, bytes: &[u8], quiet: Duration) -> Answer {
    let (mut rd, writer) = open(site, bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(quiet, rd.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    };
    writer.abort();
    Answer {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
    }
}

/// One response as read off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    pub body: Vec<u8>,
}

/// Write `bytes` on a new TLS connection to the edge and read the first response: its head,
/// then its body as framed (none after 1xx, 204 and 304; Content-Length; chunked; else up
/// to the close). `None`: the edge closed without answering. Panics after 10 s.
pub async fn send_one(site: &ApiSite, bytes: &[u8]) -> Option<Response> {
    let (mut rd, writer) = open(site, bytes).await;
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status: u16 = head.get(9..12)?.parse().ok()?;
        let lower = head.to_ascii_lowercase();
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = lower.contains("transfer-encoding: chunked");
        let done = |body: &[u8]| match (status, length) {
            (100..=199 | 204 | 304, _) => true,
            (_, Some(n)) => body.len() >= n,
            _ if chunked => body.ends_with(b"0\r\n\r\n"),
            _ => false,
        };
        let mut body = buf.split_off(head_end);
        while !done(&body) {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Some(Response { status, head, body })
    };
    let response = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer or a close within 10 s");
    writer.abort();
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The status line's code of each response in `text`, in order.
pub fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// The paths (and queries) the upstream received, in order.
pub fn seen(up: &Upstream) -> Vec<String> {
    up.recorder.requests().into_iter().map(|r| r.uri).collect()
}

/// The upstream never saw a request whose URI holds `marker`.
pub fn never_saw(up: &Upstream, marker: &str) {
    let seen = seen(up);
    assert!(
        !seen.iter().any(|u| u.contains(marker)),
        "the upstream saw {seen:?}"
    );
}
