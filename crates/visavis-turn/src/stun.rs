//! STUN message codec (RFC 8489) with the TURN methods and attributes (RFC 8656), and
//! ChannelData framing. Parsing never panics: every length is checked against the buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const HEADER_LEN: usize = 20;
const FINGERPRINT_XOR: u32 = 0x5354_554E;
const INTEGRITY_LEN: usize = 20;

pub type TransactionId = [u8; 12];

/// STUN methods used here.
pub mod method {
    pub const BINDING: u16 = 0x001;
    pub const ALLOCATE: u16 = 0x003;
    pub const REFRESH: u16 = 0x004;
    pub const SEND: u16 = 0x006;
    pub const DATA: u16 = 0x007;
    pub const CREATE_PERMISSION: u16 = 0x008;
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// STUN and TURN attribute types used here.
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("not a STUN message (top bits or magic cookie)")]
    NotStun,
    #[error("length field does not match the datagram")]
    BadLength,
    #[error("attribute runs past the end of the message")]
    BadAttribute,
}

/// A parsed STUN message borrowing its buffer.
#[derive(Debug)]
pub struct Message<'a> {
    pub class: Class,
    pub method: u16,
    pub transaction_id: TransactionId,
    raw: &'a [u8],
    /// (type, offset of the value in `raw`, value length), in order.
    attrs: Vec<(u16, usize, usize)>,
}

/// Whether `buf` starts like a STUN message (as opposed to ChannelData).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] & 0xC0 == 0 && buf[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// The total length of the STUN message or ChannelData frame at the start of a TCP stream,
/// or None if more bytes are needed to tell. ChannelData over TCP is padded to 4 bytes.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 4 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    match buf[0] >> 6 {
        0 => Some(HEADER_LEN + len),
        1 => Some(4 + len.div_ceil(4) * 4),
        _ => Some(usize::MAX), // garbage: the caller closes the stream
    }
}

impl<'a> Message<'a> {
    /// Parses exactly one message occupying all of `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        if buf.len() < HEADER_LEN {
            return Err(StunError::TooShort);
        }
        if !is_stun(buf) {
            return Err(StunError::NotStun);
        }
        let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if length % 4 != 0 || HEADER_LEN + length != buf.len() {
            return Err(StunError::BadLength);
        }
        let ty = u16::from_be_bytes([buf[0], buf[1]]);
        let method = (ty & 0x000F) | ((ty & 0x00E0) >> 1) | ((ty & 0x3E00) >> 2);
        let class = match ty & 0x0110 {
            0x0000 => Class::Request,
            0x0010 => Class::Indication,
            0x0100 => Class::Success,
            _ => Class::Error,
        };
        let mut transaction_id = [0; 12];
        transaction_id.copy_from_slice(&buf[8..20]);
        let mut attrs = Vec::new();
        let mut at = HEADER_LEN;
        while at < buf.len() {
            if at + 4 > buf.len() {
                return Err(StunError::BadAttribute);
            }
            let t = u16::from_be_bytes([buf[at], buf[at + 1]]);
            let len = usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]]));
            let value = at + 4;
            if value + len > buf.len() {
                return Err(StunError::BadAttribute);
            }
            attrs.push((t, value, len));
            at = value + len.div_ceil(4) * 4;
        }
        Ok(Self {
            class,
            method,
            transaction_id,
            raw: buf,
            attrs,
        })
    }

    /// The value of the first attribute of type `t` that is covered by MESSAGE-INTEGRITY
    /// (attributes after it, other than FINGERPRINT, must be ignored).
    pub fn get(&self, t: u16) -> Option<&'a [u8]> {
        for &(ty, at, len) in &self.attrs {
            if ty == t {
                return Some(&self.raw[at..at + len]);
            }
            if ty == attr::MESSAGE_INTEGRITY && t != attr::FINGERPRINT {
                return None;
            }
        }
        None
    }

    pub fn has(&self, t: u16) -> bool {
        self.get(t).is_some()
    }

    /// Attribute types in the comprehension-required range (< 0x8000) not in `known`.
    pub fn unknown_required(&self, known: &[u16]) -> Vec<u16> {
        self.attrs
            .iter()
            .map(|&(t, _, _)| t)
            .filter(|t| *t < 0x8000 && !known.contains(t))
            .collect()
    }

    /// A UTF-8 text attribute (USERNAME, REALM, NONCE, SOFTWARE).
    pub fn text(&self, t: u16) -> Option<&'a str> {
        self.get(t).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn u32(&self, t: u16) -> Option<u32> {
        let v = self.get(t)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    /// An XOR-*-ADDRESS attribute, decoded.
    pub fn xor_address(&self, t: u16) -> Option<SocketAddr> {
        decode_xor_address(self.get(t)?, &self.transaction_id)
    }

    /// Every XOR-PEER-ADDRESS (CreatePermission may carry several).
    pub fn xor_addresses(&self, t: u16) -> Vec<Option<SocketAddr>> {
        self.attrs
            .iter()
            .take_while(|(ty, _, _)| *ty != attr::MESSAGE_INTEGRITY)
            .filter(|(ty, _, _)| *ty == t)
            .map(|&(_, at, len)| decode_xor_address(&self.raw[at..at + len], &self.transaction_id))
            .collect()
    }

    /// The error code of an error response.
    pub fn error_code(&self) -> Option<u16> {
        let v = self.get(attr::ERROR_CODE)?;
        if v.len() < 4 {
            return None;
        }
        Some(u16::from(v[2] & 0x07) * 100 + u16::from(v[3]))
    }

    /// Checks MESSAGE-INTEGRITY (HMAC-SHA1) with `key`. False if absent or wrong.
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let Some(&(_, at, len)) = self.attrs.iter().find(|(t, _, _)| *t == attr::MESSAGE_INTEGRITY) else {
            return false;
        };
        if len != INTEGRITY_LEN {
            return false;
        }
        let start = at - 4; // the attribute header
        let mut mac = hmac_sha1(key);
        mac.update(&self.raw[..2]);
        // The length field as if the message ended right after MESSAGE-INTEGRITY.
        mac.update(&((start + 4 + INTEGRITY_LEN - HEADER_LEN) as u16).to_be_bytes());
        mac.update(&self.raw[4..start]);
        mac.verify_slice(&self.raw[at..at + len]).is_ok()
    }

    /// Checks FINGERPRINT, if present as the last attribute.
    pub fn verify_fingerprint(&self) -> bool {
        match self.attrs.last() {
            Some(&(attr::FINGERPRINT, at, 4)) => {
                let expected =
                    u32::from_be_bytes([self.raw[at], self.raw[at + 1], self.raw[at + 2], self.raw[at + 3]]);
                crc32fast::hash(&self.raw[..at - 4]) ^ FINGERPRINT_XOR == expected
            }
            _ => false,
        }
    }
}

