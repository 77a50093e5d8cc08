//! Access tokens: JWTs (HS256, jsonwebtoken with *ring*) that a product's back end mints with
//! the API secret to let one person into one room, with a role and permissions. With
//! `--access token` nobody joins without one. The API key and secret come from the settings or,
//! if none are set, are made once and kept in `--data-dir`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use visavis_room::{Grant, TokenCheck, TokenRefusal};

/// Shortest API secret accepted: 256 bits of HMAC key, as RFC 7518 asks of HS256.
pub const MIN_SECRET_CHARS: usize = 32;

/// The pair a back end authenticates with: the key names it (`iss` of its tokens), the
/// secret signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCredentials {
    pub key: String,
    pub secret: String,
}

impl ApiCredentials {
    /// `--api-key`/`--api-secret` if given, else the pair in `data_dir` (made on first use:
    /// the `bool` says it was just made, so the caller can show it once).
    pub fn load(key: Option<&str>, secret: Option<&str>, data_dir: &Path) -> anyhow::Result<(Self, bool)> {
        match (key, secret) {
            (Some(key), Some(secret)) => {
                anyhow::ensure!(
                    secret.chars().count() >= MIN_SECRET_CHARS,
                    "--api-secret needs at least {MIN_SECRET_CHARS} characters"
                );
                let pair = Self {
                    key: key.to_owned(),
                    secret: secret.to_owned(),
                };
                Ok((pair, false))
            }
            (None, None) => Self::kept(data_dir),
            _ => anyhow::bail!("--api-key and --api-secret go together"),
        }
    }

    fn kept(data_dir: &Path) -> anyhow::Result<(Self, bool)> {
        let file = data_dir.join("api-credentials.json");
        let read = || -> anyhow::Result<Option<Self>> {
            match std::fs::read(&file) {
                Ok(json) => serde_json::from_slice(&json)
                    .map(Some)
                    .with_context(|| format!("bad {}", file.display())),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err).with_context(|| format!("cannot read {}", file.display())),
            }
        };
        if let Some(pair) = read()? {
            return Ok((pair, false));
        }
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let pair = Self {
            key: format!("vv_{}", crate::new_secret()),
            secret: format!("{}{}", crate::new_secret(), crate::new_secret()),
        };
        // Written whole under a name of its own, then linked into place: of two processes
        // making a pair at once, both keep the one that got there first.
        let fresh = data_dir.join(format!(".api-credentials-{}", crate::random_hex(8)));
        crate::tls::write_private(&fresh, serde_json::to_string_pretty(&pair)?.as_bytes())?;
        let linked = std::fs::hard_link(&fresh, &file);
        let _ = std::fs::remove_file(&fresh);
        match linked {
            Ok(()) => Ok((pair, true)),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let pair = read()?.with_context(|| format!("{} vanished", file.display()))?;
                Ok((pair, false))
            }
            Err(err) => Err(err).with_context(|| format!("cannot write {}", file.display())),
        }
    }
}

/// Host or guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Host,
    Guest,
}

/// What a token may do; everything but skipping the lobby by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Permissions {
    pub audio: bool,
    pub video: bool,
    pub screen: bool,
    pub chat: bool,
    pub skip_lobby: bool,
}

impl Default for Permissions {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
            screen: true,
            chat: true,
            skip_lobby: false,
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The API key of whoever minted it.
    pub iss: String,
    /// The product's id for the person.
    pub sub: String,
    pub room: String,
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub permissions: Permissions,
    /// Issued and expires, Unix seconds.
    pub iat: u64,
    pub exp: u64,
}

impl Claims {
    /// Claims for `name` (identity `sub`) in `room` as `role`, valid `ttl` from `now`.
    pub fn new(
        api_key: &str,
        sub: &str,
        room: &str,
        name: &str,
        role: Role,
        now: u64,
        ttl: Duration,
    ) -> Self {
        Self {
            iss: api_key.to_owned(),
            sub: sub.to_owned(),
            room: room.to_owned(),
            name: name.to_owned(),
            role,
            permissions: Permissions::default(),
            iat: now,
            exp: now + ttl.as_secs(),
        }
    }
}

/// Signs `claims` with the API secret.
pub fn mint(credentials: &ApiCredentials, claims: &Claims) -> anyhow::Result<String> {
    let key = EncodingKey::from_secret(credentials.secret.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).context("cannot sign the token")
}

/// What `token` grants in `room` at `now` (Unix seconds), if it is this server's, unexpired
/// and for that room.
pub fn verify(
    credentials: &ApiCredentials,
    token: &str,
    room: &str,
    now: u64,
) -> Result<Grant, TokenRefusal> {
    let claims = verified_claims(credentials, token, now)?;
    if claims.room != room {
        return Err(TokenRefusal::WrongRoom);
    }
    let host = claims.role == Role::Host;
    Ok(Grant {
        identity: claims.sub,
        name: claims.name,
        host,
        skip_lobby: host || claims.permissions.skip_lobby,
        chat: claims.permissions.chat,
        publish: visavis_protocol::Publish {
            audio: claims.permissions.audio,
            video: claims.permissions.video,
            screen: claims.permissions.screen,
        },
    })
}

