//! `visavis check-config`: the settings in effect and every problem with them. [`problems`]
//! decides from the settings and [`Facts`] about this machine, gathered by [`Facts::gather`]
//! (the only part that looks at the machine).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use crate::config_file::{Entry, Kind, Loaded, Source};
use crate::{Https, Settings};

/// What [`problems`] needs to know about this machine.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// This machine's addresses; `None` when they could not be listed (then nothing is
    /// checked against them).
    pub addresses: Option<Vec<IpAddr>>,
    /// Each certificate and key pair in the settings, and why it does not load, if it does not.
    pub certificates: BTreeMap<(PathBuf, PathBuf), Result<(), String>>,
    /// Why `--data-dir` cannot keep the self-signed certificate, if it is needed and cannot.
    pub data_dir: Option<Result<(), String>>,
    /// Why `--data-dir` cannot keep the API key and secret made for the webhooks or the
    /// access tokens, if they are needed, not given, and cannot be kept.
    pub credentials_dir: Option<Result<(), String>>,
}

impl Facts {
    /// Looks at this machine: its addresses, the certificate files, `--data-dir`.
    pub fn gather(settings: &Settings) -> Self {
        let addresses = if_addrs::get_if_addrs()
            .ok()
            .map(|interfaces| interfaces.iter().map(|i| i.ip()).collect());
        let certificates = certificate_pairs(settings)
            .into_iter()
            .map(|(_, cert, key)| {
                let loaded = crate::tls::load(&cert, &key)
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"));
                ((cert, key), loaded)
            })
            .collect();
        let data_dir = self_signed(settings).then(|| {
            data_dir_usable(
                &settings.data_dir,
                &["self-signed-cert.pem", "self-signed-key.pem"],
            )
        });
        let credentials_dir = needs_api_secret(settings)
            .then(|| data_dir_usable(&settings.data_dir, &["api-credentials.json"]));
        Self {
            addresses,
            certificates,
            data_dir,
            credentials_dir,
        }
    }
}

/// Every problem with `settings` on a machine described by `facts`, as sentences naming the
/// options concerned.
pub fn problems(settings: &Settings, facts: &Facts) -> Vec<String> {
    let mut problems = Vec::new();
    for (flag, cert, key) in certificate_pairs(settings) {
        if let Some(Err(err)) = facts.certificates.get(&(cert, key)) {
            problems.push(format!("{flag}: {err}"));
        }
    }
    if self_signed(settings) {
        if let Some(Err(err)) = &facts.data_dir {
            problems.push(format!(
                "--data-dir {}: {err}; the self-signed certificate is kept there (or give \
                 --tls-cert and --tls-key)",
                settings.data_dir.display()
            ));
        }
    }
    if needs_api_secret(settings) {
        if let Some(Err(err)) = &facts.credentials_dir {
            problems.push(format!(
                "--data-dir {}: {err}; --webhook-url and --access token need the API secret: \
                 give --api-key and --api-secret, or a --data-dir that can keep the pair made \
                 for you",
                settings.data_dir.display()
            ));
        }
    }
    if let Some(addresses) = &facts.addresses {
        let ours = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified() || addresses.contains(&ip);
        let mut listed: Vec<String> = Vec::new();
        for ip in addresses.iter().map(IpAddr::to_string) {
            if !listed.contains(&ip) {
                listed.push(ip);
            }
        }
        let listed = listed.join(", ");
        if let Some(ip) = settings.public_ip {
            if ip.is_unspecified() || !addresses.contains(&ip) {
                problems.push(format!(
                    "--public-ip {ip} is not an address of this machine (it has {listed}): \
                     relays would advertise an address that does not reach it, unless a NAT \
                     forwards it here"
                ));
            }
        }
        let bound = [
            ("--listen", Some(settings.listen())),
            ("--http-listen", settings.http_listen()),
            ("--metrics-listen", settings.metrics_listen),
            ("--turn-listen", settings.turn_listen),
            ("--turn-tls-listen", settings.turn_tls_listen),
        ];
        for (flag, addr) in bound {
            if let Some(addr) = addr.filter(|a| !ours(a.ip())) {
                problems.push(format!(
                    "{flag} {addr}: {} is not an address of this machine (it has {listed})",
                    addr.ip()
                ));
            }
        }
    }
    let sockets = sockets(settings);
    for (i, a) in sockets.iter().enumerate() {
        for b in &sockets[i + 1..] {
            if let Some(port) = a.clash(b) {
                problems.push(format!(
                    "{} and {} both take {} port {port}{}",
                    a.shown(),
                    b.shown(),
                    a.protocol,
                    if a.ip == b.ip {
                        String::new()
                    } else {
                        format!(" ({} covers {})", wider(a.ip, b.ip), narrower(a.ip, b.ip))
                    }
                ));
            }
        }
    }
    if let Err(err) = crate::ice::secret(settings) {
        problems.push(err.to_string());
    }
    if let Err(err) = crate::headers::SecurityHeaders::new(&settings.frame_ancestors, false) {
        problems.push(err.to_string());
    }
    if let Some(secret) = &settings.api_secret {
        if secret.chars().count() < crate::token::MIN_SECRET_CHARS {
            problems.push(format!(
                "--api-secret has {} characters; access tokens need at least {}",
                secret.chars().count(),
                crate::token::MIN_SECRET_CHARS
            ));
        }
    }
    problems
}

