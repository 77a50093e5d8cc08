//! Group calls through the SFU, over the wire: a participant's offer (made by str0m, as a
//! browser would) reaches the SFU and its answer comes back; the session limit answers
//! `sfu_unavailable`; leaving the call frees the seat; ICE-TCP on the SFU's port is offered and
//! bounded per address.

use std::sync::Arc;
use std::time::Instant;

use str0m::media::{Direction, MediaKind};
use str0m::Rtc;
use visavis_protocol::{Description, ErrorCode, RoomMsg, SdpKind, ServerMsg};

use super::Server;

/// An offer as sfu.js makes it: microphone, camera and screen, all sendonly.
pub(super) fn browser_offer() -> String {
    let mut rtc = Rtc::builder()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, _) = change.apply().expect("an offer");
    offer.to_sdp_string()
}

#[tokio::test]
async fn an_offer_is_answered_by_the_sfu_and_its_limit_is_sfu_unavailable() {
    let server = Server::start(&["--sfu-max-sessions", "1"]).await;
    let (mut ann, _) = server.joined("team", "Ann").await;
    let (mut bob, _) = server.joined("team", "Bob").await;
    ann.send(RoomMsg::GroupJoin).await;
    let call = next_of!(ann, ServerMsg::GroupCall(call) => call);
    assert_eq!(
        call.media,
        visavis_protocol::GroupMedia::Sfu,
        "the SFU is the default"
    );
    bob.send(RoomMsg::GroupJoin).await;

    let offer = |call_id| RoomMsg::SfuDescription {
        call_id,
        description: Description::new(SdpKind::Offer, &browser_offer()),
    };
    ann.send(offer(call.call_id)).await;
    let (description, tracks) =
        next_of!(ann, ServerMsg::SfuDescription { description, tracks, .. } => (description, tracks));
    let (kind, sdp) = description.decode().expect("a description");
    assert_eq!(kind, SdpKind::Answer);
    assert!(sdp.contains("a=ice-lite"), "{sdp}");
    assert!(
        sdp.contains("typ host"),
        "the SFU's candidate is in the answer: {sdp}"
    );
    assert!(tracks.is_empty(), "nobody else publishes yet");

    // One session is the limit: Bob is told, and nothing else happens.
    bob.send(offer(call.call_id)).await;
    let (code, request) = next_of!(bob, ServerMsg::Error { code, request, .. } => (code, request));
    assert_eq!(code, ErrorCode::SfuUnavailable);
    assert_eq!(request.as_deref(), Some("sfu_description"));

    // Ann leaves the call: her seat at the SFU is Bob's.
    ann.send(RoomMsg::GroupLeave).await;
    bob.send(offer(call.call_id)).await;
    let description = next_of!(bob, ServerMsg::SfuDescription { description, .. } => description);
    assert_eq!(description.decode().map(|(kind, _)| kind), Some(SdpKind::Answer));
}

/// A binding request as a browser's first ICE check sends it (USERNAME `<sfu ufrag>:<ours>`),
/// framed for TCP (RFC 4571).
fn framed_ice_check() -> Vec<u8> {
    let username = b"abcd:wxyz";
    let mut msg = vec![0x00, 0x01, 0, 16, 0x21, 0x12, 0xa4, 0x42];
    msg.extend_from_slice(&[7; 12]);
    msg.extend_from_slice(&[0x00, 0x06, 0, username.len() as u8]);
    msg.extend_from_slice(username);
    msg.extend_from_slice(&[0; 3]);
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    framed
}

/// Whether the server closed `stream` (EOF or reset) within a short while.
async fn closed(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(std::time::Duration::from_millis(500), stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

#[tokio::test]
async fn ice_tcp_is_offered_on_the_sfu_port_and_bounded_per_address() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(&["--sfu-tcp-per-ip", "2"]).await;
    let sfu = server.sfu.expect("an SFU");
    let (mut ann, _) = server.joined("team", "Ann").await;
    ann.send(RoomMsg::GroupJoin).await;
    let call = next_of!(ann, ServerMsg::GroupCall(call) => call);
    ann.send(RoomMsg::SfuDescription {
        call_id: call.call_id,
        description: Description::new(SdpKind::Offer, &browser_offer()),
    })
    .await;
    let description = next_of!(ann, ServerMsg::SfuDescription { description, .. } => description);
    let (_, sdp) = description.decode().expect("a description");
    let tcp_candidate = format!("{} {} typ host tcptype passive", sfu.ip(), sfu.port());
    assert!(
        sdp.contains(&tcp_candidate),
        "a passive TCP candidate on the SFU's port: {sdp}"
    );

    // Two connections from this address speak ICE and stay; a third is closed at once.
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(sfu).await.expect("connect");
        stream.write_all(&framed_ice_check()).await.expect("write");
        kept.push(stream);
    }
    for stream in &mut kept {
        assert!(!closed(stream).await, "within the limit, kept");
    }
    let mut third = tokio::net::TcpStream::connect(sfu).await.expect("connect");
    assert!(closed(&mut third).await, "over --sfu-tcp-per-ip, closed");

    // A slot freed, a connection whose first frame is no ICE check is closed too.
    drop(kept.pop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut junk = tokio::net::TcpStream::connect(sfu).await.expect("connect");
    junk.write_all(&[0, 4, 0x80, 0, 0, 0]).await.expect("write");
    assert!(closed(&mut junk).await, "RTP before any ICE check: closed");
}
