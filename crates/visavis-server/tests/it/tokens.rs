//! `--access token` end to end: `visavis token` (the real binary) mints tokens and links with
//! the API secret; the server admits their holders only, each as the token says, and refuses
//! forged, expired, wrong-room and revoked tokens with their own codes.

use std::process::Command;

use visavis_protocol::{ErrorCode, RoomMsg, ServerMsg, SessionMsg, PROTOCOL_VERSION};

use super::{Server, TestClient};

pub(super) const KEY: &str = "vv_clinic";
pub(super) const SECRET: &str = "0123456789abcdef0123456789abcdef-clinic";

/// `visavis token` with `args`: the token and the link it printed.
pub(super) fn mint(args: &[&str]) -> (String, String) {
    mint_with(SECRET, args)
}

/// As [`mint`], signed with `secret`.
pub(super) fn mint_with(secret: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_visavis"))
        .arg("token")
        .args(args)
        .args([
            "--api-key",
            KEY,
            "--api-secret",
            secret,
            "--public-origin",
            "https://consult.example.org",
        ])
        .output()
        .expect("run visavis token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let mut lines = text.lines();
    let (token, link) = (lines.next().expect("token"), lines.next().expect("link"));
    (token.to_owned(), link.to_owned())
}

pub(super) async fn join_with(client: &mut TestClient, room: &str, token: &str) {
    client
        .send(SessionMsg::Join {
            version: PROTOCOL_VERSION,
            room: room.into(),
            name: "whatever the page says".into(),
            host_key: None,
            access_token: Some(token.into()),
        })
        .await;
}

#[tokio::test]
async fn only_token_holders_enter_each_as_the_token_says() {
    let (doctor_token, link) = mint(&["--room", "visit-7", "--name", "Dr. Zhang", "--role", "host"]);
    assert_eq!(
        link,
        format!("https://consult.example.org/r/visit-7#token={doctor_token}")
    );
    let (patient_token, _) = mint(&["--room", "visit-7", "--name", "Patient Li", "--identity", "pat-1"]);
    let (other_room, _) = mint(&["--room", "visit-8", "--name", "Patient Li"]);
    let (short, _) = mint(&["--room", "visit-7", "--name", "Late", "--ttl", "1s"]);

    let server = Server::start(&[
        "--no-turn",
        "--access",
        "token",
        "--api-key",
        KEY,
        "--api-secret",
        SECRET,
    ])
    .await;
    let mut stranger = server.client().await;
    stranger.send(super::join("visit-7", "Stranger")).await;
    expect!(
        stranger,
        ServerMsg::Error {
            code: ErrorCode::TokenRequired,
            ..
        }
    );
    let (forged, _) = mint_with(
        &SECRET.replace('0', "1"),
        &["--room", "visit-7", "--name", "Forger", "--role", "host"],
    );
    join_with(&mut stranger, "visit-7", &forged).await;
    expect!(
        stranger,
        ServerMsg::Error {
            code: ErrorCode::TokenInvalid,
            ..
        }
    );
    join_with(&mut stranger, "visit-7", &other_room).await;
    expect!(
        stranger,
        ServerMsg::Error {
            code: ErrorCode::TokenWrongRoom,
            ..
        }
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    join_with(&mut stranger, "visit-7", &short).await;
    expect!(
        stranger,
        ServerMsg::Error {
            code: ErrorCode::TokenExpired,
            ..
        }
    );

    // The doctor's token opens the room as its host, under the token's name.
    let mut doctor = server.client().await;
    join_with(&mut doctor, "visit-7", &doctor_token).await;
    expect!(doctor, ServerMsg::Joined { you, state, .. } if you.host && you.name == "Dr. Zhang" && state.lobby);
    // The patient knocks and is admitted.
    let mut patient = server.client().await;
    join_with(&mut patient, "visit-7", &patient_token).await;
    let id = expect!(patient, ServerMsg::Waiting { you, .. } => you.id);
    expect!(doctor, ServerMsg::Knock { .. });
    doctor.send(RoomMsg::Admit { id }).await;
    expect!(patient, ServerMsg::Joined { you, .. } if you.name == "Patient Li");
    // Removed, the patient's token lets nobody back in.
    doctor.send(RoomMsg::Remove { id }).await;
    next_of!(patient, ServerMsg::Removed { .. });
    let mut replay = server.client().await;
    join_with(&mut replay, "visit-7", &patient_token).await;
    expect!(
        replay,
        ServerMsg::Error {
            code: ErrorCode::TokenRevoked,
            ..
        }
    );
}
