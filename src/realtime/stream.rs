//! The WebSocket (RFC 6455) byte streams of a proxied realtime connection: the client → upstream
//! direction decoded incrementally, each text message judged before it is forwarded, within size
//! caps; the upstream → client direction only counted.

use bytes::BytesMut;

use super::frame::{
    apply_mask, encode, header_len, Close, CloseCode, HeadReader, Header, BINARY, CLOSE,
    CONTINUATION, MAX_CONTROL, MAX_HEAD, PING, PONG, TEXT,
};

/// A text message buffer grown beyond this is freed once its message is done, not kept.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Size caps for the client → upstream direction, in payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame payload accepted.
    pub max_frame: usize,
    /// The largest message payload accepted, all its fragments together.
    pub max_message: usize,
}

/// What to do with a complete text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward its frames unchanged.
    Forward,
    /// Forward one masked text frame with this payload instead.
    Replace(String),
    /// Forward nothing for this message (the caller answers the client itself).
    Drop,
    /// Close the connection with this code and reason.
    Close(CloseCode, &'static str),
}

/// Data messages completed by one `feed`, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Text and binary messages whose last frame was read.
    pub messages: u64,
    /// Their payload bytes, as received (before any `Replace`).
    pub bytes: u64,
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Frame {
    head: Header,
    len: usize,
    left: usize,
    /// Part of a text message: unmasked into the message buffer until its verdict.
    buffered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// Where `ClientStream::advance` stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The input is used up (or the client has closed).
    Done,
    /// A text message is complete and waits for `judge`.
    Text,
}

/// The client → upstream direction of one connection.
///
/// Text messages are buffered (unmasked, with their frame headers) until complete, then judged;
/// binary and control frames pass through as they arrive. Memory per connection stays under
/// `max_message` plus one frame header: the headers of a buffered message count too, so a flood
/// of tiny fragments is refused like an oversized message.
#[derive(Debug, Clone)]
pub struct ClientStream {
    limits: Limits,
    head: HeadReader,
    frame: Option<Frame>,
    /// The data message in progress, and its payload bytes so far (as its headers declared).
    message: Option<Kind>,
    size: usize,
    /// The text message in progress: its unmasked payload, and its frame headers as received.
    text: Vec<u8>,
    heads: Vec<u8>,
    /// The text message is complete and waits for `judge`.
    pending: bool,
    /// The client sent Close: whatever follows is dropped.
    closed: bool,
    failed: Option<Close>,
}

impl ClientStream {
    pub fn new(limits: Limits) -> Self {
        ClientStream {
            limits,
            head: HeadReader::default(),
            frame: None,
            message: None,
            size: 0,
            text: Vec::new(),
            heads: Vec::new(),
            pending: false,
            closed: false,
            failed: None,
        }
    }

    /// Whether the client has sent a Close frame (forwarded; later bytes are dropped).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Feeds the next chunk from the client and appends what must go upstream to `out`.
    /// `inspect` judges each complete text message. On `Err` the stream is dead (every later
    /// call returns the same error); `out` then holds what was accepted before the fault.
    pub fn feed<F>(
        &mut self,
        chunk: &[u8],
        out: &mut BytesMut,
        mut inspect: F,
    ) -> Result<Stats, Close>
    where
        F: FnMut(&str) -> Verdict,
    {
        let mut stats = Stats::default();
        let mut rest = chunk;
        while let Advance::Text = self.advance(&mut rest, out, &mut stats)? {
            let verdict = inspect(self.pending_text().unwrap_or_default());
            self.judge(verdict, out)?;
        }
        Ok(stats)
    }

