//! Request smuggling and desync against the edge: raw HTTP/1.1 over TLS, and raw HTTP/2 frames
//! (forwarded to an HTTP/1 upstream), at a site with API-key auth in front of the demo API,
//! which records every request it receives.
//!
//! Each case hides a whole, valid request with credentials (its URI marked `smug=<case>`)
//! where only a parser that lost track of the framing would take it for a request of its own:
//! after a body framed two ways (Content-Length and Transfer-Encoding), inside a body whose
//! length is written in a doubtful way, behind broken chunks, in header values. Each case
//! asserts what the client receives (the status of each answer, and that the edge closes; for
//! HTTP/2 an answer or a reset) and that the upstream never saw a marked request. Valid
//! pipelines are answered in order and reach the upstream exactly as sent.

mod common;

use std::time::Duration;

use common::raw::{api_key_site, seen, send_raw, Answer};
use common::{ApiSite, Upstream};

const KEY: &str = "da2-smugglesmugglesmugglesmug";
const BODY: &str = r#"{"query":"{ hello }"}"#;

/// Long enough for any answer to come, and for the edge to close after it.
const CLOSE: Duration = Duration::from_secs(10);

/// Sent after each case on the same connection, answered only when the edge kept parsing
/// requests after the case's: a valid GET that closes the connection.
fn probe() -> String {
    format!(
        "GET /graphql?query=%7Bhello%7D&probe=1 HTTP/1.1\r\nHost: api.test\r\n\
         x-api-key: {KEY}\r\nConnection: close\r\n\r\n"
    )
}

/// One attack: the bytes, and what the client must receive.
struct Case {
    name: String,
    bytes: Vec<u8>,
    /// The status of each answer, in order (empty: the edge closed without one); the last is
    /// the probe's when the edge kept the connection.
    answers: &'static [u16],
}

/// `name` as a query-string value: letters and digits, `-` for the rest.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// A whole, valid POST with credentials whose URI holds `smug=<slug>`.
fn smuggled(slug: &str) -> String {
    format!(
        "POST /graphql?smug={slug} HTTP/1.1\r\nHost: api.test\r\nx-api-key: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
}

/// The outer request's head, up to its framing headers.
fn head(slug: &str) -> String {
    format!(
        "POST /graphql?outer={slug} HTTP/1.1\r\nHost: api.test\r\n\
         Content-Type: application/json\r\nx-api-key: {KEY}\r\n"
    )
}

/// How a body is framed twice.
#[derive(Clone, Copy)]
enum Layout {
    /// Chunked, the body is the last chunk alone and the smuggled request follows it;
    /// Content-Length covers both. An edge reading Content-Length while the upstream reads the
    /// (forwarded) Transfer-Encoding would hand the upstream the smuggled request.
    ClTe,
    /// Content-Length covers the first chunk-size line only; the chunk holds the smuggled
    /// request. An edge reading Content-Length would parse the chunk as a request.
    TeCl,
}

/// A POST framed by Content-Length and by `te` (header lines, CRLF between them), in the order
/// `cl_first` says.
fn double_framed(name: &str, te: &str, cl_first: bool, layout: Layout) -> Vec<u8> {
    let s = slug(name);
    let smug = smuggled(&s);
    let (body, cl) = match layout {
        Layout::ClTe => {
            let body = format!("0\r\n\r\n{smug}");
            let cl = body.len();
            (body, cl)
        }
        Layout::TeCl => {
            let size = format!("{:x}\r\n", smug.len());
            (format!("{size}{smug}\r\n0\r\n\r\n"), size.len())
        }
    };
    let cl = format!("Content-Length: {cl}\r\n");
    let te = format!("{te}\r\n");
    let framing = if cl_first { cl + &te } else { te + &cl };
    format!("{}{framing}\r\n{body}", head(&s)).into_bytes()
}

/// A POST whose body is the smuggled request, framed by `framing` (header lines) in which `{L}`
/// stands for the body's length: read right, the body is not GraphQL; an edge that took the
/// length for shorter would parse the body as a request.
fn body_is_a_request(name: &str, framing: &str) -> Vec<u8> {
    let s = slug(name);
    let smug = smuggled(&s);
    let framing = framing.replace("{L}", &smug.len().to_string());
    format!("{}{framing}\r\n\r\n{smug}", head(&s)).into_bytes()
}

/// A chunked POST whose body is `chunks(smuggled)`.
fn chunked(name: &str, chunks: impl Fn(&str) -> String) -> Vec<u8> {
    let s = slug(name);
    let body = chunks(&smuggled(&s));
    format!("{}Transfer-Encoding: chunked\r\n\r\n{body}", head(&s)).into_bytes()
}

/// A chunked POST: one chunk of `BODY` whose size line is `size_line`, then the last chunk
/// and trailers as `end`, then the smuggled request.
fn chunk_then(name: &str, size_line: &str, end: &str) -> Vec<u8> {
    chunked(name, |smug| format!("{size_line}{BODY}\r\n{end}{smug}"))
}

/// Transfer-Encoding as written by an attacker: each is tried with Content-Length before and
/// after it, in both layouts, and refused (400) and closed: read as chunked (then the body is
/// the last chunk alone, or the smuggled request: not GraphQL either way), or refused with the
/// head.
const TRANSFER_ENCODINGS: [(&str, &str); 27] = [
    ("te plain", "Transfer-Encoding: chunked"),
    ("te two spaces", "Transfer-Encoding:  chunked"),
    ("te tab before value", "Transfer-Encoding:\tchunked"),
    ("te trailing space", "Transfer-Encoding: chunked "),
    ("te trailing tab", "Transfer-Encoding: chunked\t"),
    ("te Chunked", "Transfer-Encoding: Chunked"),
    ("te upper case", "TRANSFER-ENCODING: CHUNKED"),
    (
        "te chunked identity",
        "Transfer-Encoding: chunked, identity",
    ),
    (
        "te identity chunked",
        "Transfer-Encoding: identity, chunked",
    ),
    ("te gzip chunked", "Transfer-Encoding: gzip, chunked"),
    ("te chunked chunked", "Transfer-Encoding: chunked, chunked"),
    ("te leading comma", "Transfer-Encoding: ,chunked"),
    ("te x-chunked", "Transfer-Encoding: x-chunked"),
    ("te chunked semicolon", "Transfer-Encoding: chunked;"),
    ("te quoted", "Transfer-Encoding: \"chunked\""),
    ("te vertical tab", "Transfer-Encoding: \x0bchunked"),
    ("te NUL after value", "Transfer-Encoding: chunked\0"),
    (
        "te twice",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    ),
    (
        "te twice identity last",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
    ),
    (
        "te twice identity first",
        "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked",
    ),
    ("te obs-fold value", "Transfer-Encoding:\r\n chunked"),
    (
        "te as a space continuation line",
        "X-Pad: a\r\n Transfer-Encoding: chunked",
    ),
    (
        "te as a tab continuation line",
        "X-Pad: a\r\n\tTransfer-Encoding: chunked",
    ),
    ("te space before colon", "Transfer-Encoding : chunked"),
    ("te tab before colon", "Transfer-Encoding\t: chunked"),
    ("te after a bare LF", "X-Pad: a\nTransfer-Encoding: chunked"),
    ("te after a bare CR", "X-Pad: a\rTransfer-Encoding: chunked"),
];

fn transfer_encoding_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (name, te) in TRANSFER_ENCODINGS {
        for (order, cl_first) in [("cl first", true), ("te first", false)] {
            for (layout_name, layout) in [("cl.te", Layout::ClTe), ("te.cl", Layout::TeCl)] {
                let name = format!("{name}, {order}, {layout_name}");
                let bytes = double_framed(&name, te, cl_first, layout);
                cases.push(Case {
                    name,
                    bytes,
                    answers: &[400],
                });
            }
        }
    }
    cases
}

