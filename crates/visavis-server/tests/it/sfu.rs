//! Group calls through the SFU, over the wire: a participant's offer (made by str0m, as a
//! browser would) reaches the SFU and its answer comes back; the session limit answers
//! `sfu_unavailable`; leaving the call frees the seat.

use std::sync::Arc;
use std::time::Instant;

use str0m::media::{Direction, MediaKind};
use str0m::Rtc;
use visavis_protocol::{Description, ErrorCode, RoomMsg, SdpKind, ServerMsg};

use super::Server;

/// An offer as sfu.js makes it: microphone, camera and screen, all sendonly.
fn browser_offer() -> String {
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