    /// `feed` in steps, for a caller whose verdicts must wait (an `.await`): consumes `rest`
    /// up to the end of the next complete text message and stops there. After `Advance::Text`,
    /// read the message with `pending_text`, then `judge` it before advancing again.
    pub fn advance(
        &mut self,
        rest: &mut &[u8],
        out: &mut BytesMut,
        stats: &mut Stats,
    ) -> Result<Advance, Close> {
        if let Some(close) = self.failed {
            return Err(close);
        }
        if self.pending {
            return Ok(Advance::Text);
        }
        let step = self.run(rest, out, stats);
        self.fail_on(step)
    }

    /// The complete text message waiting for `judge`, if any.
    pub fn pending_text(&self) -> Option<&str> {
        self.pending
            .then(|| std::str::from_utf8(&self.text).ok())
            .flatten()
    }

    /// Applies the verdict on the pending text message: its frames forwarded unchanged, one
    /// replacement frame, nothing, or `Err` to close.
    pub fn judge(&mut self, verdict: Verdict, out: &mut BytesMut) -> Result<(), Close> {
        if let Some(close) = self.failed {
            return Err(close);
        }
        if !self.pending {
            return Ok(());
        }
        self.pending = false;
        let done = self.apply(verdict, out);
        self.fail_on(done)
    }

    /// Remembers a fault: the stream is dead, its buffer freed.
    fn fail_on<T>(&mut self, result: Result<T, Close>) -> Result<T, Close> {
        if let Err(close) = result {
            self.failed = Some(close);
            self.release();
        }
        result
    }

    fn run(
        &mut self,
        rest: &mut &[u8],
        out: &mut BytesMut,
        stats: &mut Stats,
    ) -> Result<Advance, Close> {
        while !rest.is_empty() && !self.closed {
            let mut frame = match self.frame.take() {
                Some(frame) => frame,
                None => {
                    let (used, head) = self.head.read(rest);
                    *rest = &rest[used..];
                    match head {
                        Some(head) => self.start_frame(head, out)?,
                        None => continue,
                    }
                }
            };
            let n = frame.left.min(rest.len());
            let (part, tail) = rest.split_at(n);
            *rest = tail;
            if frame.buffered {
                let start = self.text.len();
                self.text.extend_from_slice(part);
                apply_mask(
                    &mut self.text[start..],
                    frame.head.key,
                    frame.len - frame.left,
                );
            } else {
                out.extend_from_slice(part);
            }
            frame.left -= n;
            if frame.left > 0 {
                self.frame = Some(frame);
            } else if self.end_frame(&frame.head, stats)? {
                return Ok(Advance::Text);
            }
        }
        Ok(Advance::Done)
    }

    /// Checks a header as soon as it is read, before any of its payload; forwards it unless its
    /// frame belongs to a text message.
    fn start_frame(&mut self, head: Header, out: &mut BytesMut) -> Result<Frame, Close> {
        if head.rsv != 0 {
            return Err(Close::protocol(
                "reserved bits set without a negotiated extension",
            ));
        }
        if !head.masked {
            return Err(Close::protocol("client frame not masked"));
        }
        match head.opcode {
            CONTINUATION | TEXT | BINARY => {}
            CLOSE | PING | PONG if !head.fin => {
                return Err(Close::protocol("fragmented control frame"));
            }
            CLOSE | PING | PONG if head.len > MAX_CONTROL => {
                return Err(Close::protocol("control frame longer than 125 bytes"));
            }
            CLOSE | PING | PONG => {}
            _ => return Err(Close::protocol("unknown opcode")),
        }
        if head.len >> 63 != 0 {
            return Err(Close::protocol(
                "frame length with the most significant bit set",
            ));
        }
        let len = usize::try_from(head.len)
            .ok()
            .filter(|&len| len <= self.limits.max_frame)
            .ok_or(Close::too_big("frame too large"))?;
        let buffered = !head.is_control() && self.start_data(&head, len)?;
        if !buffered {
            out.extend_from_slice(head.raw());
        }
        Ok(Frame {
            head,
            len,
            left: len,
            buffered,
        })
    }

