//! RFC 5769 test vectors, round trips, and arbitrary input.

use super::*;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 5769 §2.1: short-term credentials; USERNAME padded with spaces, as the RFC has it.
const SAMPLE_REQUEST: &str = "
    00010058 2112a442 b7e7a701 bc34d686 fa87dfae
    80220010 5354554e 20746573 7420636c 69656e74
    00240004 6e0001ff
    80290008 932ff9b1 51263b36
    00060009 6576746a 3a683676 59202020
    00080014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
    80280004 e57a3bcf";
const SAMPLE_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// RFC 5769 §2.2: IPv4 response, mapped address 192.0.2.1:32853.
const SAMPLE_IPV4_RESPONSE: &str = "
    0101003c 2112a442 b7e7a701 bc34d686 fa87dfae
    8022000b 74657374 20766563 746f7220
    00200008 0001a147 e112a643
    00080014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
    80280004 c07d4c96";

/// RFC 5769 §2.3: IPv6 response, mapped address [2001:db8:1234:5678:11:2233:4455:6677]:32853.
const SAMPLE_IPV6_RESPONSE: &str = "
    01010048 2112a442 b7e7a701 bc34d686 fa87dfae
    8022000b 74657374 20766563 746f7220
    00200014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
    00080014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
    80280004 c8fb0b4c";

/// RFC 5769 §2.4: long-term credentials, username "マトリックス", realm "example.org",
/// password "TheMatrIX" (after SASLprep).
const SAMPLE_LONG_TERM: &str = "
    00010060 2112a442 78ad3433 c6ad72c0 29da412e
    00060012 e3839ee3 8388e383 aae38383 e382afe3 82b90000
    0015001c 662f2f34 39396b39 35346436 4f4c3334 6f4c3946 53547679 36347341
    0014000b 6578616d 706c652e 6f726700
    00080014 f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666";

#[test]
fn rfc5769_sample_request() {
    let raw = hex(SAMPLE_REQUEST);
    let msg = Message::parse(&raw).unwrap();
    assert_eq!((msg.class, msg.method), (Class::Request, method::BINDING));
    assert_eq!(msg.text(attr::SOFTWARE), Some("STUN test client"));
    assert_eq!(msg.text(attr::USERNAME), Some("evtj:h6vY"));
    assert!(msg.verify_integrity(SAMPLE_PASSWORD));
    assert!(!msg.verify_integrity(b"wrong password"));
    assert!(msg.verify_fingerprint());
}

#[test]
fn rfc5769_ipv4_and_ipv6_responses() {
    for (vector, addr) in [
        (SAMPLE_IPV4_RESPONSE, "192.0.2.1:32853"),
        (
            SAMPLE_IPV6_RESPONSE,
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ),
    ] {
        let raw = hex(vector);
        let msg = Message::parse(&raw).unwrap();
        assert_eq!((msg.class, msg.method), (Class::Success, method::BINDING));
        assert_eq!(msg.text(attr::SOFTWARE), Some("test vector"));
        let expected: SocketAddr = addr.parse().unwrap();
        assert_eq!(msg.xor_address(attr::XOR_MAPPED_ADDRESS), Some(expected));
        assert!(msg.verify_integrity(SAMPLE_PASSWORD));
        assert!(msg.verify_fingerprint());

        // Our encoder produces the same bytes from the same inputs.
        let built = MessageBuilder::new(Class::Success, method::BINDING, msg.transaction_id)
            .attr(attr::SOFTWARE, b"test vector")
            .xor_address(attr::XOR_MAPPED_ADDRESS, expected)
            .integrity(SAMPLE_PASSWORD)
            .fingerprint()
            .finish();
        // The RFC pads SOFTWARE with a space and we pad with zero (as RFC 8489 asks), so the
        // hashes differ; everything before MESSAGE-INTEGRITY is byte for byte the same.
        let mut rfc = raw.clone();
        rfc[20 + 4 + 11] = 0;
        let mi_at = raw.len() - 8 - 24;
        assert_eq!(built[..mi_at], rfc[..mi_at]);
        let ours = Message::parse(&built).unwrap();
        assert!(ours.verify_integrity(SAMPLE_PASSWORD) && ours.verify_fingerprint());
    }
}

#[test]
fn rfc5769_long_term_credentials() {
    let raw = hex(SAMPLE_LONG_TERM);
    let msg = Message::parse(&raw).unwrap();
    assert_eq!(msg.text(attr::USERNAME), Some("マトリックス"));
    assert_eq!(msg.text(attr::REALM), Some("example.org"));
    assert_eq!(msg.text(attr::NONCE), Some("f//499k954d6OL34oL9FSTvy64sA"));
    let key = crate::auth::long_term_key("マトリックス", "example.org", "TheMatrIX");
    assert!(msg.verify_integrity(&key));
    assert!(!msg.verify_fingerprint(), "this vector has no FINGERPRINT");
}

