//! Where a connection belongs, from its first message: a `join` names its room, and a
//! `resume` token names the room of its session (a cluster's tokens carry it after the random
//! part), so the node a load balancer picked can send the connection to the room's node
//! before anything else happens. Pure.

/// What the first message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A session in this room (as the core will name it: trimmed).
    Room(String),
    /// Nothing tied to a room (`create` makes a new one here; anything else is answered here
    /// with its error).
    Anywhere,
}

/// What the room's lease says this node should do with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it here: this node holds the room.
    Local,
    /// Nobody holds the room: take its lease (and its stored state, if any), then serve it.
    Acquire,
    /// This node holds the lease in Redis but is still taking the room in: wait.
    Wait,
    /// Another node holds it: forward the connection there.
    Forward(String),
    /// Another node holds it, and the connection was forwarded here already: send it back
    /// (the lease moved meanwhile), never on again, so a connection is forwarded once at most.
    Refuse,
}

/// The resume token of a session in `room` in a cluster: the random part, `.`, then the room
/// in hex (room ids allow `.`, and hex keeps the token one opaque word).
pub fn token(random: &str, room: &str) -> String {
    if room.is_empty() {
        return random.to_owned();
    }
    let mut token = String::with_capacity(random.len() + 1 + 2 * room.len());
    token.push_str(random);
    token.push('.');
    for b in room.bytes() {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

/// The room a cluster token names, if it names one.
pub fn room_of_token(token: &str) -> Option<String> {
    let (_, hex) = token.split_once('.')?;
    if hex.len() % 2 != 0 || hex.len() > 2 * 4 * visavis_room::MAX_ROOM_CHARS + 64 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The target of a connection whose first text message is `first`.
pub fn target(first: &str) -> Target {
    let Ok(msg) = serde_json::from_str::<serde_json::Value>(first) else {
        return Target::Anywhere;
    };
    let field = |name: &str| msg.get(name).and_then(serde_json::Value::as_str);
    let room = match field("type") {
        Some("join") => field("room").map(str::to_owned),
        Some("resume") => field("token").and_then(room_of_token),
        _ => None,
    };
    match room.as_deref().map(visavis_room::validate_room) {
        Some(Ok(room)) => Target::Room(room.to_owned()),
        // An invalid room is refused by the core, wherever it runs.
        _ => Target::Anywhere,
    }
}

/// What to do with a connection for a room whose lease `holder` (as Redis says), from this
/// node `me`, which has taken the room in if `taken`; `forwarded` if another node sent it.
pub fn decide(holder: Option<&str>, me: &str, taken: bool, forwarded: bool) -> Decision {
    match holder {
        None => Decision::Acquire,
        Some(node) if node == me && taken => Decision::Local,
        Some(node) if node == me => Decision::Wait,
        Some(_) if forwarded => Decision::Refuse,
        Some(node) => Decision::Forward(node.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_room() {
        let t = token("5f0c6d1e9a8b4c3d2e1f0a9b8c7d6e5f", "consult.42-Zürich");
        assert!(t.starts_with("5f0c6d1e9a8b4c3d2e1f0a9b8c7d6e5f."));
        assert!(t.chars().all(|c| c.is_ascii_hexdigit() || c == '.'));
        assert_eq!(room_of_token(&t).as_deref(), Some("consult.42-Zürich"));
        assert_eq!(token("abc", ""), "abc");
        assert_eq!(
            room_of_token("5f0c6d1e9a8b4c3d2e1f0a9b8c7d6e5f"),
            None,
            "single-node tokens"
        );
        assert_eq!(room_of_token("ab.zz"), None);
        assert_eq!(room_of_token("ab.abc"), None);
        assert_eq!(room_of_token("ab.ff"), None, "not UTF-8");
    }

    #[test]
    fn the_first_message_names_the_target() {
        let join = r#"{"type":"join","version":1,"room":" consult-42 ","name":"Ann"}"#;
        assert_eq!(target(join), Target::Room("consult-42".into()));
        let resume = format!(
            r#"{{"type":"resume","version":1,"token":"{}","lastSn":3}}"#,
            token("00", "consult-42")
        );
        assert_eq!(target(&resume), Target::Room("consult-42".into()));
        for anywhere in [
            r#"{"type":"create","version":1,"name":"Ann"}"#,
            r#"{"type":"join","version":1,"room":"../etc","name":"Ann"}"#,
            r#"{"type":"resume","version":1,"token":"00","lastSn":3}"#,
            r#"{"type":"chat","text":"hi"}"#,
            "not json",
        ] {
            assert_eq!(target(anywhere), Target::Anywhere, "{anywhere}");
        }
    }

    #[test]
    fn the_lease_decides_where_a_connection_goes() {
        assert_eq!(decide(None, "me", false, false), Decision::Acquire);
        assert_eq!(decide(None, "me", false, true), Decision::Acquire);
        assert_eq!(decide(Some("me"), "me", true, false), Decision::Local);
        assert_eq!(decide(Some("me"), "me", false, false), Decision::Wait);
        assert_eq!(
            decide(Some("other"), "me", false, false),
            Decision::Forward("other".into())
        );
        assert_eq!(decide(Some("other"), "me", false, true), Decision::Refuse);
    }
}
