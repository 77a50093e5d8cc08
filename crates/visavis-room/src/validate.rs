//! Validation of user-chosen display names and room ids.

/// Longest display name, in characters (Unicode scalar values), after trimming.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest room id, in characters.
pub const MAX_ROOM_CHARS: usize = 64;

/// A display name: trimmed, 1–64 characters of any script, no control characters.
pub fn validate_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("name is empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("name is longer than 64 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("name contains control characters");
    }
    Ok(name)
}

/// A room id: trimmed, 1–64 letters or digits of any script, or `-`, `_`, `.`; so that it
/// reads well in a `/r/<room>` link and can never be a path or markup.
pub fn validate_room(room: &str) -> Result<&str, &'static str> {
    let room = room.trim();
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
        assert_eq!(validate_name("  Ann  "), Ok("Ann"));
        assert_eq!(validate_name("张医生"), Ok("张医生"));
        assert_eq!(
            validate_name("<img src=x onerror=alert(1)>"),
            Ok("<img src=x onerror=alert(1)>")
        );
        assert_eq!(validate_name(&"é".repeat(64)).map(str::len), Ok(128));
        assert!(validate_name(&"é".repeat(65)).is_err());
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\u{7}b").is_err());
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