/// Content-Length as written by an attacker, refused (400) with the head; the body is the
/// smuggled request.
const CONTENT_LENGTHS: [(&str, &str); 19] = [
    (
        "cl twice, zero last",
        "Content-Length: {L}\r\nContent-Length: 0",
    ),
    (
        "cl twice, zero first",
        "Content-Length: 0\r\nContent-Length: {L}",
    ),
    ("cl list equal", "Content-Length: {L}, {L}"),
    ("cl list equal no space", "Content-Length: {L},{L}"),
    ("cl list zero first", "Content-Length: 0, {L}"),
    ("cl list zero last", "Content-Length: {L}, 0"),
    ("cl list empty member", "Content-Length: {L},"),
    ("cl plus sign", "Content-Length: +{L}"),
    ("cl hex", "Content-Length: 0x{L}"),
    ("cl negative", "Content-Length: -{L}"),
    ("cl minus zero", "Content-Length: -0"),
    ("cl beyond u64", "Content-Length: 18446744073709551616"),
    ("cl trailing junk", "Content-Length: {L}x"),
    ("cl decimal point", "Content-Length: {L}.0"),
    ("cl space inside", "Content-Length: 1 {L}"),
    ("cl empty", "Content-Length: "),
    ("cl space before colon", "Content-Length : {L}"),
    ("cl obs-fold value", "Content-Length:\r\n {L}"),
    (
        "cl zero after a bare CR",
        "X-Pad: a\rContent-Length: 0\r\nContent-Length: {L}",
    ),
];

/// Content-Length the edge reads, and what it then answers: the body is not GraphQL (and the
/// connection lives on, the probe answered), or too large to read.
const CONTENT_LENGTHS_READ: [(&str, &str, &[u16]); 3] = [
    (
        "cl twice equal",
        "Content-Length: {L}\r\nContent-Length: {L}",
        &[400, 200],
    ),
    ("cl leading zeros", "Content-Length: 000{L}", &[400, 200]),
    ("cl i64 max", "Content-Length: 9223372036854775807", &[413]),
];

fn content_length_cases() -> Vec<Case> {
    let refused = CONTENT_LENGTHS.iter().map(|(n, f)| (n, f, &[400][..]));
    let read = CONTENT_LENGTHS_READ.iter().map(|(n, f, a)| (n, f, *a));
    refused
        .chain(read)
        .map(|(name, framing, answers)| Case {
            name: name.to_string(),
            bytes: body_is_a_request(name, framing),
            answers,
        })
        .collect()
}