/// The claims of `token` if it is this server's and unexpired at `now` (Unix seconds), for any
/// room: what the pre-call network check asks of a token before its room is joined.
pub fn verified_claims(credentials: &ApiCredentials, token: &str, now: u64) -> Result<Claims, TokenRefusal> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[credentials.key.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    // Expiry is checked below against the core's clock, not the library's.
    validation.validate_exp = false;
    validation.leeway = 0;
    let key = DecodingKey::from_secret(credentials.secret.as_bytes());
    let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
        .map_err(|_| TokenRefusal::Invalid)?
        .claims;
    if claims.exp <= now {
        return Err(TokenRefusal::Expired);
    }
    Ok(claims)
}

/// The core's token check with these credentials.
pub fn check(credentials: ApiCredentials) -> TokenCheck {
    TokenCheck::new(move |token, room, now| verify(&credentials, token, room, now))
}

/// The page for `room` with `token` in the fragment, which browsers send neither to a server
/// nor in `Referer`.
pub fn link(origin: &str, room: &str, token: &str) -> String {
    format!("{origin}/r/{}#token={token}", crate::api::path_segment(room))
}

/// A duration such as `90s`, `15m`, `2h` or `7d` (or plain seconds).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 2h"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    let secs = n
        .checked_mul(scale)
        .filter(|s| *s > 0)
        .ok_or("the duration must be positive")?;
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> ApiCredentials {
        ApiCredentials {
            key: "vv_test".into(),
            secret: "s".repeat(40),
        }
    }

    fn token(claims: &Claims, credentials: &ApiCredentials) -> String {
        mint(credentials, claims).expect("signed")
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_minted_token_grants_its_room_until_it_expires() {
        let claims = Claims::new(
            "vv_test",
            "pat-1",
            "visit-7",
            "Patient Li",
            Role::Guest,
            NOW,
            Duration::from_secs(3600),
        );
        let t = token(&claims, &pair());
        let grant = verify(&pair(), &t, "visit-7", NOW + 10).expect("valid");
        assert_eq!(
            grant,
            Grant {
                identity: "pat-1".into(),
                name: "Patient Li".into(),
                host: false,
                skip_lobby: false,
                chat: true,
                publish: visavis_protocol::Publish::ALL,
            }
        );
        assert_eq!(verify(&pair(), &t, "visit-8", NOW), Err(TokenRefusal::WrongRoom));
        assert_eq!(
            verify(&pair(), &t, "visit-7", NOW + 3600),
            Err(TokenRefusal::Expired)
        );
    }

    #[test]
    fn forged_tokens_are_invalid() {
        let claims = Claims::new(
            "vv_test",
            "dr",
            "visit-7",
            "Dr",
            Role::Host,
            NOW,
            Duration::from_secs(60),
        );
        let other_secret = ApiCredentials {
            secret: "x".repeat(40),
            ..pair()
        };
        let other_key = ApiCredentials {
            key: "vv_other".into(),
            ..pair()
        };
        for t in [
            token(&claims, &other_secret),
            mint(
                &other_key,
                &Claims {
                    iss: "vv_other".into(),
                    ..claims.clone()
                },
            )
            .expect("signed"),
            "not.a.jwt".into(),
            // alg "none" with the same claims
            format!(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                token(&claims, &pair()).split('.').nth(1).expect("claims")
            ),
        ] {
            assert_eq!(
                verify(&pair(), &t, "visit-7", NOW),
                Err(TokenRefusal::Invalid),
                "{t}"
            );
        }
    }

    #[test]
    fn hosts_skip_the_lobby_and_permissions_carry_over() {
        let mut claims = Claims::new(
            "vv_test",
            "obs",
            "r",
            "Observer",
            Role::Guest,
            NOW,
            Duration::from_secs(60),
        );
        claims.permissions.chat = false;
        claims.permissions.skip_lobby = true;
        claims.permissions.video = false;
        let grant = verify(&pair(), &token(&claims, &pair()), "r", NOW).expect("valid");
        assert!(grant.skip_lobby && !grant.chat && !grant.host);
        assert!(grant.publish.audio && !grant.publish.video && grant.publish.screen);
        let host = Claims {
            role: Role::Host,
            ..Claims::new(
                "vv_test",
                "dr",
                "r",
                "Dr",
                Role::Guest,
                NOW,
                Duration::from_secs(60),
            )
        };
        assert!(
            verify(&pair(), &token(&host, &pair()), "r", NOW)
                .expect("valid")
                .skip_lobby
        );
    }

    #[test]
    fn credentials_are_made_once_kept_private_and_checked() {
        let dir = std::env::temp_dir().join(format!("visavis-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (made, fresh) = ApiCredentials::load(None, None, &dir).expect("made");
        assert!(fresh && made.secret.len() >= MIN_SECRET_CHARS);
        let (kept, fresh) = ApiCredentials::load(None, None, &dir).expect("kept");
        assert!(!fresh);
        assert_eq!(kept, made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("api-credentials.json"))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        assert!(ApiCredentials::load(Some("k"), Some("short"), &dir).is_err());
        assert!(ApiCredentials::load(Some("k"), None, &dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ttls_read_as_people_write_them() {
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("0s").is_err() && parse_ttl("2w").is_err() && parse_ttl("h").is_err());
    }
}