/// Webhooks are signed, and access tokens checked, with the API secret; without `--api-key`
/// and `--api-secret` the server makes a pair and keeps it in `--data-dir`.
fn needs_api_secret(settings: &Settings) -> bool {
    let given = settings.api_key.is_some() && settings.api_secret.is_some();
    let needed = !settings.webhook_urls.is_empty() || settings.access == crate::config::Access::Token;
    needed && !given
}

/// The certificate and key pairs the server would load, with the option that names them.
fn certificate_pairs(settings: &Settings) -> Vec<(&'static str, PathBuf, PathBuf)> {
    let mut pairs = Vec::new();
    if let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) {
        pairs.push(("--tls-cert/--tls-key", cert.clone(), key.clone()));
    }
    if let (Some(cert), Some(key)) = (&settings.turn_tls_cert, &settings.turn_tls_key) {
        pairs.push(("--turn-tls-cert/--turn-tls-key", cert.clone(), key.clone()));
    }
    pairs
}

/// Whether `--listen` serves HTTPS with the self-signed certificate kept in `--data-dir`.
fn self_signed(settings: &Settings) -> bool {
    settings.https(settings.listen().ip()) == Https::SelfSigned
}

/// Whether `dir` holds the self-signed certificate, or can be made to: it exists and a file
/// can be made in it, or the nearest folder above that exists can have it made.
fn data_dir_usable(dir: &Path, keeps: &[&str]) -> Result<(), String> {
    if keeps.iter().all(|file| dir.join(file).is_file()) {
        return Ok(());
    }
    let mut existing = dir;
    while !existing.exists() {
        existing = match existing.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
    }
    if !existing.is_dir() {
        return Err(format!("{} is not a folder", existing.display()));
    }
    let probe = existing.join(format!(".visavis-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(err) => Err(format!("cannot write in {}: {err}", existing.display())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        })
    }
}

/// A socket (or, for relays, a range of them) the server binds.
#[derive(Debug)]
struct Socket {
    option: &'static str,
    protocol: Protocol,
    ip: IpAddr,
    ports: RangeInclusive<u16>,
}

impl Socket {
    fn new(option: &'static str, protocol: Protocol, addr: SocketAddr) -> Self {
        Self {
            option,
            protocol,
            ip: addr.ip(),
            ports: addr.port()..=addr.port(),
        }
    }

    fn shown(&self) -> String {
        let (low, high) = (self.ports.start(), self.ports.end());
        let ports = if low == high {
            low.to_string()
        } else {
            format!("{low}-{high}")
        };
        match self.ip {
            IpAddr::V6(ip) => format!("{} [{ip}]:{ports}", self.option),
            IpAddr::V4(ip) => format!("{} {ip}:{ports}", self.option),
        }
    }

    /// The first port both would bind, if they cannot both be bound. Port 0 is any free port.
    fn clash(&self, other: &Self) -> Option<u16> {
        if self.protocol != other.protocol || !overlap(self.ip, other.ip) {
            return None;
        }
        let low = (*self.ports.start()).max(*other.ports.start());
        let high = (*self.ports.end()).min(*other.ports.end());
        (low <= high && high != 0).then_some(low.max(1))
    }
}

/// Whether binding the same port on `a` and on `b` collides: the same address, or an
/// unspecified one (`0.0.0.0` takes every IPv4 address; `[::]` every address, as Linux binds
/// it dual-stack).
fn overlap(a: IpAddr, b: IpAddr) -> bool {
    let covers = |wide: IpAddr, other: IpAddr| wide.is_unspecified() && (wide.is_ipv6() || other.is_ipv4());
    a == b || covers(a, b) || covers(b, a)
}

fn wider(a: IpAddr, b: IpAddr) -> IpAddr {
    if a.is_unspecified() {
        a
    } else {
        b
    }
}

fn narrower(a: IpAddr, b: IpAddr) -> IpAddr {
    if a.is_unspecified() {
        b
    } else {
        a
    }
}

/// Every socket the settings bind.
fn sockets(settings: &Settings) -> Vec<Socket> {
    let mut sockets = vec![Socket::new("--listen", Protocol::Tcp, settings.listen())];
    if let Some(addr) = settings.metrics_listen {
        sockets.push(Socket::new("--metrics-listen", Protocol::Tcp, addr));
    }
    if let Some(addr) = settings.http_listen() {
        sockets.push(Socket::new("--http-listen", Protocol::Tcp, addr));
    }
    if let Some(addr) = settings.turn_listen() {
        sockets.push(Socket::new("--turn-listen", Protocol::Udp, addr));
        sockets.push(Socket::new("--turn-listen", Protocol::Tcp, addr));
        let (low, high) = settings.turn_relay_ports;
        sockets.push(Socket {
            option: "--turn-relay-ports",
            protocol: Protocol::Udp,
            ip: addr.ip(),
            ports: low..=high,
        });
    }
    if let Some(addr) = settings.turn_tls_listen() {
        sockets.push(Socket::new("--turn-tls-listen", Protocol::Tcp, addr));
    }
    sockets
}

/// The report `check-config` prints: every setting as a TOML line with where it comes from,
/// then the problems. Returns it and the number of problems.
pub fn report(loaded: &Loaded, facts: &Facts) -> (String, usize) {
    let mut out = String::new();
    let file = match &loaded.file {
        Some(path) => path.display().to_string(),
        None => "none".to_owned(),
    };
    let _ = writeln!(out, "# visavis check-config: the settings in effect");
    let _ = writeln!(out, "# config file: {file}");
    let _ = writeln!(
        out,
        "# after each: where it comes from (flag, env VARIABLE, file, default)\n"
    );
    for entry in &loaded.entries {
        let line = toml_line(entry);
        let _ = writeln!(out, "{line:<47} # {}", entry.source);
    }
    let mut problems = loaded.file_problems.clone();
    problems.extend(self::problems(&loaded.settings, facts));
    if problems.is_empty() {
        let _ = writeln!(out, "\nno problems found");
    } else {
        let _ = writeln!(out, "\n{} problem(s):", problems.len());
        for problem in &problems {
            let _ = writeln!(out, "  - {}", problem.replace('\n', "\n    "));
        }
    }
    (out, problems.len())
}

/// `key = value` as in a config file, or a comment when unset or secret.
fn toml_line(entry: &Entry) -> String {
    let key = &entry.key;
    if entry.values.is_empty() {
        return match entry.kind {
            Kind::List => format!("{key} = []"),
            _ => format!("# {key} (not set)"),
        };
    }
    if entry.secret && entry.source != Source::Default {
        return format!("# {key} = (secret, not shown)");
    }
    let value = match entry.kind {
        Kind::Switch | Kind::Integer => entry.values.join(","),
        Kind::Text => quote(&entry.values.join(",")),
        Kind::List => {
            let items: Vec<String> = entry.values.iter().map(|v| quote(v)).collect();
            format!("[{}]", items.join(", "))
        }
    };
    format!("{key} = {value}")
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut quoted = String::from('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", u32::from(c));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(args: &[&str]) -> Settings {
        Settings::parse_from(std::iter::once("visavis").chain(args.iter().copied()))
    }

    /// A machine with 192.0.2.10 on which every file loads.
    fn machine() -> Facts {
        Facts {
            addresses: Some(vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([192, 0, 2, 10])]),
            certificates: BTreeMap::new(),
            data_dir: Some(Ok(())),
            credentials_dir: Some(Ok(())),
        }
    }

    #[test]
    fn the_defaults_have_no_problem() {
        assert_eq!(problems(&settings(&[]), &machine()), Vec::<String>::new());
        let lan = settings(&["--listen", "0.0.0.0:8443", "--metrics-listen", "127.0.0.1:9090"]);
        assert_eq!(problems(&lan, &machine()), Vec::<String>::new());
    }

    #[test]
    fn certificates_that_do_not_load() {
        let s = settings(&[
            "--tls-cert",
            "/c.pem",
            "--tls-key",
            "/k.pem",
            "--turn-tls-cert",
            "/tc.pem",
            "--turn-tls-key",
            "/tk.pem",
        ]);
        let mut facts = machine();
        facts.certificates.insert(
            ("/c.pem".into(), "/k.pem".into()),
            Err("cannot open /c.pem: No such file or directory".into()),
        );
        facts
            .certificates
            .insert(("/tc.pem".into(), "/tk.pem".into()), Ok(()));
        assert_eq!(
            problems(&s, &facts),
            ["--tls-cert/--tls-key: cannot open /c.pem: No such file or directory"]
        );
    }

    #[test]
    fn a_public_ip_or_listen_address_that_is_not_this_machines() {
        let s = settings(&[
            "--public-ip",
            "203.0.113.7",
            "--listen",
            "198.51.100.1:8443",
            "--turn-listen",
            "192.0.2.10:3478",
        ]);
        let found = problems(&s, &machine());
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with(
                "--public-ip 203.0.113.7 is not an address of this machine (it has 127.0.0.1, 192.0.2.10)"
            ),
            "{}",
            found[0]
        );
        assert!(
            found[1].starts_with("--listen 198.51.100.1:8443: 198.51.100.1 is not an address"),
            "{}",
            found[1]
        );
        // Unknown addresses: nothing to say.
        let facts = Facts {
            addresses: None,
            ..machine()
        };
        assert_eq!(problems(&s, &facts), Vec::<String>::new());
        // Loopback is always ours.
        assert!(problems(&settings(&["--listen", "127.0.0.5:80"]), &machine()).is_empty());
    }

    #[test]
    fn ports_that_clash() {
        let found = problems(
            &settings(&["--listen", "0.0.0.0:3478", "--metrics-listen", "127.0.0.1:3478"]),
            &machine(),
        );
        assert_eq!(
            found,
            [
                "--listen 0.0.0.0:3478 and --metrics-listen 127.0.0.1:3478 both take TCP port 3478 (0.0.0.0 covers 127.0.0.1)",
                "--listen 0.0.0.0:3478 and --turn-listen 0.0.0.0:3478 both take TCP port 3478",
                "--metrics-listen 127.0.0.1:3478 and --turn-listen 0.0.0.0:3478 both take TCP port 3478 (0.0.0.0 covers 127.0.0.1)",
            ]
        );
        let found = problems(
            &settings(&[
                "--turn-listen",
                "[::]:62000",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ]),
            &machine(),
        );
        assert_eq!(
            found,
            ["--turn-listen [::]:62000 and --turn-relay-ports [::]:61000-65535 both take UDP port 62000"],
            "port 0 never clashes"
        );
        // Different addresses, or IPv4 against a specific IPv6 address, do not clash.
        assert!(problems(
            &settings(&[
                "--listen",
                "127.0.0.1:8080",
                "--metrics-listen",
                "192.0.2.10:8080"
            ]),
            &machine()
        )
        .is_empty());
        assert!(problems(
            &settings(&["--listen", "0.0.0.0:8080", "--metrics-listen", "[::1]:8080"]),
            &machine()
        )
        .is_empty());
        assert!(problems(
            &settings(&["--listen", "[::]:8080", "--metrics-listen", "127.0.0.1:8080"]),
            &machine()
        )
        .iter()
        .any(|p| p.contains("([::] covers 127.0.0.1)") || p.contains(":: covers 127.0.0.1")));
        // TURN over TLS on the HTTPS port.
        let found = problems(
            &settings(&[
                "--listen",
                "0.0.0.0:443",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--turn-tls-cert",
                "c",
                "--turn-tls-key",
                "k",
                "--turn-tls-listen",
                "0.0.0.0:443",
            ]),
            &machine(),
        );
        assert_eq!(
            found,
            ["--listen 0.0.0.0:443 and --turn-tls-listen 0.0.0.0:443 both take TCP port 443"]
        );
    }

    #[test]
    fn a_data_dir_that_cannot_keep_the_certificate() {
        let mut facts = machine();
        facts.data_dir = Some(Err("cannot write in /srv: Permission denied".into()));
        let lan = settings(&["--listen", "0.0.0.0:8443"]);
        assert_eq!(
            problems(&lan, &facts),
            ["--data-dir visavis-data: cannot write in /srv: Permission denied; the self-signed certificate is kept there (or give --tls-cert and --tls-key)"]
        );
        // Not needed on loopback.
        assert!(problems(&settings(&[]), &facts).is_empty());
    }

    #[test]
    fn webhooks_or_token_access_without_a_secret_or_a_data_dir_to_keep_one() {
        let mut facts = machine();
        facts.credentials_dir = Some(Err("cannot write in /srv: Permission denied".into()));
        let hooks = settings(&["--webhook-url", "https://clinic.example/hooks"]);
        let found = problems(&hooks, &facts);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("--data-dir visavis-data: cannot write in /srv"),
            "{found:#?}"
        );
        assert_eq!(problems(&settings(&["--access", "token"]), &facts).len(), 1);
        // Given a pair, nothing needs keeping; without webhooks or tokens, nothing needs it.
        let given = settings(&[
            "--webhook-url",
            "https://clinic.example/hooks",
            "--api-key",
            "k",
            "--api-secret",
            "0123456789abcdef0123456789abcdef",
        ]);
        assert!(problems(&given, &facts).is_empty());
        assert!(problems(&settings(&[]), &facts).is_empty());
    }

    #[test]
    fn settings_the_server_would_refuse() {
        let found = problems(
            &settings(&[
                "--turn-url",
                "turn:t.example:3478",
                "--frame-ancestors",
                "x; script-src *",
            ]),
            &machine(),
        );
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].contains("--turn-url needs --turn-secret"));
        assert!(found[1].contains("--frame-ancestors"));
    }

    #[test]
    fn a_data_dir_under_a_file_is_not_usable() {
        let file = std::env::temp_dir().join(format!("visavis-check-file-{}", std::process::id()));
        std::fs::write(&file, "").expect("write");
        let result = data_dir_usable(&file.join("data"), &["x"]);
        let _ = std::fs::remove_file(&file);
        assert!(result.is_err_and(|e| e.ends_with("is not a folder")));
        assert_eq!(
            data_dir_usable(&std::env::temp_dir().join("visavis-nonexistent/a/b"), &["x"]),
            Ok(())
        );
    }

    #[test]
    fn values_print_as_toml() {
        let entry = |kind, values: &[&str], secret| Entry {
            key: "k".into(),
            kind,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            source: Source::Flag,
            secret,
        };
        assert_eq!(toml_line(&entry(Kind::Integer, &["16"], false)), "k = 16");
        assert_eq!(toml_line(&entry(Kind::Switch, &["true"], false)), "k = true");
        assert_eq!(
            toml_line(&entry(Kind::Text, &["a\"b\\c\n"], false)),
            r#"k = "a\"b\\c\u000A""#
        );
        assert_eq!(
            toml_line(&entry(Kind::List, &["x", "y"], false)),
            r#"k = ["x", "y"]"#
        );
        assert_eq!(toml_line(&entry(Kind::List, &[], false)), "k = []");
        assert_eq!(toml_line(&entry(Kind::Text, &[], false)), "# k (not set)");
        assert_eq!(
            toml_line(&entry(Kind::Text, &["s3cret"], true)),
            "# k = (secret, not shown)"
        );
    }
}