/// One chunk of `BODY` after a size line (`{N}` standing for its size in hex), then `end` (the
/// last chunk and trailers), then the smuggled request. pingora reads past what follows the
/// size (extensions, whitespace) up to the CRLF and drops trailers, so these are answered
/// (200) as framed by the chunk sizes; and the edge closes after a chunked body, so what
/// follows is never parsed. (With the last chunk's CRLF missing, the smuggled head is read as
/// trailers.)
const CHUNKS_READ: [(&str, &str, &str); 14] = [
    (
        "chunk extension with a control byte",
        "{N};a=\x01\r\n",
        "0\r\n\r\n",
    ),
    (
        "chunk extension ended by a bare LF",
        "{N};a\nb\r\n",
        "0\r\n\r\n",
    ),
    ("chunk extension valid", "{N};name=value\r\n", "0\r\n\r\n"),
    ("last chunk with an extension", "{N}\r\n", "0;x=y\r\n\r\n"),
    ("trailer field", "{N}\r\n", "0\r\nX-Trailer: a\r\n\r\n"),
    (
        "content-length trailer",
        "{N}\r\n",
        "0\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        "transfer-encoding trailer",
        "{N}\r\n",
        "0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ),
    (
        "trailer without a colon",
        "{N}\r\n",
        "0\r\nnot a field\r\n\r\n",
    ),
    ("trailer obs-fold", "{N}\r\n", "0\r\nX-T: a\r\n b\r\n\r\n"),
    ("last chunk without the final CRLF", "{N}\r\n", "0\r\n"),
    ("space after the size", "{N} \r\n", "0\r\n\r\n"),
    ("tab after the size", "{N}\t\r\n", "0\r\n\r\n"),
    ("two leading zeros", "00{N}\r\n", "0\r\n\r\n"),
    ("two last chunks", "{N}\r\n", "0\r\n\r\n0\r\n\r\n"),
];

/// The same, refused as broken (400 BAD_REQUEST_BODY) and closed.
const CHUNKS_BROKEN: [(&str, &str, &str); 4] = [
    (
        "chunk extension quoting a CRLF",
        "{N};a=\"b\r\nc\"\r\n",
        "0\r\n\r\n",
    ),
    ("size line ended by a bare LF", "{N}\n", "0\r\n\r\n"),
    ("NUL after the size", "{N}\0\r\n", "0\r\n\r\n"),
    ("plus before the size", "+{N}\r\n", "0\r\n\r\n"),
];

/// What a chunked body holds, given the smuggled request.
type Chunks = fn(&str) -> String;

fn chunk_cases() -> Vec<Case> {
    let size = format!("{:x}", BODY.len());
    let read = CHUNKS_READ.iter().map(|c| (c, &[200][..]));
    let broken = CHUNKS_BROKEN.iter().map(|c| (c, &[400][..]));
    let mut cases: Vec<Case> = read
        .chain(broken)
        .map(|((name, size_line, end), answers)| Case {
            name: name.to_string(),
            bytes: chunk_then(name, &size_line.replace("{N}", &size), end),
            answers,
        })
        .collect();
    let bodies: [(&str, Chunks); 3] = [
        ("a chunk holding a last chunk and a request", |smug| {
            let data = format!("0\r\n\r\n{smug}");
            format!("{:x}\r\n{data}\r\n0\r\n\r\n", data.len())
        }),
        ("only the last chunk", |smug| format!("0\r\n\r\n{smug}")),
        ("bare LF after the chunk data", |smug| {
            format!("{:x}\r\n{BODY}\n0\r\n\r\n{smug}", BODY.len())
        }),
    ];
    for (name, body) in bodies {
        cases.push(Case {
            name: name.to_string(),
            bytes: chunked(name, body),
            answers: &[400],
        });
    }
    cases
}

/// Broken lines in the head, refused (400) and closed; the body (framed by a good
/// Content-Length) is the smuggled request.
const HEAD_LINES: [(&str, &str); 9] = [
    ("obs-fold line", "X-Fold: a\r\n b\r\nContent-Length: {L}"),
    ("bare CR inside a value", "X-A: a\rb\r\nContent-Length: {L}"),
    ("NUL inside a value", "X-A: a\0b\r\nContent-Length: {L}"),
    ("CR NUL inside a value", "X-A: a\r\0\r\nContent-Length: {L}"),
    ("NUL inside a name", "X-\0A: b\r\nContent-Length: {L}"),
    ("space inside a name", "X A: b\r\nContent-Length: {L}"),
    ("empty name", ": b\r\nContent-Length: {L}"),
    (
        "content-length after a bare LF",
        "X-A: b\nContent-Length: 0\r\nContent-Length: {L}",
    ),
    ("bare CR line end", "Content-Length: {L}\r\nX-A: b\rX-B: c"),
];

fn head_line_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = HEAD_LINES
        .iter()
        .map(|(name, framing)| Case {
            name: name.to_string(),
            bytes: body_is_a_request(name, framing),
            answers: &[400],
        })
        .collect();
    // httparse takes a bare LF for a line end: read as framed, not GraphQL, the connection
    // lives on.
    let name = "bare LF line endings";
    cases.push(Case {
        name: name.to_string(),
        bytes: body_is_a_request(name, "X-A: b\nContent-Length: {L}\nX-B: c"),
        answers: &[400, 200],
    });
    cases
}

