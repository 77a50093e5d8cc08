//! The real `visavis` binary: its help text, and shutdown on SIGTERM / SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::Client;

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
        let mut child = Command::new(env!("CARGO_BIN_EXE_visavis"))
            .args(["--listen", "127.0.0.1:0", "--turn-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "visavis=info")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn visavis");
        // The first log line names the address it bound.
        let stdout = child.stdout.take().expect("stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            reader.read_line(&mut line).expect("read log");
            // Keep draining, so later log lines do not hit a closed pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            line
        })
        .await
        .expect("log reader");
        let addr = line
            .split("serving http://")
            .nth(1)
            .map(str::trim)
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();

        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("connect");
        let mut client = Client { ws, last_sn: 0 };
        client
            .send(json!({"type": "join", "version": 1, "room": "r", "name": "A"}))
            .await;
        client.expect("joined").await;

        let started = Instant::now();
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        assert_eq!(client.expect_close().await, CloseCode::Away);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
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