fn hmac_sha1(key: &[u8]) -> Hmac<Sha1> {
    // HMAC accepts keys of any length.
    <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Base64 of HMAC-SHA1(key, data): the TURN REST password.
pub fn hmac_sha1_base64(key: &[u8], data: &[u8]) -> String {
    use base64::Engine as _;
    let mut mac = hmac_sha1(key);
    mac.update(data);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Raw HMAC-SHA1, for stateless nonces.
pub fn hmac_sha1_raw(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let mut mac = hmac_sha1(key);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn decode_xor_address(v: &[u8], tid: &TransactionId) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    match (v[1], v.len()) {
        (0x01, 8) => {
            let ip: [u8; 4] = std::array::from_fn(|i| v[4 + i] ^ cookie[i]);
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (0x02, 20) => {
            let ip: [u8; 16] = std::array::from_fn(|i| v[4 + i] ^ if i < 4 { cookie[i] } else { tid[i - 4] });
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

fn encode_xor_address(addr: SocketAddr, tid: &TransactionId) -> Vec<u8> {
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut v = vec![0];
    match addr.ip() {
        IpAddr::V4(ip) => {
            v.push(0x01);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend(ip.octets().iter().zip(cookie).map(|(a, b)| a ^ b));
        }
        IpAddr::V6(ip) => {
            v.push(0x02);
            v.extend_from_slice(&port.to_be_bytes());
            let mask = cookie.iter().chain(tid.iter());
            v.extend(ip.octets().iter().zip(mask).map(|(a, b)| a ^ b));
        }
    }
    v
}

/// Builds a STUN message attribute by attribute.
#[derive(Debug)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    tid: TransactionId,
}

impl MessageBuilder {
    pub fn new(class: Class, method: u16, tid: TransactionId) -> Self {
        let class_bits = match class {
            Class::Request => 0x0000,
            Class::Indication => 0x0010,
            Class::Success => 0x0100,
            Class::Error => 0x0110,
        };
        let ty = (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | class_bits;
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&ty.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&tid);
        Self { buf, tid }
    }

    fn set_length(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn attr(mut self, t: u16, value: &[u8]) -> Self {
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = value.len().div_ceil(4) * 4 - value.len();
        self.buf.extend(std::iter::repeat_n(0, pad));
        self.set_length();
        self
    }

    pub fn xor_address(self, t: u16, addr: SocketAddr) -> Self {
        let v = encode_xor_address(addr, &self.tid);
        self.attr(t, &v)
    }

    pub fn u32(self, t: u16, value: u32) -> Self {
        self.attr(t, &value.to_be_bytes())
    }

    pub fn error(self, code: u16, reason: &str) -> Self {
        let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        v.extend_from_slice(reason.as_bytes());
        self.attr(attr::ERROR_CODE, &v)
    }

    /// Appends MESSAGE-INTEGRITY computed with `key`.
    pub fn integrity(mut self, key: &[u8]) -> Self {
        let len = (self.buf.len() + 4 + INTEGRITY_LEN - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        let mac = hmac_sha1_raw(key, &[&self.buf]);
        self.attr(attr::MESSAGE_INTEGRITY, &mac)
    }

    /// Appends FINGERPRINT; must come last.
    pub fn fingerprint(mut self) -> Self {
        let len = (self.buf.len() + 8 - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        let crc = crc32fast::hash(&self.buf) ^ FINGERPRINT_XOR;
        self.u32(attr::FINGERPRINT, crc)
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// A ChannelData frame (RFC 8656 §12.4): channel number and application data.
pub fn parse_channel_data(buf: &[u8]) -> Option<(u16, &[u8])> {
    if buf.len() < 4 {
        return None;
    }
    let channel = u16::from_be_bytes([buf[0], buf[1]]);
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if !is_channel_number(channel) || buf.len() < 4 + len {
        return None;
    }
    Some((channel, &buf[4..4 + len]))
}

/// Channel numbers a client may bind. RFC 8656 §12 narrowed the range to 0x4000–0x4FFF, but
/// RFC 5766 clients (coturn's own tools among them) use up to 0x7FFF, as coturn accepts.
pub fn is_channel_number(n: u16) -> bool {
    (0x4000..=0x7FFF).contains(&n)
}

/// Writes a ChannelData frame into `out` (cleared first), padded to 4 bytes when `pad`.
pub fn write_channel_data(out: &mut Vec<u8>, channel: u16, data: &[u8], pad: bool) {
    out.clear();
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    if pad {
        out.extend(std::iter::repeat_n(0, data.len().div_ceil(4) * 4 - data.len()));
    }
}

#[cfg(test)]
mod tests;