/// A request whose own URI is marked: it must not reach the upstream at all.
/// (`{M}` in `request_line` stands for the marker; `{O}` for an unmarked `outer=<case>`, in a
/// request the edge may forward.)
fn marked(name: &str, request_line: &str, headers: &str) -> Vec<u8> {
    let line = request_line
        .replace("{M}", &format!("smug={}", slug(name)))
        .replace("{O}", &format!("outer={}", slug(name)));
    format!(
        "{line}\r\n{headers}Content-Type: application/json\r\nx-api-key: {KEY}\r\n\
         Content-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

fn request_line_cases() -> Vec<Case> {
    let host = "Host: api.test\r\n";
    let other = "Host: other.test\r\n";
    // pingora refuses an absolute-form authority that disagrees with Host (400); where both
    // name another host, the edge's routing answers (421).
    let cases: Vec<(&str, &str, &str, &[u16])> = vec![
        (
            "absolute-form naming another host",
            "POST https://other.test/graphql?{M} HTTP/1.1",
            host,
            &[400],
        ),
        (
            "absolute-form naming another host over http",
            "POST http://other.test/graphql?{M} HTTP/1.1",
            host,
            &[400],
        ),
        (
            "absolute-form naming another host and port",
            "POST https://other.test:443/graphql?{M} HTTP/1.1",
            host,
            &[400],
        ),
        (
            "absolute-form and Host naming another host",
            "POST https://other.test/graphql?{M} HTTP/1.1",
            other,
            &[421],
        ),
        (
            "absolute-form with userinfo",
            "POST https://api.test@other.test/graphql?{M} HTTP/1.1",
            host,
            &[400],
        ),
        (
            "absolute-form for the site, Host another",
            "POST https://api.test/graphql?{M} HTTP/1.1",
            other,
            &[400],
        ),
        // pingora percent-encodes what the request line may not hold: forwarded as `%00`.
        (
            "NUL in the request line",
            "POST /graphql?{O}\0 HTTP/1.1",
            host,
            &[200, 200],
        ),
        (
            "tab in the request line",
            "POST\t/graphql?{M} HTTP/1.1",
            host,
            &[400],
        ),
        (
            "HTTP/2 version on an HTTP/1 connection",
            "POST /graphql?{M} HTTP/2.0",
            host,
            &[400],
        ),
    ];
    cases
        .into_iter()
        .map(|(name, line, headers, answers)| Case {
            name: name.to_string(),
            bytes: marked(name, line, headers),
            answers,
        })
        .collect()
}

fn other_cases() -> Vec<Case> {
    let get_cl = {
        let s = slug("GET with a body");
        let smug = smuggled(&s);
        format!(
            "GET /graphql?query=%7Bhello%7D&outer={s} HTTP/1.1\r\nHost: api.test\r\n\
             x-api-key: {KEY}\r\nContent-Length: {}\r\n\r\n{smug}",
            smug.len()
        )
    };
    let get_chunked = {
        let s = slug("GET with a chunked body");
        let smug = smuggled(&s);
        format!(
            "GET /graphql?query=%7Bhello%7D&outer={s} HTTP/1.1\r\nHost: api.test\r\n\
             x-api-key: {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smug}"
        )
    };
    let http10 = {
        let s = slug("HTTP/1.0 keep-alive, CL and TE");
        let smug = smuggled(&s);
        let body = format!("0\r\n\r\n{smug}");
        format!(
            "POST /graphql?outer={s} HTTP/1.0\r\nHost: api.test\r\nx-api-key: {KEY}\r\n\
             Content-Type: application/json\r\nConnection: keep-alive\r\n\
             Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
            body.len()
        )
    };
    let http10_te = {
        let s = slug("HTTP/1.0 keep-alive, TE alone");
        let smug = smuggled(&s);
        format!(
            "POST /graphql?outer={s} HTTP/1.0\r\nHost: api.test\r\nx-api-key: {KEY}\r\n\
             Content-Type: application/json\r\nConnection: keep-alive\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smug}"
        )
    };
    // A GET is answered from its query string; its body, framed by Content-Length, goes
    // upstream as the GET's body (never parsed as a request), and the connection lives on. A
    // chunked one ends the connection after the answer, like any chunked request.
    vec![
        Case {
            name: "HTTP/1.0 keep-alive, TE alone".into(),
            bytes: http10_te.into_bytes(),
            answers: &[400],
        },
        Case {
            // Refused (BODY_NOT_ALLOWED): only a GET's query string is checked.
            name: "GET with a body".into(),
            bytes: get_cl.into_bytes(),
            answers: &[400],
        },
        Case {
            name: "GET with a chunked body".into(),
            bytes: get_chunked.into_bytes(),
            answers: &[400],
        },
        Case {
            name: "HTTP/1.0 keep-alive, CL and TE".into(),
            bytes: http10.into_bytes(),
            answers: &[400],
        },
    ]
}

/// Run `cases` one connection each: what each got, and every case whose answer differed or
/// that let a marked request through (all are run before failing, so the report is whole).
async fn run(up: &Upstream, site: &ApiSite, cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        let mut bytes = case.bytes.clone();
        bytes.extend_from_slice(probe().as_bytes());
        let Answer { text, closed } = send_raw(site, &bytes, CLOSE).await;
        let got = common::raw::statuses(&text);
        let leaked: Vec<String> = seen(up)
            .into_iter()
            .filter(|u| u.contains("smug="))
            .collect();
        let mut why = Vec::new();
        if got != case.answers {
            why.push(format!("answered {got:?}, expected {:?}", case.answers));
        }
        if !closed {
            why.push("the connection stayed open".to_string());
        }
        // An error the edge closes after says so.
        let last_connection = text.to_ascii_lowercase().rfind("connection: close");
        let last_head = text.rfind("HTTP/1.1 ");
        if got.last().is_some_and(|&s| s >= 400) && last_connection < last_head {
            why.push("the last answer, an error, without Connection: close".to_string());
        }
        if !leaked.is_empty() {
            why.push(format!("the upstream saw {leaked:?}"));
            up.recorder.clear();
        }
        if !why.is_empty() {
            failures.push(format!(
                "{}: {}\n  sent {:?}\n  got {:?}",
                case.name,
                why.join("; "),
                String::from_utf8_lossy(&case.bytes),
                text
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn double_framing_never_smuggles_a_request() {
    let (up, site) = api_key_site(KEY).await;
    let cases = transfer_encoding_cases();
    assert_eq!(cases.len(), 108);
    run(&up, &site, &cases).await;
}

#[tokio::test]
async fn doubtful_content_lengths_never_smuggle_a_request() {
    let (up, site) = api_key_site(KEY).await;
    run(&up, &site, &content_length_cases()).await;
}

#[tokio::test]
async fn broken_chunks_never_smuggle_a_request() {
    let (up, site) = api_key_site(KEY).await;
    run(&up, &site, &chunk_cases()).await;
}

#[tokio::test]
async fn broken_heads_and_request_lines_never_reach_the_upstream() {
    let (up, site) = api_key_site(KEY).await;
    let mut cases = head_line_cases();
    cases.extend(request_line_cases());
    cases.extend(other_cases());
    run(&up, &site, &cases).await;
}

/// Valid requests pipelined on one connection (the last with `Connection: close`): each is
/// answered 200, in order, and the upstream gets exactly these requests and bodies.
#[tokio::test]
async fn valid_pipelines_are_answered_in_order_and_forwarded_whole() {
    let (up, site) = api_key_site(KEY).await;
    let close = "Connection: close\r\n";
    // Each request's bytes, and how the upstream must record it.
    let post = |mark: &str, version: &str, extra: &str| {
        let bytes = format!(
            "POST /graphql?pipe={mark} {version}\r\nHost: api.test\r\nx-api-key: {KEY}\r\n\
             Content-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        let seen: Recorded = ("POST".into(), format!("/graphql?pipe={mark}"), BODY.into());
        (bytes, seen)
    };
    let get = |mark: &str, extra: &str| {
        let uri = format!("/graphql?query=%7Bhello%7D&pipe={mark}");
        let bytes =
            format!("GET {uri} HTTP/1.1\r\nHost: api.test\r\nx-api-key: {KEY}\r\n{extra}\r\n");
        (bytes, ("GET".to_string(), uri, String::new()))
    };
    let twice = format!("Content-Length: {}\r\n{close}", BODY.len());
    let pipelines = [
        (
            "two POSTs",
            vec![post("a", "HTTP/1.1", ""), post("b", "HTTP/1.1", close)],
        ),
        (
            "HTTP/1.0 keep-alive",
            vec![
                post("c", "HTTP/1.0", "Connection: keep-alive\r\n"),
                post("d", "HTTP/1.0", ""),
            ],
        ),
        (
            "GET then POST",
            vec![get("e", ""), post("f", "HTTP/1.1", close)],
        ),
        (
            "equal Content-Length twice",
            vec![post("g", "HTTP/1.1", &twice)],
        ),
    ];
    for (name, requests) in pipelines {
        up.recorder.clear();
        let bytes: String = requests.iter().map(|(b, _)| b.as_str()).collect();
        let want: Vec<Recorded> = requests.into_iter().map(|(_, r)| r).collect();
        let Answer { text, closed } = send_raw(&site, bytes.as_bytes(), CLOSE).await;
        let got: Vec<Recorded> = up
            .recorder
            .requests()
            .into_iter()
            .map(|r| {
                let body = String::from_utf8_lossy(&r.body).into_owned();
                (r.method, r.uri, body)
            })
            .collect();
        assert!(closed, "{name}: the connection stayed open: {text}");
        assert_eq!(
            common::raw::statuses(&text),
            vec![200; want.len()],
            "{name}: {text}"
        );
        assert_eq!(got, want, "{name}");
    }
}

/// A request as the upstream recorded it: method, path and query, body.
type Recorded = (String, String, String);

/// Raw HTTP/2 over TLS: header blocks of literal fields written as given (none of the checks
/// an HTTP/2 library makes before sending), and the first answer on stream 1.
mod h2raw {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What stream 1 got.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Outcome {
        /// Response headers with this status.
        Status(u16),
        /// RST_STREAM with this error code.
        Reset(u32),
        /// GOAWAY with this error code, the stream unanswered.
        GoAway(u32),
        /// The connection closed, the stream unanswered.
        Closed,
    }

    pub const PROTOCOL_ERROR: u32 = 1;

    /// An HPACK integer with a `prefix_bits` prefix, the first byte's high bits `first`.
    fn int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut value: usize) {
        let max = (1usize << prefix_bits) - 1;
        if value < max {
            out.push(first | value as u8);
            return;
        }
        out.push(first | max as u8);
        value -= max;
        while value >= 128 {
            out.push((value % 128) as u8 | 0x80);
            value /= 128;
        }
        out.push(value as u8);
    }

    /// A header block: each field a literal without indexing, with a literal name, no
    /// Huffman coding.
    pub fn block(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0);
            int(&mut out, 0, 7, name.len());
            out.extend_from_slice(name);
            int(&mut out, 0, 7, value.len());
            out.extend_from_slice(value);
        }
        out
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const RST_STREAM: u8 = 3;
    const SETTINGS: u8 = 4;
    const GOAWAY: u8 = 7;
    const END_STREAM: u8 = 1;
    const END_HEADERS: u8 = 4;
    const PADDED: u8 = 8;
    const PRIORITY: u8 = 0x20;

    /// Digits in HPACK's Huffman code (RFC 7541 Appendix B): `0`–`2` take five bits,
    /// `3`–`9` six.
    fn huffman_digits(raw: &[u8]) -> Option<String> {
        if raw.len() > 7 {
            return None;
        }
        let bits = raw.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        let mut left = raw.len() * 8;
        let mut out = String::new();
        while left >= 5 {
            let five = (bits >> (left - 5)) & 0x1f;
            if five <= 2 {
                out.push(char::from(b'0' + five as u8));
                left -= 5;
                continue;
            }
            if left < 6 {
                break;
            }
            let six = (bits >> (left - 6)) & 0x3f;
            if !(0x19..=0x1f).contains(&six) {
                break;
            }
            out.push(char::from(b'3' + (six - 0x19) as u8));
            left -= 6;
        }
        Some(out)
    }

    /// The `:status` of a response header block: its first field, indexed from the static
    /// table or a literal with `:status`'s name.
    fn status(block: &[u8]) -> Option<u16> {
        let mut i = 0;
        // Dynamic table size updates come first.
        while block.get(i)? & 0xe0 == 0x20 {
            let long = block[i] & 0x1f == 0x1f;
            i += 1;
            if long {
                while block.get(i)? & 0x80 != 0 {
                    i += 1;
                }
                i += 1;
            }
        }
        let b = *block.get(i)?;
        if b & 0x80 != 0 {
            let code = [200, 204, 206, 304, 400, 404, 500];
            return code.get(usize::from(b & 0x7f).checked_sub(8)?).copied();
        }
        let name = if b & 0x40 != 0 { b & 0x3f } else { b & 0x0f };
        if !(8..=14).contains(&name) {
            return None;
        }
        let v = *block.get(i + 1)?;
        let raw = block.get(i + 2..i + 2 + usize::from(v & 0x7f))?;
        let text = if v & 0x80 != 0 {
            huffman_digits(raw)?
        } else {
            String::from_utf8(raw.to_vec()).ok()?
        };
        text.parse().ok()
    }

    /// Open an HTTP/2 connection to `addr` for `api.test`, send stream 1 (`block`, then each
    /// of `data` as a DATA frame, the last ending the stream) and wait for its answer.
    pub async fn exchange(
        addr: SocketAddr,
        ca_pem: &str,
        block: &[u8],
        data: &[Vec<u8>],
    ) -> Outcome {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("api.test").unwrap();
        let mut tls = crate::common::ws::tls_connector_alpn(ca_pem, &[b"h2"])
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(frame(SETTINGS, 0, 0, &[]));
        let flags = END_HEADERS | if data.is_empty() { END_STREAM } else { 0 };
        out.extend(frame(HEADERS, flags, 1, block));
        for (i, d) in data.iter().enumerate() {
            let end = if i + 1 == data.len() { END_STREAM } else { 0 };
            out.extend(frame(DATA, end, 1, d));
        }
        // The edge may answer and close before reading it all.
        let _ = tls.write_all(&out).await;
        let mut buf = Vec::new();
        let read = async {
            loop {
                while buf.len() >= 9 {
                    let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                    if buf.len() < 9 + len {
                        break;
                    }
                    let (kind, flags) = (buf[3], buf[4]);
                    let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & !(1 << 31);
                    let payload: Vec<u8> = buf.drain(..9 + len).skip(9).collect();
                    match kind {
                        SETTINGS if flags & 1 == 0 => {
                            let _ = tls.write_all(&frame(SETTINGS, 1, 0, &[])).await;
                        }
                        HEADERS if stream == 1 => {
                            let mut p = &payload[..];
                            if flags & PADDED != 0 {
                                let pad = usize::from(p[0]);
                                p = &p[1..p.len() - pad];
                            }
                            if flags & PRIORITY != 0 {
                                p = &p[5..];
                            }
                            let s = status(p).expect("a :status the test can read");
                            return Outcome::Status(s);
                        }
                        RST_STREAM if stream == 1 => {
                            let code = payload[..4].try_into().map(u32::from_be_bytes).unwrap();
                            return Outcome::Reset(code);
                        }
                        GOAWAY => {
                            let last =
                                u32::from_be_bytes(payload[..4].try_into().unwrap()) & !(1 << 31);
                            let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                            if code != 0 || last == 0 {
                                return Outcome::GoAway(code);
                            }
                        }
                        _ => {}
                    }
                }
                let mut chunk = [0u8; 16 * 1024];
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return Outcome::Closed,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("an answer, a reset or a close in time")
    }
}

use h2raw::Outcome::{self, GoAway, Reset, Status};
use h2raw::PROTOCOL_ERROR;

/// One HTTP/2 request: its header fields, its DATA frames, what it must get.
struct H2Case {
    name: &'static str,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    data: Vec<Vec<u8>>,
    outcome: Outcome,
}

/// A POST of `BODY` to `/graphql?smug=<case>` with credentials, `change` applied to its
/// fields.
fn h2_case(
    name: &'static str,
    outcome: Outcome,
    change: impl FnOnce(&mut Vec<(Vec<u8>, Vec<u8>)>, &str),
) -> H2Case {
    let marker = format!("smug=h2-{}", slug(name));
    let mut fields: Vec<(Vec<u8>, Vec<u8>)> = [
        (":method", "POST".to_string()),
        (":scheme", "https".to_string()),
        (":authority", "api.test".to_string()),
        (":path", format!("/graphql?{marker}")),
        ("content-type", "application/json".to_string()),
        ("x-api-key", KEY.to_string()),
        ("content-length", BODY.len().to_string()),
    ]
    .into_iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.into_bytes()))
    .collect();
    change(&mut fields, &marker);
    H2Case {
        name,
        fields,
        data: vec![BODY.as_bytes().to_vec()],
        outcome,
    }
}

fn set(fields: &mut [(Vec<u8>, Vec<u8>)], name: &str, value: &[u8]) {
    let field = fields
        .iter_mut()
        .find(|(n, _)| n == name.as_bytes())
        .expect("a field to change");
    field.1 = value.to_vec();
}

fn add(fields: &mut Vec<(Vec<u8>, Vec<u8>)>, name: &[u8], value: &[u8]) {
    fields.push((name.to_vec(), value.to_vec()));
}

fn remove(fields: &mut Vec<(Vec<u8>, Vec<u8>)>, name: &str) {
    fields.retain(|(n, _)| n != name.as_bytes());
}

fn h2_cases() -> Vec<H2Case> {
    let injected = |marker: &str| {
        format!(
            "a\r\n\r\nPOST /graphql?{marker}-inner HTTP/1.1\r\nHost: localhost\r\n\
             x-api-key: {KEY}\r\nContent-Length: {}\r\n\r\n{BODY}",
            BODY.len()
        )
    };
    let mut cases = vec![
        h2_case(
            "content-length shorter than the data",
            Reset(PROTOCOL_ERROR),
            |f, _| set(f, "content-length", b"5"),
        ),
        h2_case(
            "content-length longer than the data",
            Reset(PROTOCOL_ERROR),
            |f, _| set(f, "content-length", b"30"),
        ),
        h2_case(
            "content-length zero with data",
            Reset(PROTOCOL_ERROR),
            |f, _| set(f, "content-length", b"0"),
        ),
        h2_case(
            "content-length twice, differing",
            Reset(PROTOCOL_ERROR),
            |f, _| add(f, b"content-length", b"5"),
        ),
        h2_case(
            "content-length not a number",
            Reset(PROTOCOL_ERROR),
            |f, _| set(f, "content-length", b"21, 5"),
        ),
        h2_case(
            "CRLF in a value, a header",
            GoAway(PROTOCOL_ERROR),
            |f, _| add(f, b"x-inject", b"a\r\nTransfer-Encoding: chunked"),
        ),
        h2_case(
            "CRLF in a value, a request",
            GoAway(PROTOCOL_ERROR),
            |f, m| add(f, b"x-inject", injected(m).as_bytes()),
        ),
        h2_case("LF in a value", GoAway(PROTOCOL_ERROR), |f, _| {
            add(f, b"x-inject", b"a\nx-api-key: b")
        }),
        h2_case("CR in a value", GoAway(PROTOCOL_ERROR), |f, _| {
            add(f, b"x-inject", b"a\rb")
        }),
        h2_case("NUL in a value", GoAway(PROTOCOL_ERROR), |f, _| {
            add(f, b"x-inject", b"a\0b")
        }),
        h2_case("CRLF in a name", GoAway(PROTOCOL_ERROR), |f, _| {
            add(f, b"x-a\r\nx-b", b"c")
        }),
        h2_case("CRLF in :path", Reset(PROTOCOL_ERROR), |f, m| {
            let path =
                format!("/graphql?{m} HTTP/1.1\r\nHost: localhost\r\n\r\nGET /graphql?{m}-2");
            set(f, ":path", path.as_bytes())
        }),
        h2_case("space in :path", Reset(PROTOCOL_ERROR), |f, m| {
            set(f, ":path", format!("/graphql?{m} HTTP/1.1").as_bytes())
        }),
        h2_case("CRLF in :method", GoAway(PROTOCOL_ERROR), |f, m| {
            let method = format!("GET /graphql?{m}-2 HTTP/1.1\r\nHost: localhost\r\n\r\nPOST");
            set(f, ":method", method.as_bytes())
        }),
        h2_case("connection header", Reset(PROTOCOL_ERROR), |f, _| {
            add(f, b"connection", b"keep-alive")
        }),
        h2_case("keep-alive header", Reset(PROTOCOL_ERROR), |f, _| {
            add(f, b"keep-alive", b"timeout=5")
        }),
        h2_case("proxy-connection header", Reset(PROTOCOL_ERROR), |f, _| {
            add(f, b"proxy-connection", b"keep-alive")
        }),
        h2_case("upgrade header", Reset(PROTOCOL_ERROR), |f, _| {
            add(f, b"upgrade", b"websocket")
        }),
        h2_case("te gzip", Reset(PROTOCOL_ERROR), |f, _| {
            add(f, b"te", b"gzip")
        }),
        h2_case("te trailers and gzip", Reset(PROTOCOL_ERROR), |f, _| {
            add(f, b"te", b"trailers, gzip")
        }),
        h2_case("duplicate :path", Reset(PROTOCOL_ERROR), |f, m| {
            add(f, b":path", format!("/other?{m}").as_bytes())
        }),
        h2_case(
            ":path without a leading slash",
            Reset(PROTOCOL_ERROR),
            |f, m| set(f, ":path", format!("graphql?{m}").as_bytes()),
        ),
        h2_case("empty :path", Reset(PROTOCOL_ERROR), |f, _| {
            set(f, ":path", b"")
        }),
        h2_case(":authority naming another host", Status(421), |f, _| {
            set(f, ":authority", b"other.test")
        }),
        h2_case(
            ":authority naming another host, host the site",
            Status(400),
            |f, _| {
                set(f, ":authority", b"other.test");
                add(f, b"host", b"api.test")
            },
        ),
        h2_case("host naming another host", Status(400), |f, _| {
            add(f, b"host", b"other.test")
        }),
        h2_case("missing :method", Reset(PROTOCOL_ERROR), |f, _| {
            remove(f, ":method")
        }),
        h2_case("missing :path", Reset(PROTOCOL_ERROR), |f, _| {
            remove(f, ":path")
        }),
        h2_case("missing :scheme", Reset(PROTOCOL_ERROR), |f, _| {
            remove(f, ":scheme")
        }),
        h2_case("upper-case name", GoAway(PROTOCOL_ERROR), |f, _| {
            add(f, b"X-Upper", b"a")
        }),
        h2_case(
            "upper-case credential name",
            GoAway(PROTOCOL_ERROR),
            |f, _| {
                remove(f, "x-api-key");
                add(f, b"X-Api-Key", KEY.as_bytes())
            },
        ),
        h2_case(
            "pseudo-header after a regular one",
            Reset(PROTOCOL_ERROR),
            |f, _| {
                let path = f.remove(3);
                f.push(path)
            },
        ),
        h2_case("unknown pseudo-header", GoAway(PROTOCOL_ERROR), |f, _| {
            add(f, b":smuggle", b"1")
        }),
    ];
    // The downgrade classic: chunked framing in an HTTP/2 body, for an HTTP/1 upstream that
    // would read it.
    let mut te = h2_case(
        "transfer-encoding chunked",
        Reset(PROTOCOL_ERROR),
        |f, _| {
            remove(f, "content-length");
            add(f, b"transfer-encoding", b"chunked")
        },
    );
    te.data = vec![format!(
        "0\r\n\r\n{}",
        smuggled("h2-transfer-encoding-chunked-inner")
    )
    .into_bytes()];
    cases.push(te);
    // Two DATA frames, content-length matching the first.
    let mut split = h2_case(
        "content-length matching the first of two frames",
        Reset(PROTOCOL_ERROR),
        |_, _| {},
    );
    split
        .data
        .push(smuggled("h2-two-frames-inner").into_bytes());
    cases.push(split);
    cases
}

#[tokio::test]
async fn h2_requests_an_http1_upstream_would_misread_never_reach_it() {
    let (up, site) = api_key_site(KEY).await;
    let ca = site.certs.ca_pem();
    let cases = h2_cases();
    let mut failures = Vec::new();
    for case in &cases {
        let block = h2raw::block(&case.fields);
        let got = h2raw::exchange(site.edge.https, &ca, &block, &case.data).await;
        let leaked: Vec<String> = seen(&up)
            .into_iter()
            .filter(|u| u.contains("smug="))
            .collect();
        if got != case.outcome || !leaked.is_empty() {
            failures.push(format!(
                "{}: got {got:?}, expected {:?}; the upstream saw {leaked:?}\n  fields {:?}",
                case.name,
                case.outcome,
                case.fields
                    .iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v)))
                    .collect::<Vec<_>>()
            ));
            up.recorder.clear();
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // None of them was forwarded at all.
    assert_eq!(seen(&up), Vec::<String>::new());
}

/// `te: trailers` is the one TE an HTTP/2 request may carry: forwarded.
#[tokio::test]
async fn h2_te_trailers_is_allowed() {
    let (up, site) = api_key_site(KEY).await;
    let case = h2_case("te trailers", Status(200), |f, _| {
        set(f, ":path", b"/graphql?h2ok=te-trailers");
        add(f, b"te", b"trailers")
    });
    let block = h2raw::block(&case.fields);
    let got = h2raw::exchange(site.edge.https, &site.certs.ca_pem(), &block, &case.data).await;
    assert_eq!(got, case.outcome);
    let forwarded = up
        .request_to("/graphql?h2ok=te-trailers")
        .expect("forwarded");
    assert_eq!(forwarded.body.as_ref(), BODY.as_bytes());
}