#[test]
fn tampering_breaks_integrity_and_fingerprint() {
    let mut raw = hex(SAMPLE_REQUEST);
    raw[30] ^= 1; // inside SOFTWARE
    let msg = Message::parse(&raw).unwrap();
    assert!(!msg.verify_integrity(SAMPLE_PASSWORD));
    assert!(!msg.verify_fingerprint());
}

#[test]
fn attributes_after_integrity_are_ignored() {
    let tid = [7; 12];
    let raw = MessageBuilder::new(Class::Request, method::ALLOCATE, tid)
        .attr(attr::USERNAME, b"u")
        .integrity(b"k")
        .attr(attr::REALM, b"sneaky")
        .fingerprint()
        .finish();
    let msg = Message::parse(&raw).unwrap();
    assert_eq!(msg.text(attr::USERNAME), Some("u"));
    assert_eq!(msg.get(attr::REALM), None);
    assert!(msg.verify_fingerprint());
}

#[test]
fn method_and_class_round_trip() {
    for m in [
        method::BINDING,
        method::ALLOCATE,
        method::REFRESH,
        method::SEND,
        method::DATA,
        method::CREATE_PERMISSION,
        method::CHANNEL_BIND,
        0xFFF,
    ] {
        for c in [Class::Request, Class::Indication, Class::Success, Class::Error] {
            let raw = MessageBuilder::new(c, m, [1; 12]).finish();
            let msg = Message::parse(&raw).unwrap();
            assert_eq!((msg.class, msg.method), (c, m));
        }
    }
}

#[test]
fn channel_data_frames() {
    let mut out = Vec::new();
    write_channel_data(&mut out, 0x4001, b"hello", true);
    assert_eq!(out.len(), 12);
    assert_eq!(frame_len(&out), Some(12));
    assert_eq!(parse_channel_data(&out), Some((0x4001, &b"hello"[..])));
    write_channel_data(&mut out, 0x4001, b"hello", false);
    assert_eq!(out.len(), 9);
    assert_eq!(
        parse_channel_data(&[0x80, 0, 0, 0]),
        None,
        "0x8000 is not a channel"
    );
    assert_eq!(
        parse_channel_data(&[0x3f, 0xff, 0, 0]),
        None,
        "0x3FFF is not a channel"
    );
    assert_eq!(parse_channel_data(&[0x40, 0, 0, 9, 1]), None, "truncated");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Arbitrary bytes never panic the parser, and whatever parses reads back consistently.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = frame_len(&bytes);
        let _ = parse_channel_data(&bytes);
        if let Ok(msg) = Message::parse(&bytes) {
            let _ = msg.verify_integrity(b"key");
            let _ = msg.verify_fingerprint();
            let _ = msg.xor_address(attr::XOR_PEER_ADDRESS);
            let _ = msg.xor_addresses(attr::XOR_PEER_ADDRESS);
            let _ = msg.error_code();
            let _ = msg.text(attr::USERNAME);
            let _ = msg.u32(attr::LIFETIME);
            let _ = msg.unknown_required(&[]);
        }
    }

    /// A valid header followed by arbitrary attribute bytes never panics either.
    #[test]
    fn arbitrary_attributes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let len = body.len() / 4 * 4;
        let mut raw = MessageBuilder::new(Class::Request, method::ALLOCATE, [3; 12]).finish();
        raw.extend_from_slice(&body[..len]);
        raw[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        if let Ok(msg) = Message::parse(&raw) {
            let _ = msg.verify_integrity(b"key");
            let _ = msg.xor_addresses(attr::XOR_PEER_ADDRESS);
            let _ = msg.error_code();
        }
    }

    /// Addresses survive XOR encoding.
    #[test]
    fn xor_addresses_round_trip(v4 in any::<[u8; 4]>(), v6 in any::<[u8; 16]>(), port in any::<u16>(), tid in any::<[u8; 12]>()) {
        for ip in [IpAddr::from(v4), IpAddr::from(v6)] {
            let addr = SocketAddr::new(ip, port);
            let raw = MessageBuilder::new(Class::Success, method::ALLOCATE, tid)
                .xor_address(attr::XOR_RELAYED_ADDRESS, addr).finish();
            prop_assert_eq!(Message::parse(&raw).unwrap().xor_address(attr::XOR_RELAYED_ADDRESS), Some(addr));
        }
    }
}
