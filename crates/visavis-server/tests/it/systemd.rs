//! deploy/visavis.service: it names only options the binary has, keeps its hardening, and,
//! where `systemd-analyze` exists, systemd reads it without a complaint.

use std::process::Command;

const UNIT: &str = include_str!("../../../../deploy/visavis.service");
const GUIDE: &str = include_str!("../../../../docs/deploy.md");

/// The `[Service]` section's settings, in order (a key may come more than once).
fn service() -> Vec<(&'static str, &'static str)> {
    UNIT.lines()
        .map(str::trim)
        .skip_while(|line| *line != "[Service]")
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.split_once('=')
                .unwrap_or_else(|| panic!("not a setting: {line}"))
        })
        .collect()
}

fn the(key: &str) -> &'static str {
    let values: Vec<_> = service().into_iter().filter(|(k, _)| *k == key).collect();
    assert_eq!(values.len(), 1, "{key} once in [Service]");
    values[0].1
}

#[test]
fn the_systemd_unit_names_only_real_options_and_keeps_its_hardening() {
    let out = Command::new(env!("CARGO_BIN_EXE_visavis"))
        .arg("--help")
        .output()
        .expect("run visavis --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let options: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
        .filter(|w| w.starts_with("--"))
        .collect();

    // The binary where the guide installs it, with flags it has.
    let mut exec = the("ExecStart").split_whitespace();
    assert_eq!(exec.next(), Some("/usr/local/bin/visavis"));
    assert!(GUIDE.contains("install -m 0755 target/release/visavis /usr/local/bin/visavis"));
    for word in exec {
        if word.starts_with("--") {
            let flag = word.split('=').next().unwrap_or(word);
            assert!(options.contains(&flag), "visavis has no {flag}");
        }
    }
    // Every VISAVIS_ variable the unit and the guide name is one the binary reads.
    let variables = |text: &'static str| {
        text.match_indices("VISAVIS_").map(move |(at, _)| {
            let name = &text[at..];
            let end = name
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(name.len());
            &name[..end]
        })
    };
    for name in variables(UNIT).chain(variables(GUIDE)) {
        if name != "VISAVIS_" {
            assert!(
                help.contains(&format!("[env: {name}=")),
                "visavis reads no {name}"
            );
        }
    }
    // Its data where systemd keeps the service's state.
    let state = the("StateDirectory");
    assert!(
        service().contains(&("Environment", &format!("VISAVIS_DATA_DIR=%S/{state}"))),
        "the data directory is the state directory"
    );

    for (key, value) in [
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("LimitNOFILE", "65536"),
        ("Restart", "on-failure"),
        // A restart leaves the SFU worker to the next process.
        ("KillMode", "process"),
        // SIGHUP reloads the certificate files (and ends nothing without them).
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(the(key), value, "{key}");
    }
}

/// `systemd-analyze verify` on the unit, with the test's binary in place of the installed
/// one; skipped where systemd is not installed.
#[test]
fn systemd_accepts_the_unit() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped: no systemd-analyze");
        return;
    }
    let dir = std::env::temp_dir().join(format!("visavis-systemd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("visavis.service");
    let unit = UNIT.replace(
        "ExecStart=/usr/local/bin/visavis",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_visavis")),
    );
    std::fs::write(&path, unit).expect("unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // Unknown keys and bad values are only warnings, about lines of the unit.
    assert!(!said.contains("visavis.service"), "{said}");
}
