//! TURN REST credentials (coturn's `use-auth-secret`), long-term keys and stateless nonces.
//!
//! A credential is `username = "<unix-expiry>:<id>"`, `password = base64(HMAC-SHA1(secret,
//! username))`; the server recomputes the password, so it stores nothing per user. Nonces carry
//! their own expiry and an HMAC binding them to the client's address, so they are stateless too.

use std::net::IpAddr;

use md5::{Digest, Md5};

use crate::stun::{hmac_sha1_base64, hmac_sha1_raw};

/// The long-term credential key: MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(username.as_bytes());
    md5.update(b":");
    md5.update(realm.as_bytes());
    md5.update(b":");
    md5.update(password.as_bytes());
    md5.finalize().into()
}

/// Mints and checks TURN REST credentials with a shared secret.
#[derive(Clone)]
pub struct RestSecret {
    secret: Vec<u8>,
}

impl std::fmt::Debug for RestSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RestSecret(…)") // never log the secret
    }
}

/// The REST user id of a signalling member's credentials: `m<member id>`. The embedded
/// server relays for such users only while the member is in a room.
pub fn member_user(member: u64) -> String {
    format!("m{member}")
}

/// The member id in a user id made by [`member_user`].
pub fn member_of(user: &str) -> Option<u64> {
    user.strip_prefix('m')?.parse().ok()
}

impl RestSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    /// A credential for `id`, valid until `unix_now + lifetime_secs`.
    pub fn mint(&self, id: &str, unix_now: u64, lifetime_secs: u64) -> (String, String) {
        let username = format!("{}:{id}", unix_now + lifetime_secs);
        let password = self.password(&username);
        (username, password)
    }

    /// The password the holder of `username` must know.
    pub fn password(&self, username: &str) -> String {
        hmac_sha1_base64(&self.secret, username.as_bytes())
    }

    /// The expiry (Unix seconds) and the user id in `username`, if it is `<unix-expiry>:<id>`.
    pub fn parse_username(username: &str) -> Option<(u64, &str)> {
        let (expiry, id) = username.split_once(':')?;
        Some((expiry.parse().ok()?, id))
    }
}

/// Issues nonces that expire, bound to the client's IP address.
#[derive(Clone)]
pub struct Nonces {
    key: [u8; 32],
    lifetime_secs: u64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nonces({} s)", self.lifetime_secs)
    }
}

impl Nonces {
    pub fn new(key: [u8; 32], lifetime_secs: u64) -> Self {
        Self { key, lifetime_secs }
    }

    pub fn issue(&self, unix_now: u64, client: IpAddr) -> String {
        let expiry = unix_now + self.lifetime_secs;
        format!("{expiry:x}-{}", self.tag(expiry, client))
    }

    /// True if `nonce` was issued by us to `client` and has not expired.
    pub fn is_valid(&self, nonce: &str, unix_now: u64, client: IpAddr) -> bool {
        let Some((expiry, tag)) = nonce.split_once('-') else {
            return false;
        };
        let Ok(expiry) = u64::from_str_radix(expiry, 16) else {
            return false;
        };
        expiry > unix_now && tag == self.tag(expiry, client)
    }

    fn tag(&self, expiry: u64, client: IpAddr) -> String {
        let ip = match client {
            IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
            IpAddr::V6(ip) => ip.octets(),
        };
        let mac = hmac_sha1_raw(&self.key, &[&expiry.to_be_bytes(), &ip]);
        mac[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_credentials_match_coturn() {
        // coturn: password = base64(hmac-sha1(secret, username)).
        let secret = RestSecret::new("s3cret");
        let (username, password) = secret.mint("alice", 1_000, 3_600);
        assert_eq!(username, "4600:alice");
        assert_eq!(password, secret.password("4600:alice"));
        assert_eq!(password.len(), 28, "base64 of 20 bytes");
        assert_ne!(password, RestSecret::new("other").password("4600:alice"));
        assert_eq!(RestSecret::parse_username(&username), Some((4600, "alice")));
        assert_eq!(RestSecret::parse_username("alice"), None);
        assert_eq!(RestSecret::parse_username("soon:alice"), None);
    }

    #[test]
    fn member_users_name_their_member() {
        assert_eq!(member_of(&member_user(42)), Some(42));
        assert_eq!(member_of("alice"), None);
        assert_eq!(member_of("m"), None);
    }

    #[test]
    fn nonces_expire_and_are_bound_to_the_client() {
        let nonces = Nonces::new([9; 32], 600);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let nonce = nonces.issue(1_000, ip);
        assert!(nonces.is_valid(&nonce, 1_599, ip));
        assert!(!nonces.is_valid(&nonce, 1_600, ip), "expired");
        assert!(
            !nonces.is_valid(&nonce, 1_000, "192.0.2.8".parse().unwrap()),
            "other client"
        );
        assert!(!nonces.is_valid("ffffffff-0000000000000000", 1_000, ip), "forged");
        assert!(!nonces.is_valid("garbage", 1_000, ip));
    }
}