    /// Accounts a data frame to its message: whether its payload is to be buffered.
    fn start_data(&mut self, head: &Header, len: usize) -> Result<bool, Close> {
        match (head.opcode, self.message) {
            (CONTINUATION, None) => {
                return Err(Close::protocol("continuation frame without a message"));
            }
            (CONTINUATION, Some(_)) => {}
            (_, Some(_)) => {
                return Err(Close::protocol("new message inside a fragmented message"));
            }
            (opcode, None) => {
                self.message = Some(if opcode == TEXT {
                    Kind::Text
                } else {
                    Kind::Binary
                });
                self.size = 0;
            }
        }
        self.size = self
            .size
            .checked_add(len)
            .filter(|&size| size <= self.limits.max_message)
            .ok_or(Close::too_big("message too large"))?;
        if self.message != Some(Kind::Text) {
            return Ok(false);
        }
        self.heads.extend_from_slice(head.raw());
        let max = self.limits.max_message;
        if self.size + self.heads.len() > max.saturating_add(MAX_HEAD) {
            return Err(Close::too_big("message too large"));
        }
        // Grow by doubling, but never past the cap.
        if self.size > self.text.capacity() {
            let target = self
                .size
                .max(self.text.capacity().saturating_mul(2))
                .min(max);
            self.text.reserve_exact(target - self.text.len());
        }
        Ok(true)
    }

    /// Accounts a frame read to its end: whether it completed a text message.
    fn end_frame(&mut self, head: &Header, stats: &mut Stats) -> Result<bool, Close> {
        if head.opcode == CLOSE {
            self.closed = true;
            self.release();
        }
        if head.is_control() || !head.fin {
            return Ok(false);
        }
        stats.messages += 1;
        stats.bytes += self.size as u64;
        if self.message.take() != Some(Kind::Text) {
            return Ok(false);
        }
        if std::str::from_utf8(&self.text).is_err() {
            return Err(Close {
                code: Close::INVALID_PAYLOAD,
                reason: "text message not valid UTF-8",
            });
        }
        self.pending = true;
        Ok(true)
    }

    /// Forwards the pending text message's frames, or what replaces them.
    fn apply(&mut self, verdict: Verdict, out: &mut BytesMut) -> Result<(), Close> {
        match verdict {
            Verdict::Forward => {
                out.reserve(self.heads.len() + self.text.len());
                let (mut heads, mut text) = (&self.heads[..], &self.text[..]);
                while !heads.is_empty() {
                    let (raw, rest) = heads.split_at(header_len(heads[1]));
                    let head = Header::parse(raw);
                    let (payload, more) = text.split_at(head.len as usize);
                    out.extend_from_slice(raw);
                    let start = out.len();
                    out.extend_from_slice(payload);
                    apply_mask(&mut out[start..], head.key, 0);
                    (heads, text) = (rest, more);
                }
            }
            Verdict::Replace(text) => encode(out, TEXT, text.as_bytes(), true),
            Verdict::Drop => {}
            Verdict::Close(code, reason) => return Err(Close { code, reason }),
        }
        self.release();
        Ok(())
    }

    /// Forgets the buffered text message, and frees its buffer if it grew large.
    fn release(&mut self) {
        if self.text.capacity() > KEEP_CAPACITY {
            self.text = Vec::new();
        } else {
            self.text.clear();
        }
        self.heads.clear();
    }
}

/// The upstream → client direction of one connection: counts complete data messages, skipping
/// through payloads without buffering or changing anything.
#[derive(Debug, Default, Clone)]
pub struct ServerStream {
    head: HeadReader,
    /// Payload bytes of the current frame still to skip, once its header is read.
    left: Option<u64>,
    fin: bool,
    data: bool,
    size: u64,
}

impl ServerStream {
    pub fn new() -> Self {
        ServerStream::default()
    }

