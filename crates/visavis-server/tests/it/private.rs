//! Private rooms over real WebSockets: a doctor creates one, a patient knocks and is admitted, a
//! stranger is denied, a removed member must knock again (from its address), the locked room
//! refuses newcomers, and a resumed session keeps its place in the lobby. What the lobby
//! receives is read message by message: nothing of the room may slip in.

use std::net::IpAddr;

use visavis_client::Client;
use visavis_protocol::{ErrorCode, KnockOutcome, RoomMsg, ServerMsg, SessionMsg, PROTOCOL_VERSION};

use super::{join, Server, TestClient};

/// A client from 127.0.0.`n`.
async fn from(server: &Server, n: u8) -> TestClient {
    let client = Client::connect_from(&server.url, Some(IpAddr::from([127, 0, 0, n])))
        .await
        .expect("connect");
    TestClient::new(client)
}

/// `client` asks for a new private room, as its host.
async fn create(client: &mut TestClient, name: &str) {
    client
        .send(SessionMsg::Create {
            version: PROTOCOL_VERSION,
            name: name.into(),
        })
        .await;
}

async fn waiting(client: &mut TestClient, room: &str, name: &str) -> u64 {
    client.send(join(room, name)).await;
    expect!(client, ServerMsg::Waiting { you, .. } => you.id)
}

#[tokio::test]
async fn a_consultation_in_a_private_room() {
    let server = Server::start(&["--no-turn"]).await;
    let mut doctor = from(&server, 2).await;
    create(&mut doctor, "Dr. Zhang").await;
    let (room, key, doctor_id) =
        expect!(doctor, ServerMsg::Joined { room, host_key, you, .. } => (room, host_key, you.id));
    assert!(room.starts_with('~') && room.len() == 23, "{room}");
    let key = key.expect("the host's key");
    doctor
        .send(RoomMsg::Chat {
            text: "private notes".into(),
        })
        .await;
    expect!(doctor, ServerMsg::Chat(_));

    // The patient knocks: the doctor hears it; the patient can do nothing but wait.
    let mut patient = from(&server, 3).await;
    let patient_id = waiting(&mut patient, &room, "Patient Li").await;
    expect!(doctor, ServerMsg::Knock { member } if member.id == patient_id);
    patient
        .send(RoomMsg::Chat {
            text: "hello?".into(),
        })
        .await;
    expect!(
        patient,
        ServerMsg::Error {
            code: ErrorCode::NotAdmitted,
            ..
        }
    );

    // A stranger with the same link is denied.
    let mut stranger = from(&server, 4).await;
    let stranger_id = waiting(&mut stranger, &room, "dr. zhang").await;
    let name = expect!(doctor, ServerMsg::Knock { member } => member.name);
    assert_eq!(name, "dr. zhang (2)", "no second Dr. Zhang");
    doctor.send(RoomMsg::Deny { id: stranger_id }).await;
    expect!(stranger, ServerMsg::Denied { .. });
    expect!(
        doctor,
        ServerMsg::KnockEnded {
            outcome: KnockOutcome::Denied,
            ..
        }
    );

    // The doctor said something more while the patient waited; admitted, the patient's next
    // message is `joined`, without the chat from before.
    doctor
        .send(RoomMsg::Chat {
            text: "one moment".into(),
        })
        .await;
    expect!(doctor, ServerMsg::Chat(_));
    doctor.send(RoomMsg::Admit { id: patient_id }).await;
    let (members, chat) = expect!(patient, ServerMsg::Joined { members, chat, .. } => (members, chat));
    assert_eq!(
        members.iter().map(|m| (m.id, m.host)).collect::<Vec<_>>(),
        [(doctor_id, true)]
    );
    assert!(chat.is_empty(), "{chat:?}");
    expect!(
        doctor,
        ServerMsg::KnockEnded {
            outcome: KnockOutcome::Admitted,
            ..
        }
    );
    expect!(doctor, ServerMsg::MemberJoined { .. });

    // The patient has no host powers.
    patient.send(RoomMsg::Remove { id: doctor_id }).await;
    expect!(
        patient,
        ServerMsg::Error {
            code: ErrorCode::NotHost,
            ..
        }
    );

    // Locked: a newcomer is refused with its own code; the host link still works.
    doctor
        .send(RoomMsg::RoomSettings {
            lobby: None,
            locked: Some(true),
            share_history: None,
        })
        .await;
    expect!(doctor, ServerMsg::RoomState(state) if state.locked);
    expect!(patient, ServerMsg::RoomState(state) if state.locked);
    let mut late = from(&server, 5).await;
    late.send(join(&room, "Late")).await;
    expect!(
        late,
        ServerMsg::Error {
            code: ErrorCode::RoomLocked,
            ..
        }
    );
    let mut second_device = from(&server, 6).await;
    second_device
        .send(SessionMsg::Join {
            version: PROTOCOL_VERSION,
            room: room.clone(),
            name: "Dr. Zhang".into(),
            host_key: Some(key),
            access_token: None,
        })
        .await;
    expect!(second_device, ServerMsg::Joined { you, .. } if you.host && you.name == "Dr. Zhang (2)");

    // Removed: the patient is told, and (unlocked, lobby off) must still knock from there.
    doctor.send(RoomMsg::Remove { id: patient_id }).await;
    let by = next_of!(patient, ServerMsg::Removed { by, .. } => by);
    assert_eq!(by, Some(doctor_id));
    doctor
        .send(RoomMsg::RoomSettings {
            lobby: Some(false),
            locked: Some(false),
            share_history: None,
        })
        .await;
    waiting(&mut patient, &room, "Patient Li").await;
    let mut colleague = from(&server, 7).await;
    colleague.send(join(&room, "Nurse")).await;
    expect!(colleague, ServerMsg::Joined { .. });
}

#[tokio::test]
async fn a_dropped_connection_resumes_its_place_in_the_lobby() {
    let server = Server::start(&["--no-turn", "--resume-grace", "30"]).await;
    let mut doctor = from(&server, 2).await;
    create(&mut doctor, "Dr. Zhang").await;
    let room = expect!(doctor, ServerMsg::Joined { room, .. } => room);
    let mut patient = from(&server, 3).await;
    let id = waiting(&mut patient, &room, "Patient").await;
    expect!(doctor, ServerMsg::Knock { .. });
    // The phone loses its connection and comes back with its token: still waiting, and
    // admitted on the new connection.
    assert!(patient.client.token().is_some(), "a token while waiting");
    let (mut again, _) = patient.resume(&server.url).await;
    doctor.send(RoomMsg::Admit { id }).await;
    expect!(again, ServerMsg::Joined { you, .. } if you.id == id);
}

#[tokio::test]
async fn access_private_takes_private_rooms_only() {
    let server = Server::start(&["--no-turn", "--access", "private"]).await;
    let mut c = server.client().await;
    c.send(join("consult-42", "A")).await;
    expect!(
        c,
        ServerMsg::Error {
            code: ErrorCode::PrivateOnly,
            ..
        }
    );
    create(&mut c, "A").await;
    expect!(c, ServerMsg::Joined { .. });
}
