//! The settings from every place: the README's option table, `--help` and the config file's
//! keys kept in step; the config file under the environment and the flags; and
//! `visavis check-config` on good and bad files, run as the real binary.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

use visavis_server::config_file::{self, Kind, Source};

use super::TempDir;

/// Runs the binary with `args` and only the environment variables `env` of its own.
fn visavis(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_visavis"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("VISAVIS_") {
            command.env_remove(name);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run visavis")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn no_env(_: &str) -> Option<OsString> {
    None
}

/// The long options `visavis --help` lists, without --help and --version.
fn help_options() -> BTreeSet<String> {
    let output = visavis(&["--help"], &[]);
    assert!(output.status.success());
    stdout(&output)
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line
                .strip_prefix("-h, ")
                .or(line.strip_prefix("-V, "))
                .unwrap_or(line);
            let name = line.strip_prefix("--")?;
            Some(name.split([' ', '=', '<']).next()?.to_owned())
        })
        .filter(|name| name != "help" && name != "version")
        .collect()
}

/// The options in the first column of the README's option tables.
fn readme_options() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
        .expect("README.md");
    readme
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .flat_map(|line| {
            let first = line.split('|').nth(1).unwrap_or_default();
            first
                .split("`--")
                .skip(1)
                .map(|rest| {
                    rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A value for every key that its option takes (the default where there is one).
fn a_value_for_every_key() -> Vec<(String, String)> {
    let defaults = config_file::load(["visavis"], &no_env).expect("defaults");
    defaults
        .entries
        .iter()
        .map(|entry| {
            let value = match entry.kind {
                Kind::Switch => "true".to_owned(),
                Kind::Integer if !entry.values.is_empty() => entry.values[0].clone(),
                Kind::Integer => first_taken(&entry.key, &["600", "1", "60"]),
                Kind::Text | Kind::List => {
                    let candidates = [
                        "127.0.0.1:1",
                        "127.0.0.1",
                        "10.0.0.0/8",
                        "https://a.example",
                        "x",
                        "visit.example.com",
                    ];
                    let mut candidates: Vec<String> = candidates.iter().map(|c| format!("\"{c}\"")).collect();
                    if let Some(default) = entry.values.first() {
                        candidates.insert(0, format!("\"{default}\""));
                    }
                    let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
                    let one = first_taken(&entry.key, &candidates);
                    if entry.kind == Kind::List {
                        format!("[{one}]")
                    } else {
                        one
                    }
                }
            };
            (entry.key.clone(), value)
        })
        .collect()
}

/// The first of `candidates` that `key` takes in a file.
fn first_taken(key: &str, candidates: &[&str]) -> String {
    let dir = TempDir::new(&format!("candidate-{key}"));
    for candidate in candidates {
        let file = dir.file("c.toml", &format!("{key} = {candidate}\n"));
        // An option that needs another (--tls-cert needs --tls-key) is not refused for its value.
        let taken = match config_file::load(["visavis", "--config", &file], &no_env) {
            Ok(loaded) => loaded.file_problems.is_empty(),
            Err(err) => err.error.kind() == clap::error::ErrorKind::MissingRequiredArgument,
        };
        if taken {
            return (*candidate).to_owned();
        }
    }
    panic!("`{key}` takes none of {candidates:?}");
}

#[test]
fn the_readme_help_and_config_keys_name_the_same_options() {
    let help = help_options();
    let readme = readme_options();
    assert!(
        help.contains("listen") && help.contains("turn-tls-listen"),
        "{help:?}"
    );
    let undocumented: Vec<_> = help.difference(&readme).collect();
    let unknown: Vec<_> = readme.difference(&help).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "in --help but not in the README's table: {undocumented:?}; \
         in the README's table but not an option: {unknown:?}"
    );

    // Every option but --config is a key, and a file setting every one of them loads.
    let keys = a_value_for_every_key();
    let names: BTreeSet<String> = keys.iter().map(|(k, _)| k.clone()).collect();
    let mut options = help.clone();
    options.remove("config");
    assert_eq!(names, options, "config keys against --help");
    // --domain excludes a certificate of one's own and plain HTTP: two files, which together
    // set every key, each without the other's side.
    let dir = TempDir::new("every-key");
    for left_out in [&["domain"][..], &["tls-cert", "tls-key", "insecure-http"]] {
        let text: String = keys
            .iter()
            .filter(|(k, _)| !left_out.contains(&k.as_str()))
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        let file = dir.file("every.toml", &text);
        let loaded = config_file::load(["visavis", "--config", &file], &no_env)
            .unwrap_or_else(|e| panic!("{}\n{text}", e.error));
        assert_eq!(loaded.file_problems, Vec::<String>::new(), "{text}");
        for entry in loaded
            .entries
            .iter()
            .filter(|e| !left_out.contains(&e.key.as_str()))
        {
            assert_eq!(entry.source, Source::File, "{}", entry.key);
        }
    }
}

#[test]
fn check_config_shows_where_each_setting_comes_from() {
    let dir = TempDir::new("precedence");
    let file = dir.file(
        "visavis.toml",
        "room-capacity = 3\nmesh-limit = 4\nring-timeout = 5\nlisten = \"127.0.0.1:0\"\n",
    );
    let output = visavis(
        &["check-config", "--mesh-limit", "9"],
        &[
            ("VISAVIS_CONFIG", &file),
            ("VISAVIS_ROOM_CAPACITY", "7"),
            ("VISAVIS_MESH_LIMIT", "8"),
        ],
    );
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("ring-timeout"), "ring-timeout = 5 # file");
    assert_eq!(
        line("room-capacity"),
        "room-capacity = 7 # env VISAVIS_ROOM_CAPACITY"
    );
    assert_eq!(line("mesh-limit"), "mesh-limit = 9 # flag");
    assert_eq!(line("chat-history"), "chat-history = 100 # default");
    assert!(out.contains(&format!("# config file: {file}")), "{out}");
    assert!(out.ends_with("no problems found\n"), "{out}");
}

#[test]
fn check_config_passes_a_good_file_with_a_certificate() {
    let dir = TempDir::new("good");
    super::https::write_certificate(&dir.0);
    let file = dir.file(
        "visavis.toml",
        &format!(
            "listen = \"0.0.0.0:8443\"\ntls-cert = \"{}\"\ntls-key = \"{}\"\n\
             metrics-listen = \"127.0.0.1:9090\"\nturn-secret = \"hush\"\n\
             frame-ancestors = [\"https://clinic.example.org\"]\n",
            dir.path("cert.pem"),
            dir.path("key.pem"),
        ),
    );
    let output = visavis(&["check-config", "--config", &file], &[]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("frame-ancestors = [\"https://clinic.example.org\"]"),
        "{out}"
    );
    assert!(!out.contains("hush"), "secrets are not printed:\n{out}");
    assert!(out.ends_with("no problems found\n"), "{out}");
}

#[test]
fn check_config_lists_every_problem_and_exits_1() {
    let dir = TempDir::new("bad");
    // 203.0.113.0/24 is for documentation: never this machine's.
    let file = dir.file(
        "visavis.toml",
        &format!(
            "listen = \"0.0.0.0:8443\"\n\
             tls-cert = \"{missing}/cert.pem\"\ntls-key = \"{missing}/key.pem\"\n\
             public-ip = \"203.0.113.9\"\n\
             metrics-listen = \"127.0.0.1:8443\"\n\
             turn-listen = \"0.0.0.0:62000\"\n",
            missing = dir.path("missing"),
        ),
    );
    let output = visavis(&["check-config", "--config", &file], &[]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    for expected in [
        "4 problem(s):",
        &format!("--tls-cert/--tls-key: cannot open {}/missing/cert.pem", dir.0.display()),
        "--public-ip 203.0.113.9 is not an address of this machine (it has ",
        "--listen 0.0.0.0:8443 and --metrics-listen 127.0.0.1:8443 both take TCP port 8443 (0.0.0.0 covers 127.0.0.1)",
        "--turn-listen 0.0.0.0:62000 and --turn-relay-ports 0.0.0.0:61000-65535 both take UDP port 62000",
    ] {
        assert!(out.contains(expected), "no {expected:?} in\n{out}");
    }

    // A bad file, and a data folder under a file: the self-signed certificate has nowhere to go.
    let blocker = dir.file("not-a-folder", "");
    let file = dir.file(
        "typos.toml",
        &format!(
            "listen = \"0.0.0.0:8443\"\nlisen = \"0.0.0.0:8443\"\nroom-capacity = 0\n\
             data-dir = \"{blocker}/data\"\n"
        ),
    );
    let output = visavis(&["check-config", "--config", &file], &[]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    for expected in [
        "3 problem(s):".to_owned(),
        format!("{file}:2: unknown key `lisen` (did you mean `listen`?)"),
        format!("{file}:3: `room-capacity`: invalid value '0'"),
        format!("--data-dir {blocker}/data: {blocker} is not a folder"),
    ] {
        assert!(out.contains(&expected), "no {expected:?} in\n{out}");
    }

    // A command line that does not parse: 1 as well.
    let output = visavis(&["check-config", "--listen", "nowhere"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen"));
}

#[test]
fn the_server_will_not_start_with_a_bad_file() {
    let dir = TempDir::new("serve");
    let file = dir.file("visavis.toml", "listen = \"127.0.0.1:0\"\nno-trun = true\n");
    let output = visavis(&["--config", &file], &[]);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains(&format!(
            "{file}:2: unknown key `no-trun` (did you mean `no-turn`?)"
        )),
        "{err}"
    );
}

/// deploy/visavis.toml passes check-config (its data folder moved to a temporary one by a flag,
/// which overrides the file), and every key it shows commented out is a real one.
#[test]
fn the_example_file_passes_check_config() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/visavis.toml");
    let example = example.to_str().expect("path");
    let dir = TempDir::new("example");
    let data = dir.path("data");
    let output = visavis(&["check-config", "--config", example, "--data-dir", &data], &[]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains(&format!("data-dir = \"{data}\"")), "{out}");

    let text = std::fs::read_to_string(example).expect("example");
    let keys: BTreeSet<String> = config_file::load(["visavis"], &no_env)
        .expect("defaults")
        .entries
        .into_iter()
        .map(|e| e.key)
        .collect();
    // Uncommented together (--tls-cert needs --tls-key), they load.
    let mut uncommented = String::new();
    for line in text.lines() {
        let Some((key, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(" = ")) else {
            continue;
        };
        if key.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            assert!(
                keys.contains(key),
                "deploy/visavis.toml mentions `{key}`, not a key"
            );
            uncommented.push_str(&line[2..]);
            uncommented.push('\n');
        }
    }
    assert!(uncommented.contains("tls-cert"), "{uncommented}");
    let dir = TempDir::new("example-commented");
    let file = dir.file("all.toml", &uncommented);
    let loaded =
        config_file::load(["visavis", "--config", &file], &no_env).unwrap_or_else(|e| panic!("{}", e.error));
    assert_eq!(loaded.file_problems, Vec::<String>::new(), "{uncommented}");
}