    /// Counts the data messages that `chunk` completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Stats {
        let mut stats = Stats::default();
        let mut rest = chunk;
        while !rest.is_empty() {
            let left = match self.left {
                Some(left) => left,
                None => {
                    let (used, head) = self.head.read(rest);
                    rest = &rest[used..];
                    let Some(head) = head else { continue };
                    self.fin = head.fin;
                    self.data = !head.is_control();
                    if self.data {
                        self.size = self.size.saturating_add(head.len);
                    }
                    head.len
                }
            };
            let n = left.min(rest.len() as u64);
            rest = &rest[n as usize..];
            if left == n {
                self.left = None;
                if self.data && self.fin {
                    stats.messages += 1;
                    stats.bytes += std::mem::take(&mut self.size);
                }
            } else {
                self.left = Some(left - n);
            }
        }
        stats
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::frame::{close_frame, text_frame};
    use proptest::prelude::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const LIMITS: Limits = Limits {
        max_frame: 1 << 20,
        max_message: 1 << 20,
    };

    /// One frame with first byte `b0`, the shortest length encoding, masked with `key` if any.
    fn frame(b0: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![b0];
        let mask_bit = if key.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                f.push(mask_bit | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(mask_bit | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mut body = payload.to_vec();
        if let Some(key) = key {
            f.extend_from_slice(&key);
            body.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= key[i % 4]);
        }
        f.extend_from_slice(&body);
        f
    }

    /// A masked client frame.
    fn client(b0: u8, payload: &[u8]) -> Vec<u8> {
        frame(b0, payload, Some(KEY))
    }

    /// Splits a stream into frames: (first byte, whether masked, unmasked payload).
    fn decode(mut b: &[u8]) -> Vec<(u8, bool, Vec<u8>)> {
        let mut frames = Vec::new();
        while !b.is_empty() {
            let mut reader = HeadReader::default();
            let (used, head) = reader.read(b);
            let head = head.expect("a whole header");
            let len = head.len as usize;
            let mut payload = b[used..used + len].to_vec();
            apply_mask(&mut payload, head.key, 0);
            frames.push((b[0], head.masked, payload));
            b = &b[used + len..];
        }
        frames
    }

    /// Feeds `chunks` in order, forwarding every message: the output, the text messages seen
    /// and the summed stats.
    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<String>, Stats) {
        let mut stream = ClientStream::new(LIMITS);
        let (mut out, mut seen, mut total) = (BytesMut::new(), Vec::new(), Stats::default());
        for chunk in chunks {
            let stats = stream
                .feed(chunk, &mut out, |t| {
                    seen.push(t.to_owned());
                    Verdict::Forward
                })
                .expect("a valid stream");
            total.messages += stats.messages;
            total.bytes += stats.bytes;
        }
        (out.to_vec(), seen, total)
    }

    /// Feeds one chunk to a fresh stream and returns the error.
    fn refused(limits: Limits, bytes: &[u8]) -> (Close, Vec<u8>) {
        let mut stream = ClientStream::new(limits);
        let mut out = BytesMut::new();
        let err = stream
            .feed(bytes, &mut out, |_| Verdict::Forward)
            .expect_err("refused");
        (err, out.to_vec())
    }

