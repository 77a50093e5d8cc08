//! The real `visavis` binary: starting it (the one helper, shared with the churn test), its
//! help text, and shutdown on SIGTERM / SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use visavis_client::Client;
use visavis_protocol::ServerMsg;

use super::{counts_from_metrics, get_over_socket, join, TempDir, TestClient};

/// A running `visavis` binary, killed when dropped.
pub struct Binary {
    pub child: Child,
    /// Its `--data-dir`, unless the test gave one: removed when dropped.
    _data: Option<TempDir>,
    /// The HTTP(S) address it bound.
    pub addr: String,
    /// Where it serves metrics.
    pub metrics: String,
}

impl Binary {
    /// Starts the binary on ephemeral ports (unless `args` has a `--listen`) with `args` and
    /// reads the addresses it bound from its log: the first line, "visavis <version> serving
    /// http://ADDR" (or https), and "metrics on
    /// http://ADDR/metrics": documented start-up output, and the only way to learn an
    /// ephemeral port from outside the process.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_with_open_files(None, args).await
    }

    /// As [`Binary::start`], with its open-file limit (soft and hard) set to `limit`.
    pub async fn start_with_open_files(limit: Option<u32>, args: &[&str]) -> Self {
        let ulimit = limit.map_or(String::new(), |n| format!("ulimit -n {n} && "));
        // A data directory of its own: tests run side by side, and the state file is locked.
        let data = (!args.contains(&"--data-dir")).then(|| TempDir::new("binary"));
        let data_args = data.as_ref().map_or(vec![], |d| {
            vec!["--data-dir".to_owned(), d.0.display().to_string()]
        });
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("{ulimit}exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_visavis"))
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(if args.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"]
            })
            // The SFU on a port of its own too (a fixed --listen would give it 3479).
            .args(
                if args
                    .iter()
                    .any(|a| a.starts_with("--sfu-listen") || a.starts_with("--group-media"))
                {
                    &[][..]
                } else {
                    &["--sfu-listen", "127.0.0.1:0"]
                },
            )
            .args(data_args)
            .args(args)
            // The start-up lines are all the tests read; the server's other logs would only be
            // drained (thousands of lines in the churn test).
            .env(
                "RUST_LOG",
                "visavis=info,visavis_server=warn,visavis_server::metrics=info",
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn visavis");
        let stdout = child.stdout.take().expect("stdout");
        let (first, metrics) = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut lines = Vec::new();
            while !lines
                .last()
                .is_some_and(|l: &String| l.contains("metrics on http://"))
            {
                let mut line = String::new();
                if reader.read_line(&mut line).expect("log line") == 0 || lines.len() > 20 {
                    panic!("no metrics address in {lines:?}");
                }
                lines.push(line);
            }
            // Keep draining, so later log lines do not hit a closed pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            (lines[0].clone(), lines.pop().unwrap_or_default())
        })
        .await
        .expect("log reader");
        let after = |line: &str, marker: &str| {
            line.split(marker)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no {marker} in {line:?}"))
                .trim_end_matches("/metrics")
                .to_owned()
        };
        let addr = after(&first.replace("https://", "http://"), "serving http://");
        let metrics = after(&metrics, "metrics on http://");
        Self {
            child,
            _data: data,
            addr,
            metrics,
        }
    }

    /// `ws://ADDR/ws`.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The live counts from `/metrics` over a real socket (another process: there is no
    /// router to call); see [`counts_from_metrics`].
    pub async fn counts(&self) -> Value {
        let addr = self.metrics.parse().expect("metrics address");
        let response = get_over_socket(addr, [127, 0, 0, 1], "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        let (_, body) = response.split_once("\r\n\r\n").expect("a body");
        counts_from_metrics(body)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn help_documents_every_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_visavis"))
        .arg("--help")
        .output()
        .expect("run visavis --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--listen",
        "VISAVIS_LISTEN",
        "127.0.0.1:8080",
        "--room-capacity",
        "--ring-timeout",
        "--max-message-size",
        "--outbound-queue",
    ] {
        assert!(help.contains(option), "--help lacks {option}:\n{help}");
    }
}

#[tokio::test]
async fn sigterm_and_sigint_close_sessions_with_1001_and_exit_promptly() {
    for signal in ["-TERM", "-INT"] {
        let mut binary = Binary::start(&["--turn-listen", "127.0.0.1:0"]).await;
        let mut client = TestClient::new(Client::connect(&binary.url()).await.expect("connect"));
        client.send(join("r", "A")).await;
        expect!(client, ServerMsg::Joined { .. });

        let started = Instant::now();
        let killed = Command::new("kill")
            .args([signal, &binary.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        assert_eq!(client.expect_close().await, CloseCode::Away);
        let status = loop {
            if let Some(status) = binary.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "still running 5 s after {signal}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "{signal}: exit status {status}");
    }
}

/// Every connection and relay takes a file descriptor: started with the common soft limit of
/// 1,024, the binary raises it to the hard one.
#[test]
fn the_binary_takes_every_file_descriptor_the_system_allows() {
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -Sn 1024 && exec \"$0\" --listen 127.0.0.1:0 --no-turn --state none",
        ])
        .arg(env!("CARGO_BIN_EXE_visavis"))
        .env("RUST_LOG", "visavis=info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn visavis");
    // Its second log line says it raised the limit; by then /proc shows it.
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    for _ in 0..2 {
        line.clear();
        reader.read_line(&mut line).expect("log");
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).expect("limits");
    let _ = child.kill();
    let _ = child.wait();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a line for open files");
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers.len(), 2, "{open_files}");
    assert_ne!(numbers[0], "1024", "{open_files} ({line})");
    assert_eq!(
        numbers[0], numbers[1],
        "soft limit raised to the hard one: {open_files}"
    );
}

/// `systemctl reload` (deploy/visavis.service) sends SIGHUP, which reloads certificate files;
/// without any, it must not end the process, as the signal's default action would.
#[tokio::test]
async fn sighup_without_certificate_files_leaves_the_server_running() {
    let mut binary = Binary::start(&["--no-turn"]).await;
    let hup = Command::new("kill")
        .args(["-HUP", &binary.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        binary.child.try_wait().expect("wait").is_none(),
        "SIGHUP ended the server"
    );
    assert_eq!(binary.counts().await["sessions"], 0, "still serving");
}

/// `--log-format json`: every line a JSON object a log collector can read, the message and
/// level as fields.
#[test]
fn json_logs_are_one_object_a_line() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_visavis"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-turn",
            "--state",
            "none",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn visavis");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a log line");
    let _ = child.kill();
    let _ = child.wait();
    let line: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(line["level"], "INFO", "{line}");
    let message = line["message"].as_str().unwrap_or_default();
    assert!(message.contains("serving http://127.0.0.1:"), "{line}");
}
