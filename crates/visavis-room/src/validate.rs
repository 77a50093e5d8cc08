//! Validation of user-chosen display names and room ids, and the shape of private room ids.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Longest display name, in characters (Unicode scalar values), after trimming.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest room id, in characters.
pub const MAX_ROOM_CHARS: usize = 64;

/// A display name: Unicode NFC, trimmed, 1–64 characters of any script; no control, format
/// (zero-width, bidirectional overrides), separator-line, private-use or unassigned
/// characters, which would let two different names look the same or garble what follows.
pub fn validate_name(name: &str) -> Result<String, &'static str> {
    let name: String = name.nfc().collect();
    let name = name.trim();
    if name.is_empty() {
        return Err("name is empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("name is longer than 64 characters");
    }
    let hidden = |c: char| {
        matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::Surrogate
                | GeneralCategory::PrivateUse
                | GeneralCategory::Unassigned
        )
    };
    if name.chars().any(hidden) {
        return Err("name contains control, invisible or unassigned characters");
    }
    Ok(name.to_owned())
}

/// How two names compare for uniqueness in a room: compatibility-normalised and case-folded,
/// so that "Dr. Zhang", "dr. zhang" and "Ｄｒ. Ｚｈａｎｇ" count as one.
pub fn name_key(name: &str) -> String {
    name.nfkc().flat_map(char::to_lowercase).collect()
}

/// A private room id: `~` then 22 characters of URL-safe base64 (128 bits and a little).
/// Named rooms cannot look like this (`~` is not allowed in them).
pub fn is_private_id(room: &str) -> bool {
    room.strip_prefix('~').is_some_and(|rest| {
        rest.len() == PRIVATE_ID_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Characters of a private room id after its `~`, and of a host key.
pub const PRIVATE_ID_CHARS: usize = 22;

/// A room id: trimmed, 1–64 letters or digits of any script, or `-`, `_`, `.`; so that it
/// reads well in a `/r/<room>` link and can never be a path or markup. Or a private room's id.
pub fn validate_room(room: &str) -> Result<&str, &'static str> {
    let room = room.trim();
    if is_private_id(room) {
        return Ok(room);
    }
    if room.is_empty() {
        return Err("room is empty");
    }
    if room.chars().count() > MAX_ROOM_CHARS {
        return Err("room is longer than 64 characters");
    }
    if !room
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("room may contain only letters, digits, '-', '_' and '.'");
    }
    if room.chars().all(|c| c == '.') {
        return Err("room cannot be only dots");
    }
    Ok(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_any_script() {
        assert_eq!(validate_name("  Ann  ").as_deref(), Ok("Ann"));
        assert_eq!(validate_name("张医生").as_deref(), Ok("张医生"));
        assert_eq!(
            validate_name("<img src=x onerror=alert(1)>").as_deref(),
            Ok("<img src=x onerror=alert(1)>")
        );
        assert_eq!(validate_name(&"é".repeat(64)).map(|n| n.len()), Ok(128));
        assert!(validate_name(&"é".repeat(65)).is_err());
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\u{7}b").is_err());
    }

    #[test]
    fn names_are_nfc_and_hide_nothing() {
        // "é" as e + combining acute becomes the one character.
        assert_eq!(validate_name("Rene\u{301}").as_deref(), Ok("Ren\u{e9}"));
        for hidden in [
            "Dr.\u{200b}Zhang",   // zero-width space (format)
            "Zhang\u{202e}gnahZ", // right-to-left override (format)
            "a\u{2028}b",         // line separator
            "a\u{e000}b",         // private use
            "a\u{378}b",          // unassigned
        ] {
            assert!(validate_name(hidden).is_err(), "{hidden:?}");
        }
        assert_eq!(name_key("Dr. Zhang"), name_key("dr. ZHANG"));
        assert_eq!(name_key("Ｄｒ. Zhang"), name_key("Dr. Zhang"), "full-width forms");
        assert_ne!(name_key("Dr. Zhang"), name_key("Dr. Wang"));
    }

    #[test]
    fn private_ids_have_one_shape_that_named_rooms_cannot_take() {
        assert!(is_private_id("~q3Zl0fW1bX9e7TtYp2K4aA"));
        assert_eq!(
            validate_room("~q3Zl0fW1bX9e7TtYp2K4aA"),
            Ok("~q3Zl0fW1bX9e7TtYp2K4aA")
        );
        for not in [
            "~short",
            "q3Zl0fW1bX9e7TtYp2K4aAx",
            "~q3Zl0fW1bX9e7TtYp2K4a=",
            "~~3Zl0fW1bX9e7TtYp2K4aA",
        ] {
            assert!(!is_private_id(not), "{not}");
        }
        assert!(validate_room("~room").is_err(), "no ~ in named rooms");
    }

    #[test]
    fn rooms_are_url_safe_words() {
        assert_eq!(validate_room("consult-42"), Ok("consult-42"));
        assert_eq!(validate_room("诊室1"), Ok("诊室1"));
        for bad in ["", " ", "a/b", "a b", "..", "<x>", "?q", &"r".repeat(65)] {
            assert!(validate_room(bad).is_err(), "{bad:?}");
        }
    }
}