    /// Fragmented text with a ping inside, 16-bit lengths, binary, pong, empty text: the input,
    /// and the output when every message is forwarded (the ping overtakes the fragments).
    fn mixed_stream() -> (Vec<u8>, Vec<u8>) {
        let long = "x".repeat(300);
        let mut frames = vec![
            client(0x81, br#"{"type":"connection_init"}"#),
            client(0x01, b"{\"type\":\"start\","),
            client(0x89, b"ping"),
            client(0x00, b"\"id\":\"1\","),
            client(0x80, b"\"payload\":{}}"),
            client(0x81, long.as_bytes()),
            client(0x02, &[0, 1, 2, 3]),
            client(0x80, &[4, 5]),
            client(0x8A, b""),
            client(0x81, b""),
        ];
        let input = frames.concat();
        frames.swap(1, 2);
        (input, frames.concat())
    }

    fn mixed_seen() -> Vec<String> {
        vec![
            r#"{"type":"connection_init"}"#.to_owned(),
            r#"{"type":"start","id":"1","payload":{}}"#.to_owned(),
            "x".repeat(300),
            String::new(),
        ]
    }

    #[test]
    fn single_text_frame_forwarded_byte_identical() {
        let f = client(0x81, br#"{"type":"ka"}"#);
        let (out, seen, stats) = run(&[&f]);
        assert_eq!(out, f);
        assert_eq!(seen, [r#"{"type":"ka"}"#]);
        assert_eq!((stats.messages, stats.bytes), (1, 13));
    }

    #[test]
    fn many_frames_in_one_chunk() {
        let (input, expected) = mixed_stream();
        let (out, seen, stats) = run(&[&input]);
        assert_eq!(out, expected);
        assert_eq!(seen, mixed_seen());
        assert_eq!(stats.messages, 5);
        assert_eq!(stats.bytes, 26 + 38 + 300 + 6);
    }

    #[test]
    fn every_split_point_gives_the_same_output() {
        let (input, _) = mixed_stream();
        let whole = run(&[&input]);
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(run(&[a, b]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes), whole);
    }

    proptest! {
        #[test]
        fn random_chunks_give_the_same_output(
            messages in proptest::collection::vec((".{0,200}", 1usize..4), 1..6),
            sizes in proptest::collection::vec(1usize..64, 1..40),
        ) {
            let (mut input, mut expected) = (Vec::new(), Vec::new());
            for (text, parts) in &messages {
                let bytes = text.as_bytes();
                let step = bytes.len().div_ceil(*parts).max(1);
                let pieces: Vec<&[u8]> = if bytes.is_empty() { vec![b""] } else { bytes.chunks(step).collect() };
                let mut held = Vec::new();
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = if i == 0 { TEXT } else { CONTINUATION };
                    let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
                    let fragment = client(fin | opcode, piece);
                    input.extend(&fragment);
                    held.extend(fragment);
                    let ping = client(0x89, b"p");
                    input.extend(&ping);
                    if fin != 0 {
                        expected.append(&mut held);
                    }
                    expected.extend(ping);
                }
            }
            let mut chunks = Vec::new();
            let (mut rest, mut i) = (&input[..], 0);
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(sizes[i % sizes.len()].min(rest.len()));
                chunks.push(chunk);
                rest = tail;
                i += 1;
            }
            let (out, seen, stats) = run(&chunks);
            prop_assert_eq!(&out, &expected);
            let texts: Vec<String> = messages.iter().map(|(t, _)| t.clone()).collect();
            prop_assert_eq!(seen, texts);
            prop_assert_eq!(stats.messages, messages.len() as u64);
        }
    }

    #[test]
    fn ping_inside_a_fragmented_message_goes_first() {
        let parts = [
            client(0x01, b"{\"a\":"),
            client(0x00, b"1,\"b\""),
            client(0x80, b":2}"),
        ];
        let ping = client(0x89, b"hi");
        let mut stream = ClientStream::new(LIMITS);
        let mut out = BytesMut::new();
        let mut seen = Vec::new();
        for chunk in [&parts[0], &ping, &parts[1], &parts[2]] {
            stream
                .feed(chunk, &mut out, |t| {
                    seen.push(t.to_owned());
                    Verdict::Forward
                })
                .unwrap();
            if chunk == &parts[1] {
                assert_eq!(&out[..], &ping[..], "fragments held until the verdict");
            }
        }
        assert_eq!(out.to_vec(), [ping.clone(), parts.concat()].concat());
        assert_eq!(seen, [r#"{"a":1,"b":2}"#]);
    }

    #[test]
    fn replace_sends_one_masked_frame() {
        let input = [client(0x01, b"{\"old\":"), client(0x80, b"1}")].concat();
        let mut stream = ClientStream::new(LIMITS);
        let mut out = BytesMut::new();
        let new = |_: &str| Verdict::Replace(r#"{"new":2}"#.into());
        let stats = stream.feed(&input, &mut out, new).unwrap();
        assert_eq!(decode(&out), [(0x81, true, br#"{"new":2}"#.to_vec())]);
        assert_eq!((stats.messages, stats.bytes), (1, 9));
    }

    /// Feeds `chunks` replacing each text message by its upper case: the frames sent, unmasked.
    fn run_upper(chunks: &[&[u8]]) -> Vec<(u8, bool, Vec<u8>)> {
        let mut stream = ClientStream::new(LIMITS);
        let mut out = BytesMut::new();
        for chunk in chunks {
            let upper = |t: &str| Verdict::Replace(t.to_uppercase());
            stream.feed(chunk, &mut out, upper).unwrap();
        }
        decode(&out)
    }

    #[test]
    fn replace_is_the_same_at_every_split_point() {
        let (input, _) = mixed_stream();
        let whole = run_upper(&[&input]);
        assert_eq!(whole.len(), 8, "4 texts, ping, 2 binary fragments, pong");
        assert_eq!(
            whole[2],
            (
                0x81,
                true,
                br#"{"TYPE":"START","ID":"1","PAYLOAD":{}}"#.to_vec()
            )
        );
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(run_upper(&[a, b]), whole, "split at {at}");
        }
    }

    #[test]
    fn drop_forwards_nothing_of_the_message() {
        let ping = client(0x89, b"");
        let kept = client(0x81, b"{}");
        let input = [
            client(0x01, b"{\"x\":"),
            ping.clone(),
            client(0x80, b"1}"),
            kept.clone(),
        ];
        let mut stream = ClientStream::new(LIMITS);
        let mut out = BytesMut::new();
        let drop_first = |t: &str| {
            if t == "{}" {
                Verdict::Forward
            } else {
                Verdict::Drop
            }
        };
        let stats = stream.feed(&input.concat(), &mut out, drop_first).unwrap();
        assert_eq!(out.to_vec(), [ping, kept].concat());
        assert_eq!((stats.messages, stats.bytes), (2, 9));
    }

    #[test]
    fn a_clone_finds_the_messages_the_original_will() {
        let (input, expected) = mixed_stream();
        let (a, b) = input.split_at(60);
        let mut stream = ClientStream::new(LIMITS);
        let mut out = BytesMut::new();
        stream.feed(a, &mut out, |_| Verdict::Forward).unwrap();
        let mut probe = stream.clone();
        let (mut found, mut judged) = (Vec::new(), Vec::new());
        let mut sink = BytesMut::new();
        probe
            .feed(b, &mut sink, |t| {
                found.push(t.to_owned());
                Verdict::Forward
            })
            .unwrap();
        stream
            .feed(b, &mut out, |t| {
                judged.push(t.to_owned());
                Verdict::Forward
            })
            .unwrap();
        assert_eq!(found, judged);
        assert_eq!(out.to_vec(), expected);
    }

    #[test]
    fn advance_stops_at_each_text_message_for_a_verdict() {
        let (a, ping, b) = (
            client(0x81, b"one"),
            client(0x89, b""),
            client(0x81, b"two"),
        );
        let input = [a.clone(), ping.clone(), b].concat();
        let mut stream = ClientStream::new(LIMITS);
        let (mut out, mut stats) = (BytesMut::new(), Stats::default());
        let mut rest = &input[..];
        let step = stream.advance(&mut rest, &mut out, &mut stats);
        assert_eq!(step, Ok(Advance::Text));
        assert_eq!(
            rest.len(),
            input.len() - a.len(),
            "stopped after the message"
        );
        assert_eq!(stream.pending_text(), Some("one"));
        let again = stream.advance(&mut rest, &mut out, &mut stats);
        assert_eq!(again, Ok(Advance::Text), "no progress before the verdict");
        stream.judge(Verdict::Forward, &mut out).unwrap();
        assert_eq!(stream.pending_text(), None);
        let step = stream.advance(&mut rest, &mut out, &mut stats);
        assert_eq!(
            (step, stream.pending_text()),
            (Ok(Advance::Text), Some("two"))
        );
        stream.judge(Verdict::Drop, &mut out).unwrap();
        let step = stream.advance(&mut rest, &mut out, &mut stats);
        assert_eq!((step, rest.len()), (Ok(Advance::Done), 0));
        assert_eq!(out.to_vec(), [a, ping].concat());
        assert_eq!((stats.messages, stats.bytes), (2, 6));
    }

    #[test]
    fn close_verdict_closes_and_stays_closed() {
        let mut stream = ClientStream::new(LIMITS);
        let mut out = BytesMut::new();
        let deny = |_: &str| Verdict::Close(Close::POLICY_VIOLATION, "unauthorized");
        let err = stream
            .feed(&client(0x81, b"{}"), &mut out, deny)
            .unwrap_err();
        assert_eq!((err.code, err.reason), (1008, "unauthorized"));
        assert!(out.is_empty());
        let again = stream.feed(&client(0x81, b"{}"), &mut out, |_| Verdict::Forward);
        assert_eq!(again, Err(err));
    }

    #[test]
    fn sixteen_and_sixty_four_bit_lengths() {
        let text = "é".repeat(150);
        let blob = vec![7u8; 70_000];
        let input = [client(0x81, text.as_bytes()), client(0x82, &blob)].concat();
        assert_eq!(input[1], 0x80 | 126);
        assert_eq!(input[4 + 4 + 300 + 1], 0x80 | 127);
        let (out, seen, stats) = run(&[&input]);
        assert_eq!(out, input);
        assert_eq!(seen, [text]);
        assert_eq!((stats.messages, stats.bytes), (2, 300 + 70_000));
    }

    #[test]
    fn huge_frame_refused_at_its_header() {
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&(1u64 << 30).to_be_bytes());
        head.extend_from_slice(&KEY);
        let (err, out) = refused(LIMITS, &head);
        assert_eq!(err.code, Close::MESSAGE_TOO_BIG);
        assert!(out.is_empty());
    }

    #[test]
    fn length_with_top_bit_set_is_a_protocol_error() {
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
        head.extend_from_slice(&KEY);
        assert_eq!(refused(LIMITS, &head).0.code, Close::PROTOCOL_ERROR);
    }

    const SMALL: Limits = Limits {
        max_frame: 100,
        max_message: 100,
    };

    #[test]
    fn message_over_the_cap_across_fragments() {
        let text = [client(0x01, &[b'a'; 60]), client(0x80, &[b'b'; 60])].concat();
        let (err, out) = refused(SMALL, &text);
        assert_eq!((err.code, out.len()), (Close::MESSAGE_TOO_BIG, 0));
        let first = client(0x02, &[1; 60]);
        let binary = [first.clone(), client(0x80, &[2; 60])].concat();
        let (err, out) = refused(SMALL, &binary);
        assert_eq!(err.code, Close::MESSAGE_TOO_BIG);
        assert_eq!(out, first, "binary streams until the cap");
    }

    #[test]
    fn empty_fragments_cannot_grow_memory() {
        let mut flood = client(0x01, b"");
        for _ in 0..40 {
            flood.extend(client(0x00, b""));
        }
        assert_eq!(refused(SMALL, &flood).0.code, Close::MESSAGE_TOO_BIG);
    }

    #[test]
    fn protocol_errors() {
        let mut long_ping = vec![0x89, 0x80 | 126, 0, 126];
        long_ping.extend_from_slice(&KEY);
        let nested = [client(0x01, b"a"), client(0x81, b"b")].concat();
        let cases: [(&str, Vec<u8>, CloseCode); 9] = [
            ("unmasked", frame(0x81, b"{}", None), 1002),
            ("rsv1", client(0xC1, b"{}"), 1002),
            ("rsv3", client(0x92, b"{}"), 1002),
            ("opcode 3", client(0x83, b""), 1002),
            ("ping of 126", long_ping, 1002),
            ("fragmented ping", client(0x09, b""), 1002),
            ("lone continuation", client(0x80, b"x"), 1002),
            ("text inside text", nested, 1002),
            ("invalid UTF-8", client(0x81, &[b'a', 0xff, 0xfe]), 1007),
        ];
        for (name, bytes, code) in cases {
            let (err, out) = refused(LIMITS, &bytes);
            assert_eq!(err.code, code, "{name}: {err}");
            assert!(out.is_empty(), "{name}: nothing forwarded");
        }
    }

    #[test]
    fn binary_is_streamed_not_inspected() {
        let f = client(0x82, &[9; 1000]);
        let mut stream = ClientStream::new(LIMITS);
        let mut out = BytesMut::new();
        let never = |_: &str| -> Verdict { panic!("binary inspected") };
        let stats = stream.feed(&f[..500], &mut out, never).unwrap();
        assert_eq!((&out[..], stats.messages), (&f[..500], 0));
        let stats = stream.feed(&f[500..], &mut out, never).unwrap();
        assert_eq!((&out[..], stats.messages), (&f[..], 1));
    }

    #[test]
    fn client_close_is_forwarded_and_ends_the_stream() {
        let close = client(0x88, &[0x03, 0xe8, b'b', b'y', b'e']);
        let input = [close.clone(), client(0x81, b"late")].concat();
        let mut stream = ClientStream::new(LIMITS);
        let mut out = BytesMut::new();
        let never = |_: &str| -> Verdict { panic!("inspected after close") };
        stream.feed(&input, &mut out, never).unwrap();
        assert_eq!(out.to_vec(), close);
        assert!(stream.is_closed());
    }

    #[test]
    fn server_stream_counts_across_splits() {
        let input = [
            frame(0x81, br#"{"type":"connection_ack"}"#, None),
            frame(0x02, &[1; 200], None),
            frame(0x89, b"", None),
            frame(0x80, &[2; 70_000], None),
            frame(0x81, b"", None),
        ]
        .concat();
        let whole = Stats {
            messages: 3,
            bytes: 25 + 70_200,
        };
        assert_eq!(ServerStream::new().feed(&input), whole);
        for at in (0..=input.len()).step_by(7).chain(0..300) {
            let mut server = ServerStream::new();
            let first = server.feed(&input[..at]);
            let second = server.feed(&input[at..]);
            let total = Stats {
                messages: first.messages + second.messages,
                bytes: first.bytes + second.bytes,
            };
            assert_eq!(total, whole, "split at {at}");
        }
        let mut server = ServerStream::new();
        let bytes: u64 = input.chunks(3).map(|c| server.feed(c).bytes).sum();
        assert_eq!(bytes, whole.bytes);
    }

    #[test]
    fn frames_for_the_caller() {
        assert_eq!(
            decode(&text_frame("hi", false)),
            [(0x81, false, b"hi".to_vec())]
        );
        assert_eq!(
            decode(&text_frame("hi", true)),
            [(0x81, true, b"hi".to_vec())]
        );
        let close = close_frame(Close::MESSAGE_TOO_BIG, &"é".repeat(100), true);
        let [(b0, masked, payload)] = &decode(&close)[..] else {
            panic!("one frame")
        };
        assert_eq!((*b0, *masked, payload.len()), (0x88, true, 2 + 122));
        assert_eq!(payload[..2], 1009u16.to_be_bytes());
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
