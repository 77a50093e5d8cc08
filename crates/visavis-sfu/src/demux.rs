//! Which session a datagram belongs to, before the session's address is known: the local
//! ICE ufrag in a STUN binding request's USERNAME (`<our ufrag>:<their ufrag>`).

/// STUN's magic cookie (RFC 5389), at bytes 4..8 of every STUN message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
/// The USERNAME attribute's type.
const USERNAME: u16 = 0x0006;
/// Attributes looked at before giving up: a binding request carries USERNAME early, and a
/// hostile datagram must not make the demux walk far.
const MAX_ATTRIBUTES: usize = 16;

/// The local ufrag a STUN message is addressed to, if it is STUN and names one.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < 20 || datagram[0] & 0xc0 != 0 || datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    let mut at = 20;
    for _ in 0..MAX_ATTRIBUTES {
        let header = datagram.get(at..at + 4)?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let value = datagram.get(at + 4..at + 4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split_once(':').map(|(local, _)| local);
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut msg = vec![0x00, 0x01, 0, 0];
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        // PRIORITY first, as browsers send other attributes before USERNAME at times.
        msg.extend_from_slice(&[0x00, 0x24, 0, 4, 1, 2, 3, 4]);
        msg.extend_from_slice(&USERNAME.to_be_bytes());
        msg.extend_from_slice(&(username.len() as u16).to_be_bytes());
        msg.extend_from_slice(username.as_bytes());
        while msg.len() % 4 != 0 {
            msg.push(0);
        }
        msg
    }

    #[test]
    fn finds_the_local_ufrag() {
        assert_eq!(stun_local_ufrag(&binding_request("abcd:wxyz")), Some("abcd"));
        assert_eq!(stun_local_ufrag(&binding_request("abcde:w")), Some("abcde"));
    }

    #[test]
    fn rejects_what_is_not_stun_or_has_no_username() {
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None, "RTP");
        assert_eq!(stun_local_ufrag(&[22; 40]), None, "DTLS");
        assert_eq!(stun_local_ufrag(&binding_request("nocolon")), None);
        let mut truncated = binding_request("abcd:wxyz");
        truncated.truncate(30);
        assert_eq!(stun_local_ufrag(&truncated), None);
    }
}
