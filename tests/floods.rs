//! Floods and bombs against the https listener: HTTP/2 rapid reset, CONTINUATION, SETTINGS and
//! PING floods (raw frames where the `h2` client cannot send them), HTTP/1 heads with 10,000
//! headers or a 1 MiB line, gzip bombs, deeply nested JSON, alias and fragment bombs. Each case
//! asserts what a user relies on: a normal request on another connection is served during and
//! after the attack, the upstream saw only the requests the legitimate clients sent, and the
//! attacking connection is refused, closed, or held to what it sent. Speed and memory are
//! measured by `benches/slow-clients.sh`, not asserted here.

mod common;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::ws::tls_connector_alpn;
use common::{ApiSite, SiteCerts, Upstream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

const QUERY: &str = r#"{"query":"{ hello }"}"#;

/// `api.test` in front of the demo API (plain HTTP/1, recording every request), with the
/// edge's defaults: the limits under test are the ones users get.
async fn setup() -> (Upstream, ApiSite) {
    let up = Upstream::start(false).await;
    let extra = format!("upstream-ca-file = \"{}\"\n", up.ca_file().display());
    let site =
        ApiSite::start_with_top(&up.url("/graphql"), SiteCerts::new(), &extra, "0s", "").await;
    (up, site)
}

/// A normal request on its own connection is served.
async fn probe(site: &ApiSite) {
    let resp = site
        .client
        .post(site.url())
        .header("content-type", "application/json")
        .body(QUERY)
        .send()
        .await
        .expect("the probe got no answer");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "probe: {body}");
    assert!(body.contains("\"hello\""), "probe: {body}");
}

/// What the upstream received: the probes' requests and nothing else (attack requests carry
/// `mark=` in their query string; probes do not).
fn upstream_saw_only_probes(up: &Upstream, probes: usize) {
    let seen: Vec<String> = up.recorder.requests().into_iter().map(|r| r.uri).collect();
    let marked = seen.iter().filter(|u| u.contains("mark=")).count();
    assert_eq!(marked, 0, "attack requests reached the upstream: {seen:?}");
    assert_eq!(seen.len(), probes, "the upstream saw {seen:?}");
}

/// How many requests marked `mark` (a prefix) the upstream received.
fn marked(up: &Upstream, mark: &str) -> usize {
    let needle = format!("mark={mark}");
    up.recorder
        .requests()
        .iter()
        .filter(|r| r.uri.contains(&needle))
        .count()
}

/// The status and GraphQL error code of an answer.
async fn status_and_code(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let code = body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string();
    (status, code, text)
}

/// POST `body` to the site's GraphQL URL (marked, so the upstream check can tell it apart).
async fn post_body(
    site: &ApiSite,
    mark: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String, String) {
    let mut req = site
        .client
        .post(format!("{}?mark={mark}", site.url()))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body).send().await.expect("no answer");
    status_and_code(resp).await
}

// ---------------------------------------------------------------------------------------------
// HTTP/1 over TLS, raw.

/// Write `bytes` on a new TLS connection and read until the edge closes or is quiet for `quiet`:
/// what came back, and whether it closed. The write runs beside the read, and a write the edge
/// cuts short (it answered and closed) is not an error.
async fn raw_h1(site: &ApiSite, bytes: Vec<u8>, quiet: Duration) -> (String, bool) {
    let answer = common::raw::send_raw(site, &bytes, quiet).await;
    (answer.text, answer.closed)
}

