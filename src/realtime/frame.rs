//! WebSocket frames (RFC 6455 §5): headers read from the wire (split across chunks or not),
//! frames written, close codes, masking.

use std::hash::BuildHasher;

use bytes::{BufMut, Bytes, BytesMut};
use ring::rand::{SecureRandom, SystemRandom};

/// A close status code (RFC 6455 §7.4).
pub type CloseCode = u16;

/// The longest frame header: 2 bytes, a 64-bit length and a mask key.
pub(super) const MAX_HEAD: usize = 14;
/// The longest control frame payload (RFC 6455 §5.5), and so of a close reason plus its code.
pub(super) const MAX_CONTROL: u64 = 125;
pub(super) const CONTINUATION: u8 = 0x0;
pub(super) const TEXT: u8 = 0x1;
pub(super) const BINARY: u8 = 0x2;
pub(super) const CLOSE: u8 = 0x8;
pub(super) const PING: u8 = 0x9;
pub(super) const PONG: u8 = 0xA;

/// Why the stream must be closed: the caller sends `close_frame(code, reason, false)` to the
/// client and drops the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("websocket closed with {code}: {reason}")]
pub struct Close {
    pub code: CloseCode,
    pub reason: &'static str,
}

impl Close {
    pub const NORMAL: CloseCode = 1000;
    pub const PROTOCOL_ERROR: CloseCode = 1002;
    pub const INVALID_PAYLOAD: CloseCode = 1007;
    pub const POLICY_VIOLATION: CloseCode = 1008;
    pub const MESSAGE_TOO_BIG: CloseCode = 1009;
    pub const INTERNAL_ERROR: CloseCode = 1011;

    pub(super) const fn protocol(reason: &'static str) -> Self {
        Close {
            code: Self::PROTOCOL_ERROR,
            reason,
        }
    }

    pub(super) const fn too_big(reason: &'static str) -> Self {
        Close {
            code: Self::MESSAGE_TOO_BIG,
            reason,
        }
    }
}

/// A frame header as read from the wire, kept byte for byte.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    pub(super) raw: [u8; MAX_HEAD],
    pub(super) raw_len: u8,
    pub(super) fin: bool,
    pub(super) rsv: u8,
    pub(super) opcode: u8,
    pub(super) masked: bool,
    pub(super) len: u64,
    pub(super) key: [u8; 4],
}

impl Header {
    pub(super) fn parse(raw: &[u8]) -> Self {
        let (b0, b1) = (raw[0], raw[1]);
        let (len, at) = match b1 & 0x7f {
            126 => (u64::from(u16::from_be_bytes([raw[2], raw[3]])), 4),
            127 => {
                let mut b = [0; 8];
                b.copy_from_slice(&raw[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        let mut key = [0; 4];
        if b1 & 0x80 != 0 {
            key.copy_from_slice(&raw[at..at + 4]);
        }
        let mut copy = [0; MAX_HEAD];
        copy[..raw.len()].copy_from_slice(raw);
        Header {
            raw: copy,
            raw_len: raw.len() as u8,
            fin: b0 & 0x80 != 0,
            rsv: b0 & 0x70,
            opcode: b0 & 0x0f,
            masked: b1 & 0x80 != 0,
            len,
            key,
        }
    }

    pub(super) fn raw(&self) -> &[u8] {
        &self.raw[..usize::from(self.raw_len)]
    }

    pub(super) fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Collects a frame header split across chunks (at most `MAX_HEAD` bytes).
#[derive(Debug, Default, Clone)]
pub(super) struct HeadReader {
    buf: [u8; MAX_HEAD],
    pub(super) len: usize,
}

impl HeadReader {
    /// Takes header bytes from `input`: how many it used, and the header once complete.
    pub(super) fn read(&mut self, input: &[u8]) -> (usize, Option<Header>) {
        let mut used = 0;
        loop {
            let need = self.need();
            if self.len == need {
                self.len = 0;
                return (used, Some(Header::parse(&self.buf[..need])));
            }
            let n = (need - self.len).min(input.len() - used);
            if n == 0 {
                return (used, None);
            }
            self.buf[self.len..self.len + n].copy_from_slice(&input[used..used + n]);
            self.len += n;
            used += n;
        }
    }

    /// The header's full length, as far as the bytes read so far tell.
    pub(super) fn need(&self) -> usize {
        if self.len < 2 {
            2
        } else {
            header_len(self.buf[1])
        }
    }
}

/// A header's length, told by its second byte.
pub(super) fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// A FIN text frame; client → server frames are `masked` with a fresh random key.
pub fn text_frame(payload: &str, masked: bool) -> Bytes {
    let mut out = BytesMut::new();
    encode(&mut out, TEXT, payload.as_bytes(), masked);
    out.freeze()
}

/// A Close frame; the reason is cut (at a character boundary) to fit a control frame.
pub fn close_frame(code: CloseCode, reason: &str, masked: bool) -> Bytes {
    let mut end = reason.len().min(MAX_CONTROL as usize - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    let mut out = BytesMut::new();
    encode(&mut out, CLOSE, &payload, masked);
    out.freeze()
}

/// Appends one FIN frame, with the shortest length encoding.
pub(super) fn encode(out: &mut BytesMut, opcode: u8, payload: &[u8], masked: bool) {
    out.reserve(MAX_HEAD + payload.len());
    out.put_u8(0x80 | opcode);
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.put_u8(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.put_u8(mask_bit | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(mask_bit | 127);
            out.put_u64(n as u64);
        }
    }
    if !masked {
        out.put_slice(payload);
        return;
    }
    let key = mask_key();
    out.put_slice(&key);
    let start = out.len();
    out.put_slice(payload);
    apply_mask(&mut out[start..], key, 0);
}

/// A fresh, unpredictable mask key (RFC 6455 §5.3).
fn mask_key() -> [u8; 4] {
    let mut key = [0; 4];
    if SystemRandom::new().fill(&mut key).is_err() {
        // Only when the OS has no random source at all; std's per-process random hash keys
        // still keep the key unpredictable to the peer.
        let random = std::collections::hash_map::RandomState::new().hash_one(0u8);
        key.copy_from_slice(&random.to_ne_bytes()[..4]);
    }
    key
}

/// XORs `buf` with `key`, `buf` starting `offset` bytes into the frame payload (masking and
/// unmasking are the same operation).
pub(super) fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}
