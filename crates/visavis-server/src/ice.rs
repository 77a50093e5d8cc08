//! What clients are told about STUN/TURN: the ICE servers with REST credentials minted for each
//! member on join and renewed while it stays (and for the pre-call network check), for the
//! embedded server or an external coturn; and the embedded server's setup.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use visavis_protocol::IceServer;
use visavis_room::IceServerSource;
use visavis_turn::{member_user, Nonces, PeerPolicy, RestSecret, TurnConfig};

use crate::fd_budget::FdPool;
use crate::turn::{TcpLimits, TurnAddrs, TurnSetup};
use crate::Settings;

/// The TURN REST secret: configured, or random for this run.
pub fn secret(settings: &Settings) -> anyhow::Result<String> {
    if let Some(secret) = &settings.turn_secret {
        anyhow::ensure!(!secret.is_empty(), "--turn-secret is empty");
        return Ok(secret.clone());
    }
    anyhow::ensure!(
        settings.turn_urls.is_empty(),
        "--turn-url needs --turn-secret (the external server's static-auth-secret)"
    );
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the TURN secret: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The embedded server's setup from the settings. `listen` is `settings.turn_listen()`;
/// `services` the addresses of this server's own services relayed browsers may reach (the
/// SFU's), however the peer policy treats their range.
pub fn turn_setup(
    settings: &Settings,
    listen: SocketAddr,
    secret: &str,
    fds: Arc<FdPool>,
    services: Vec<SocketAddr>,
) -> anyhow::Result<TurnSetup> {
    let public_ip = match settings.public_ip {
        Some(ip) => ip,
        None if !listen.ip().is_unspecified() => listen.ip(),
        None => outbound_ip(listen.ip().is_ipv6()).context(
            "--turn-listen is unspecified and this machine's address could not be found; set --public-ip",
        )?,
    };
    let tls = match (
        settings.turn_tls_listen(),
        &settings.turn_tls_cert,
        &settings.turn_tls_key,
    ) {
        (Some(addr), Some(cert), Some(key)) => Some((addr, tls_config(cert, key)?)),
        _ => None,
    };
    let mut nonce_key = [0u8; 32];
    getrandom::fill(&mut nonce_key).map_err(|e| anyhow::anyhow!("no randomness for nonces: {e}"))?;
    Ok(TurnSetup {
        listen,
        tls,
        bind_ip: listen.ip(),
        public_ip,
        relay_ports: settings.turn_relay_ports,
        fds,
        tcp: TcpLimits {
            idle: Duration::from_secs(settings.turn_tcp_idle_timeout),
            outbox_bytes: usize::try_from(settings.turn_tcp_outbox).unwrap_or(usize::MAX),
            per_ip: settings.turn_tcp_per_ip as usize,
        },
        core: TurnConfig {
            realm: settings.turn_realm.clone(),
            secret: RestSecret::new(secret),
            nonces: Nonces::new(nonce_key, 600),
            policy: PeerPolicy {
                allow: settings.turn_allow_peers.clone(),
            },
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(settings.turn_max_lifetime),
            user_quota: settings.turn_user_quota,
            total_quota: settings.turn_total_quota,
            ip_quota: settings.turn_ip_quota,
            max_permissions: settings.turn_max_permissions,
            bandwidth: settings.turn_bandwidth * 1000 / 8,
            unauth_rate: (
                settings.turn_unauth_rate,
                settings.turn_unauth_rate.saturating_mul(2),
            ),
            members: true,
            services,
        },
    })
}

/// The address this machine would send from towards the internet. `connect` on a UDP
/// socket only consults the routing table; no packet is sent.
pub(crate) fn outbound_ip(ipv6: bool) -> Option<IpAddr> {
    let (bind, probe) = if ipv6 {
        ("[::]:0", "[2001:db8::1]:9")
    } else {
        ("0.0.0.0:0", "192.0.2.1:9")
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(probe).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<tokio_rustls::rustls::ServerConfig>> {
    crate::tls::server_config(crate::tls::CertStore::new(crate::tls::load(cert, key)?), &[])
}

/// The STUN/TURN URLs clients are given and the secret their credentials are minted with:
/// for members ([`ice_source`]) and for the pre-call network check (`netcheck.rs`).
#[derive(Clone)]
pub struct IceMinter {
    urls: Vec<String>,
    secret: RestSecret,
}

impl IceMinter {
    /// The servers with credentials for `user`, valid for new relays for `lifetime_secs`.
    pub fn mint(&self, user: &str, unix_now: u64, lifetime_secs: u64) -> Vec<IceServer> {
        let (username, credential) = self.secret.mint(user, unix_now, lifetime_secs);
        vec![IceServer {
            urls: self.urls.clone(),
            username: Some(username),
            credential: Some(credential),
        }]
    }

    /// The STUN URLs alone, which need no credentials.
    pub fn stun_only(&self) -> Vec<IceServer> {
        let urls: Vec<String> = self
            .urls
            .iter()
            .filter(|u| u.starts_with("stun:") || u.starts_with("stuns:"))
            .cloned()
            .collect();
        if urls.is_empty() {
            return Vec::new();
        }
        vec![IceServer {
            urls,
            username: None,
            credential: None,
        }]
    }
}

/// The URLs and secret for clients, if there are any URLs. `https_port`: the port of the
/// HTTPS listener, when it carries TURN over TLS too.
///
/// The best paths come first: STUN and TURN over UDP, then TCP, then TLS; browsers prefer
/// them in that order anyway and fall back to `turns:` on the HTTPS port where nothing else
/// gets through.
pub fn ice_minter(
    settings: &Settings,
    secret: &str,
    embedded: Option<(TurnAddrs, &TurnSetup)>,
    https_port: Option<u16>,
) -> Option<IceMinter> {
    let urls: Vec<String> = match embedded {
        Some((addrs, setup)) => {
            let host = settings
                .turn_host
                .clone()
                .unwrap_or_else(|| url_host(setup.public_ip));
            let mut urls = vec![
                format!("stun:{host}:{}", addrs.udp.port()),
                format!("turn:{host}:{}?transport=udp", addrs.udp.port()),
                format!("turn:{host}:{}?transport=tcp", addrs.tcp.port()),
            ];
            if let Some(tls) = addrs.tls {
                urls.push(format!("turns:{host}:{}?transport=tcp", tls.port()));
            }
            if let Some(port) = https_port {
                let host = https_host(settings, setup.public_ip);
                urls.push(format!("turns:{host}:{port}?transport=tcp"));
            }
            urls
        }
        None => settings.turn_urls.clone(),
    };
    (!urls.is_empty()).then(|| IceMinter {
        urls,
        secret: RestSecret::new(secret),
    })
}

/// The ICE servers every joining member is given, with credentials minted for them.
pub fn ice_source(settings: &Settings, minter: Option<IceMinter>) -> IceServerSource {
    let Some(minter) = minter else {
        return IceServerSource::none();
    };
    let lifetime = settings.turn_credential_lifetime();
    // Renewed at half-life, so a member always holds credentials with time left.
    IceServerSource::renewed(lifetime / 2, move |member, unix_now| {
        minter.mint(&member_user(member), unix_now, lifetime.as_secs())
    })
}

/// The host of the `turns:` URL on the HTTPS port: a name the HTTPS certificate is for, since
/// browsers check it. The host of the first https `--public-origin` (the address people open,
/// so the certificate's), else the first `--domain` (ACME's certificate is for it), else
/// `--turn-host`, else the public IP (which the self-signed certificate carries).
fn https_host(settings: &Settings, public_ip: IpAddr) -> String {
    settings
        .public_origins
        .iter()
        .find_map(|origin| {
            let uri: axum::http::Uri = origin.parse().ok()?;
            (uri.scheme_str() == Some("https"))
                .then(|| uri.host().map(str::to_owned))
                .flatten()
        })
        .or_else(|| settings.domains.first().cloned())
        .or_else(|| settings.turn_host.clone())
        .unwrap_or_else(|| url_host(public_ip))
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_turns_host_on_the_https_port_is_the_certificates_name() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let host = |args: &[&str]| {
            let settings = Settings::parse_from(std::iter::once("visavis").chain(args.iter().copied()));
            https_host(&settings, ip)
        };
        assert_eq!(host(&[]), "203.0.113.7");
        assert_eq!(host(&["--turn-host", "turn.example.org"]), "turn.example.org");
        assert_eq!(
            host(&[
                "--turn-host",
                "turn.example.org",
                "--domain",
                "consult.example.org"
            ]),
            "consult.example.org"
        );
        assert_eq!(
            host(&[
                "--turn-host",
                "turn.example.org",
                "--public-origin",
                "http://plain.example.org",
                "--public-origin",
                "https://consult.example.org:8443"
            ]),
            "consult.example.org"
        );
        assert_eq!(
            https_host(&Settings::parse_from(["visavis"]), "2001:db8::1".parse().unwrap()),
            "[2001:db8::1]"
        );
    }
}