fn h1_post(mark: &str, extra_headers: &str) -> String {
    format!(
        "POST /graphql?mark={mark} HTTP/1.1\r\nHost: api.test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra_headers}\r\n{QUERY}",
        QUERY.len()
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 frames, raw: what the `h2` client refuses to send.

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (the prefix's other bits zero).
fn hpack_int(out: &mut Vec<u8>, mut v: usize, n: u32) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(v as u8);
        return;
    }
    out.push(max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block of literals without indexing, names and values as they are (no Huffman).
fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0x00);
        hpack_int(&mut out, name.len(), 7);
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, value.len(), 7);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The header block of `POST /graphql?mark=<mark>` carrying [`QUERY`].
fn h2_post_block(mark: &str) -> Vec<u8> {
    let path = format!("/graphql?mark={mark}");
    let len = QUERY.len().to_string();
    hpack(&[
        (":method", "POST"),
        (":scheme", "https"),
        (":path", &path),
        (":authority", "api.test"),
        ("content-type", "application/json"),
        ("content-length", &len),
    ])
}

/// One frame as the edge sent it.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The read side of a raw HTTP/2 connection.
struct H2Reader {
    rd: ReadHalf<Tls>,
    buf: Vec<u8>,
}

impl H2Reader {
    /// The next frame, or how the connection ended (EOF, an error: reset, TLS alert), or
    /// `Quiet` when nothing arrived for `quiet`.
    async fn next(&mut self, quiet: Duration) -> Result<Frame, Ended> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap())
                            & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Ok(f);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout(quiet, self.rd.read(&mut chunk)).await {
                Err(_) => return Err(Ended::Quiet),
                Ok(Ok(0)) => return Err(Ended::Eof),
                Ok(Err(e)) => return Err(Ended::Error(e.kind())),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Read frames until the connection ends or is quiet for `quiet`.
    async fn drain(&mut self, quiet: Duration) -> Seen {
        let mut seen = Seen::default();
        loop {
            match self.next(quiet).await {
                Ok(f) => seen.add(f),
                Err(e) => {
                    seen.end = Some(e);
                    return seen;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Still open: nothing came for a while.
    Quiet,
    Eof,
    Error(std::io::ErrorKind),
}

/// What the edge sent on a raw connection.
#[derive(Debug, Default)]
struct Seen {
    /// Frames by type (acknowledgements of SETTINGS and PING counted apart, as type | 0x80).
    frames: HashMap<u8, usize>,
    /// The error code of the GOAWAY, if one came.
    goaway: Option<u32>,
    end: Option<Ended>,
}

impl Seen {
    fn add(&mut self, f: Frame) {
        let key = if matches!(f.kind, SETTINGS | PING) && f.flags & ACK != 0 {
            f.kind | 0x80
        } else {
            f.kind
        };
        *self.frames.entry(key).or_default() += 1;
        if f.kind == GOAWAY && f.payload.len() >= 8 {
            self.goaway = Some(u32::from_be_bytes(f.payload[4..8].try_into().unwrap()));
        }
    }

    fn count(&self, key: u8) -> usize {
        self.frames.get(&key).copied().unwrap_or(0)
    }

    /// The connection ended: a GOAWAY, or the edge closed it.
    fn ended(&self) -> bool {
        self.goaway.is_some() || matches!(self.end, Some(Ended::Eof | Ended::Error(_)))
    }
}

/// A raw HTTP/2 connection to the edge (ALPN h2), past the preface and the exchange of
/// SETTINGS: the edge's SETTINGS acknowledged, ours (empty) sent.
async fn h2_raw(site: &ApiSite) -> (H2Reader, WriteHalf<Tls>) {
    let tcp = tokio::net::TcpStream::connect(site.edge.https)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("api.test").unwrap();
    let tls = tls_connector_alpn(&site.certs.ca_pem(), &[b"h2"])
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (rd, mut wr) = tokio::io::split(tls);
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    wr.write_all(&start).await.unwrap();
    let mut reader = H2Reader {
        rd,
        buf: Vec::new(),
    };
    loop {
        let f = reader
            .next(Duration::from_secs(5))
            .await
            .expect("the edge's SETTINGS");
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            break;
        }
    }
    wr.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    (reader, wr)
}

/// Write `bytes` beside the reader; whether the edge took them all (false: it closed first). A
/// write the edge stops reading (backpressure) does not end: time it out.
fn write_flood(mut wr: WriteHalf<Tls>, bytes: Vec<u8>) -> tokio::task::JoinHandle<WrittenFlood> {
    tokio::spawn(async move {
        let ok = wr.write_all(&bytes).await.is_ok() && wr.flush().await.is_ok();
        WrittenFlood { wr, ok }
    })
}

struct WrittenFlood {
    wr: WriteHalf<Tls>,
    ok: bool,
}

/// A `{ hello }` POST on stream `id` of a raw connection, and its answer's body.
async fn h2_raw_request(
    reader: &mut H2Reader,
    wr: &mut WriteHalf<Tls>,
    id: u32,
    mark: &str,
) -> (Vec<u8>, String) {
    let mut req = frame(HEADERS, END_HEADERS, id, &h2_post_block(mark));
    req.extend(frame(DATA, END_STREAM, id, QUERY.as_bytes()));
    wr.write_all(&req).await.unwrap();
    let mut head = Vec::new();
    let mut body = Vec::new();
    loop {
        let f = reader
            .next(Duration::from_secs(10))
            .await
            .expect("an answer on the flooded connection");
        if f.stream != id {
            continue;
        }
        match f.kind {
            HEADERS => head = f.payload,
            DATA => body.extend_from_slice(&f.payload),
            _ => {}
        }
        if f.flags & END_STREAM != 0 {
            break;
        }
    }
    (head, String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 floods.

/// A stream that keeps a copy of every byte written to it (to count the frames a client sent).
struct Tap<T> {
    inner: T,
    written: Arc<Mutex<Vec<u8>>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tap<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Frames by type in what a client wrote after the connection preface.
fn frames_written(bytes: &[u8]) -> HashMap<u8, usize> {
    let mut counts = HashMap::new();
    let mut rest = &bytes[24.min(bytes.len())..];
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        *counts.entry(rest[3]).or_default() += 1;
        rest = &rest[(9 + len).min(rest.len())..];
    }
    counts
}

#[tokio::test]
async fn h2_rapid_reset_streams_never_reach_the_upstream() {
    let (up, site) = setup().await;
    // The `h2` client over a tap, to count what it put on the wire.
    let tcp = tokio::net::TcpStream::connect(site.edge.https)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("api.test").unwrap();
    let tls = tls_connector_alpn(&site.certs.ca_pem(), &[b"h2"])
        .connect(name, tcp)
        .await
        .unwrap();
    let written = Arc::new(Mutex::new(Vec::new()));
    let tap = Tap {
        inner: tls,
        written: written.clone(),
    };
    let (mut h2, conn) = h2::client::handshake(tap).await.unwrap();
    let conn = tokio::spawn(conn);
    // 2,000 POSTs, each reset (CANCEL) right after its HEADERS, its body never sent.
    let mut sent = 0;
    let mut refused = None;
    for i in 0..2000 {
        h2 = match tokio::time::timeout(Duration::from_secs(10), h2.ready()).await {
            Ok(Ok(h2)) => h2,
            Ok(Err(e)) => {
                refused = Some(e);
                break;
            }
            Err(_) => panic!("the client could not open stream {i}"),
        };
        let req = http::Request::post(format!("https://api.test/graphql?mark=rr{i}"))
            .header("content-type", "application/json")
            .header("content-length", QUERY.len())
            .body(())
            .unwrap();
        match h2.send_request(req, false) {
            Ok((_response, mut body)) => {
                // Let the HEADERS go out first: a stream reset before then is dropped by
                // the client, never sent.
                tokio::task::yield_now().await;
                body.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    // Whatever the edge started for those streams has had time to reach the upstream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wire = frames_written(&written.lock().unwrap());
    let ended = if conn.is_finished() {
        Some(conn.await.unwrap())
    } else {
        None
    };
    eprintln!(
        "rapid reset: {sent} streams sent and reset; wire {wire:?}; refused {refused:?}; \
         connection {ended:?}"
    );
    // The attack reached the edge: more resets than h2's 20 of streams not yet accepted went
    // out, each after its stream's HEADERS. How many before the edge ends the connection
    // (GOAWAY(ENHANCE_YOUR_CALM), or a close) depends on how many it had not accepted yet when
    // their RST_STREAM came: 29 to 450 streams so far, fewer the busier the edge.
    let headers = wire.get(&HEADERS).copied().unwrap_or(0);
    let resets = wire.get(&RST_STREAM).copied().unwrap_or(0);
    assert!(
        headers > 20 && resets + 1 >= headers,
        "the attack did not go out: {wire:?}"
    );
    if let Some(e) = &refused {
        assert!(
            e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || e.is_io(),
            "the connection ended with {e:?}"
        );
    }
    // No stream became an upstream request: none had its body.
    probe(&site).await;
    assert_eq!(marked(&up, "rr"), 0);
    upstream_saw_only_probes(&up, 1);
}

#[tokio::test]
async fn h2_rapid_reset_in_one_write_gets_goaway() {
    let (up, site) = setup().await;
    // The attack of CVE-2023-44487 as sent: 2,000 requests, each followed by its RST_STREAM
    // in the same write, without waiting for anything; once with bodies still to come, once
    // complete.
    for complete in [false, true] {
        let (mut reader, wr) = h2_raw(&site).await;
        let mut flood = Vec::new();
        for i in 0..2000u32 {
            let id = 2 * i + 1;
            let kind = if complete { "complete" } else { "pending" };
            let block = h2_post_block(&format!("rr1w-{kind}{i}"));
            flood.extend(frame(HEADERS, END_HEADERS, id, &block));
            if complete {
                flood.extend(frame(DATA, END_STREAM, id, QUERY.as_bytes()));
            }
            flood.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
        }
        let writer = write_flood(wr, flood);
        let seen = reader.drain(Duration::from_secs(10)).await;
        writer.abort();
        eprintln!("rapid reset in one write (complete {complete}): {seen:?}");
        // h2 refuses a 21st reset of a stream not yet accepted: GOAWAY, then the close.
        assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
        assert!(seen.ended(), "{seen:?}");
        assert_eq!(seen.count(HEADERS), 0, "streams were answered: {seen:?}");
        probe(&site).await;
    }
    // Whatever the edge started for those streams has had time to reach the upstream (what is
    // checked is that nothing more arrives: no condition to poll for).
    tokio::time::sleep(Duration::from_millis(500)).await;
    // None of the 2,000 streams without a body can have been forwarded (the edge reads a body
    // whole before it forwards). Complete ones could, if the edge accepted one and read its
    // body before reading its RST_STREAM: that is a request the client sent whole, and the
    // GOAWAY bounds how many; none has in any run so far.
    assert_eq!(marked(&up, "rr1w-pending"), 0);
    let complete = marked(&up, "rr1w-complete");
    assert!(
        complete <= 20,
        "{complete} reset requests reached the upstream"
    );
    assert_eq!(up.recorder.count(), 2 + complete);
}

#[tokio::test]
async fn h2_continuation_flood_ends_the_connection() {
    let (up, site) = setup().await;
    let (mut reader, wr) = h2_raw(&site).await;
    // One HEADERS without END_HEADERS, then 10,000 CONTINUATION frames of junk (1 MB if the
    // edge took them all): the header block never ends.
    let mut flood = frame(HEADERS, 0, 1, &h2_post_block("cont"));
    let junk = [b'a'; 100];
    for _ in 0..10_000 {
        flood.extend(frame(CONTINUATION, 0, 1, &junk));
    }
    let writer = write_flood(wr, flood);
    let seen = reader.drain(Duration::from_secs(10)).await;
    writer.abort();
    eprintln!("continuation flood: {seen:?}");
    // h2 allows a header block as many CONTINUATION frames as the 64 KiB header list needs
    // (at least 5), then GOAWAY(ENHANCE_YOUR_CALM) and the close.
    assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{seen:?}");
    assert!(
        seen.ended(),
        "the flooding connection stayed open: {seen:?}"
    );
    probe(&site).await;
    upstream_saw_only_probes(&up, 1);
}

/// After a flood of `kind` frames (each asking for an acknowledgement) written without reading:
/// the edge acknowledged each one at most once, serves others meanwhile, and the flooding
/// connection is either closed or still answers a request of its own.
async fn flood_then_check(kind: u8, flood: Vec<u8>, frames: usize, mark: &str) {
    let (up, site) = setup().await;
    let (mut reader, wr) = h2_raw(&site).await;
    let mut writer = write_flood(wr, flood);
    // The edge writes each acknowledgement before it reads the next frame: once our receive
    // buffer is full it stops reading, and the write stalls (backpressure) until we read.
    let first = tokio::time::timeout(Duration::from_secs(10), &mut writer).await;
    probe(&site).await;
    let seen = reader.drain(Duration::from_secs(2)).await;
    let acks = seen.count(kind | 0x80);
    eprintln!("{mark}: {seen:?}");
    // Our own SETTINGS at the start is acknowledged too.
    let asked = frames + usize::from(kind == SETTINGS);
    assert!(acks <= asked, "{acks} acknowledgements for {asked} frames");
    if seen.ended() {
        eprintln!("{mark}: the edge closed the flooding connection");
        writer.abort();
    } else {
        // Still open: every frame was answered, and a request on it is served.
        let written = match first {
            Ok(done) => done,
            Err(_) => tokio::time::timeout(Duration::from_secs(10), writer)
                .await
                .expect("the edge stopped reading the flood"),
        };
        let WrittenFlood { mut wr, ok } = written.unwrap();
        assert!(ok, "{seen:?}");
        assert_eq!(acks, asked, "{seen:?}");
        let (head, body) = h2_raw_request(&mut reader, &mut wr, 1, mark).await;
        assert_eq!(
            head.first(),
            Some(&0x88),
            "not :status 200 (indexed): {head:?}"
        );
        assert!(body.contains("\"hello\""), "{body}");
    }
    probe(&site).await;
    let legit = usize::from(!seen.ended());
    assert_eq!(marked(&up, mark), legit);
    assert_eq!(
        up.recorder.count(),
        2 + legit,
        "{:?}",
        up.recorder.requests()
    );
}

#[tokio::test]
async fn h2_settings_flood_is_answered_in_step_and_bounded() {
    // 10,000 SETTINGS frames (each a valid INITIAL_WINDOW_SIZE), their ACKs not read.
    let flood = (0..10_000)
        .flat_map(|_| frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]))
        .collect();
    flood_then_check(SETTINGS, flood, 10_000, "settingsflood").await;
}

#[tokio::test]
async fn h2_ping_flood_is_answered_in_step_and_bounded() {
    // 10,000 PINGs, their ACKs not read.
    let flood = (0..10_000u64)
        .flat_map(|i| frame(PING, 0, 0, &i.to_be_bytes()))
        .collect();
    flood_then_check(PING, flood, 10_000, "pingflood").await;
}

// ---------------------------------------------------------------------------------------------
// HTTP/1 heads.

#[tokio::test]
async fn ten_thousand_request_headers_are_refused() {
    let (up, site) = setup().await;
    // HTTP/1: 10,000 header lines of 5 bytes, 50 KB: under the 64 KiB head limit, over
    // pingora's 256 headers.
    let headers = "x:1\r\n".repeat(10_000);
    let (text, closed) = raw_h1(
        &site,
        h1_post("manyheaders1", &headers).into_bytes(),
        Duration::from_secs(10),
    )
    .await;
    eprintln!("10k headers over HTTP/1: closed {closed}: {text}");
    assert!(closed, "{text}");
    let codes = common::raw::statuses(&text);
    assert!(
        codes == [400] || codes == [431],
        "one 400 or 431, then the close: {text}"
    );
    // HTTP/2: the same list (340 KB as h2 counts it) is over the 64 KiB header list limit.
    let mut h2 = common::ws::h2_connect(site.edge.https, "api.test", &site.certs.ca_pem()).await;
    let mut req = http::Request::post("https://api.test/graphql?mark=manyheaders2")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    for i in 0..10_000 {
        req.headers_mut().append(
            http::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
            http::HeaderValue::from_static("1"),
        );
    }
    let answer = match h2.send_request(req, false) {
        Ok((resp, mut body)) => {
            let _ = body.send_data(bytes::Bytes::from_static(QUERY.as_bytes()), true);
            match tokio::time::timeout(Duration::from_secs(10), resp).await {
                Ok(Ok(r)) => Some(r.status().as_u16()),
                Ok(Err(e)) => {
                    eprintln!("10k headers over h2: {e:?}");
                    None
                }
                Err(_) => panic!("no answer to 10,000 h2 headers"),
            }
        }
        Err(e) => {
            eprintln!("10k headers over h2, not sent: {e:?}");
            None
        }
    };
    eprintln!("10k headers over h2: {answer:?}");
    assert!(
        matches!(answer, None | Some(400 | 431)),
        "10,000 h2 headers were answered {answer:?}"
    );
    probe(&site).await;
    upstream_saw_only_probes(&up, 1);
}

#[tokio::test]
async fn a_one_mib_header_line_gets_431_and_the_connection_closes() {
    let (up, site) = setup().await;
    let line = format!("x-big: {}\r\n", "a".repeat(1 << 20));
    let (text, closed) = raw_h1(
        &site,
        h1_post("bigline", &line).into_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert!(closed, "{text}");
    assert_eq!(common::raw::statuses(&text), [431], "{text}");
    assert!(text.contains("REQUEST_HEADER_TOO_LARGE"), "{text}");
    probe(&site).await;
    upstream_saw_only_probes(&up, 1);
}

// ---------------------------------------------------------------------------------------------
// Bodies.

/// A deflate stream (RFC 1951) of `runs` (byte, count): one dynamic-Huffman block in which
/// the length 258 (symbol 285) and the distance 1 have 1-bit codes, so each 258 bytes of a run
/// cost 2 bits (deflate's best ratio, 1032:1); other bytes are 9- or 10-bit literals.
fn deflate_runs(runs: &[(u8, usize)]) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        n: u32,
    }
    impl Bits {
        fn put(&mut self, value: u32, bits: u32) {
            self.acc |= u64::from(value) << self.n;
            self.n += bits;
            while self.n >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.n -= 8;
            }
        }
        /// A Huffman code: its bits go most significant first.
        fn code(&mut self, (code, len): (u32, u32)) {
            let rev = (0..len).fold(0, |r, i| r | ((code >> i) & 1) << (len - 1 - i));
            self.put(rev, len);
        }
    }
    fn canonical(lengths: &[u32]) -> Vec<(u32, u32)> {
        let mut count = [0u32; 16];
        for &l in lengths.iter().filter(|&&l| l > 0) {
            count[l as usize] += 1;
        }
        let mut next = [0u32; 16];
        let mut code = 0;
        for bits in 1..16 {
            code = (code + count[bits - 1]) << 1;
            next[bits] = code;
        }
        lengths
            .iter()
            .map(|&l| {
                if l == 0 {
                    return (0, 0);
                }
                let c = next[l as usize];
                next[l as usize] += 1;
                (c, l)
            })
            .collect()
    }
    // Literal/length code: 285 has half the code space; 255 literals share the other half at
    // 9 bits with two 10-bit symbols (the literal 255 and end-of-block): a complete code.
    let mut lit_len = vec![0u32; 286];
    for (sym, l) in lit_len.iter_mut().enumerate().take(257) {
        *l = if sym >= 255 { 10 } else { 9 };
    }
    lit_len[285] = 1;
    let lit = canonical(&lit_len);
    let dist = (0, 1); // distance code 0 (distance 1), the only one: 1 bit
                       // Code-length code: the lengths used (0, 1, 9, 10) at 2 bits each.
    const ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];
    let mut cl_len = [0u32; 19];
    for s in [0, 1, 9, 10] {
        cl_len[s] = 2;
    }
    let cl = canonical(&cl_len);
    let mut b = Bits {
        out: Vec::new(),
        acc: 0,
        n: 0,
    };
    b.put(1, 1); // BFINAL
    b.put(2, 2); // dynamic Huffman
    b.put(286 - 257, 5); // HLIT
    b.put(0, 5); // HDIST: one distance code
    b.put(18 - 4, 4); // HCLEN: up to the code-length symbol 1 in ORDER
    for &s in &ORDER[..18] {
        b.put(cl_len[s], 3);
    }
    for &l in lit_len.iter().chain(std::iter::once(&1)) {
        b.code(cl[l as usize]);
    }
    for &(byte, count) in runs {
        if count == 0 {
            continue;
        }
        b.code(lit[byte as usize]);
        let rest = count - 1;
        for _ in 0..rest / 258 {
            b.code(lit[285]);
            b.code(dist);
        }
        for _ in 0..rest % 258 {
            b.code(lit[byte as usize]);
        }
    }
    b.code(lit[256]);
    if b.n > 0 {
        b.out.push(b.acc as u8);
    }
    b.out
}

/// CRC-32 (gzip's) of `runs`; long runs of zeros by polynomial arithmetic, not byte by byte.
fn crc32_runs(runs: &[(u8, usize)]) -> u32 {
    const POLY: u32 = 0xedb8_8320;
    // a * b modulo the CRC polynomial (bit-reflected: x^0 is the top bit), as in zlib.
    fn multmodp(a: u32, mut b: u32) -> u32 {
        let mut m = 1u32 << 31;
        let mut p = 0;
        loop {
            if a & m != 0 {
                p ^= b;
                if a & (m - 1) == 0 {
                    return p;
                }
            }
            m >>= 1;
            b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        }
    }
    // x^(8n) modulo the polynomial: n zero bytes.
    fn zeros(mut n: usize) -> u32 {
        let mut p = 1u32 << 31;
        let mut sq = 1u32 << 23; // x^8
        while n != 0 {
            if n & 1 != 0 {
                p = multmodp(sq, p);
            }
            sq = multmodp(sq, sq);
            n >>= 1;
        }
        p
    }
    let mut crc = 0xffff_ffffu32;
    for &(byte, count) in runs {
        if byte == 0 && count > 4096 {
            crc = multmodp(zeros(count), crc);
            continue;
        }
        for _ in 0..count {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

/// `data` as runs of one byte.
fn runs_of(data: &[u8]) -> Vec<(u8, usize)> {
    let mut runs: Vec<(u8, usize)> = Vec::new();
    for &b in data {
        match runs.last_mut() {
            Some((last, n)) if *last == b => *n += 1,
            _ => runs.push((b, 1)),
        }
    }
    runs
}

/// A gzip member (RFC 1952) of `runs`.
fn gzip_runs(runs: &[(u8, usize)]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend(deflate_runs(runs));
    out.extend(crc32_runs(runs).to_le_bytes());
    let size: usize = runs.iter().map(|r| r.1).sum();
    out.extend((size as u32).to_le_bytes());
    out
}

#[tokio::test]
async fn gzip_bombs_are_refused_without_being_inflated() {
    let (up, site) = setup().await;
    // One layer: 60 MiB of zeros in 61 KB (a body the edge reads: under 64 KiB).
    let single = gzip_runs(&[(0, 60 << 20)]);
    // Two layers (`gzip, gzip`): 100 MiB of zeros in 813 bytes.
    let inner = gzip_runs(&[(0, 100 << 20)]);
    let double = gzip_runs(&runs_of(&inner));
    assert!(single.len() < 64 * 1024, "{}", single.len());
    assert!(double.len() < 4096, "{}", double.len());
    for (mark, encoding, body) in [("gzip1", "gzip", single), ("gzip2", "gzip, gzip", double)] {
        let (status, code, text) =
            post_body(&site, mark, &[("content-encoding", encoding)], body).await;
        // The edge does not inflate request bodies: it reads the compressed bytes as the
        // GraphQL JSON they are not.
        assert_eq!(
            (status, code.as_str()),
            (400, "INVALID_JSON"),
            "{mark}: {text}"
        );
    }
    probe(&site).await;
    upstream_saw_only_probes(&up, 1);
}

#[tokio::test]
async fn deeply_nested_json_is_refused() {
    let (up, site) = setup().await;
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    // 100,000 deep is 200 KB: over the 64 KiB the edge reads, refused unread, and the
    // connection closes (what is left of the body is never parsed as a request).
    let body = nest(100_000);
    let head = format!(
        "POST /graphql?mark=array100k HTTP/1.1\r\nHost: api.test\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (text, closed) = raw_h1(
        &site,
        [head.into_bytes(), body].concat(),
        Duration::from_secs(10),
    )
    .await;
    assert!(closed, "{text}");
    assert_eq!(common::raw::statuses(&text), [413], "{text}");
    assert!(text.contains("BODY_TOO_LARGE"), "{text}");
    // What fits in 64 KiB stops at serde_json's recursion limit (128).
    let vars = {
        let n = 10_000;
        format!(
            r#"{{"query":"{{ hello }}","variables":{}1{}}}"#,
            r#"{"a":"#.repeat(n),
            "}".repeat(n)
        )
        .into_bytes()
    };
    for (mark, body) in [("array30k", nest(30_000)), ("vars10k", vars)] {
        assert!(body.len() <= 64 * 1024);
        let (status, code, text) = post_body(&site, mark, &[], body).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "INVALID_JSON"),
            "{mark}: {text}"
        );
        assert!(text.contains("recursion limit"), "{mark}: {text}");
    }
    probe(&site).await;
    upstream_saw_only_probes(&up, 1);
}

#[tokio::test]
async fn alias_bombs_are_refused() {
    let (up, site) = setup().await;
    let doc = |aliases: String| {
        serde_json::json!({ "query": format!("{{ {aliases}}}") })
            .to_string()
            .into_bytes()
    };
    let distinct = |n: usize| (0..n).map(|i| format!("a{i}: hello ")).collect::<String>();
    for (mark, body, want) in [
        // 1.4 MB: over the 64 KiB the edge reads.
        ("alias100k", doc(distinct(100_000)), (413, "BODY_TOO_LARGE")),
        // What fits: 21,002 tokens (at most 15,000), or 4,000 aliases (at most 100).
        (
            "alias7000",
            doc("a:hello ".repeat(7_000)),
            (400, "LIMIT_TOKENS"),
        ),
        ("alias4000", doc(distinct(4_000)), (400, "LIMIT_ALIASES")),
    ] {
        let (status, code, text) = post_body(&site, mark, &[], body).await;
        assert_eq!((status, code.as_str()), want, "{mark}: {text}");
    }
    probe(&site).await;
    upstream_saw_only_probes(&up, 1);
}

#[tokio::test]
async fn fragment_bombs_are_refused_without_being_expanded() {
    let (up, site) = setup().await;
    // Each fragment spreads the one before it twice: 2^30 fields once expanded, in 1 KB.
    let mut query = String::from("query Bomb { ...F30 }\nfragment F0 on Query { hello }\n");
    for i in 1..=30 {
        query.push_str(&format!(
            "fragment F{i} on Query {{ ...F{p} ...F{p} }}\n",
            p = i - 1
        ));
    }
    let body = serde_json::json!({ "query": query })
        .to_string()
        .into_bytes();
    let (status, code, text) = post_body(&site, "fragbomb", &[], body).await;
    assert_eq!((status, code.as_str()), (400, "LIMIT_FIELDS"), "{text}");
    assert!(text.contains("1073741824 fields"), "{text}");
    // The same with an alias in the innermost fragment: 2^30 aliases.
    let aliased = query.replace("{ hello }", "{ a: hello }");
    let body = serde_json::json!({ "query": aliased })
        .to_string()
        .into_bytes();
    let (status, code, text) = post_body(&site, "fragbomb2", &[], body).await;
    assert_eq!((status, code.as_str()), (400, "LIMIT_ALIASES"), "{text}");
    probe(&site).await;
    upstream_saw_only_probes(&up, 1);
}
