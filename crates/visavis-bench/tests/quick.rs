//! The load generator's quick mode against a real visavis server started in this process.

use clap::Parser;
use tokio_util::sync::CancellationToken;
use visavis_bench::{signal, Config, Target};
use visavis_server::{App, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_run_relays_messages_without_errors() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    // A benchmark sends far faster than a person, from one address: lift the message rate
    // limits on servers that have them.
    let unlimited = [
        "--rate-limit",
        "1000000",
        "--rate-burst",
        "1000000",
        "--ip-rate-limit",
        "1000000",
        "--ip-rate-burst",
        "1000000",
    ];
    // No state file: it is locked per process, and nothing here restarts.
    let base = [
        "visavis",
        "--no-turn",
        "--room-capacity",
        "2",
        "--state",
        "none",
        "--group-media",
        "mesh",
    ];
    let settings = Settings::try_parse_from(base.iter().chain(&unlimited))
        .unwrap_or_else(|_| Settings::parse_from(base));
    let shutdown = CancellationToken::new();
    let app = App::start(listener, settings, shutdown.clone()).await.unwrap();
    let server = tokio::spawn(app.serve());

    let mut config = Config::quick(Target::Visavis, url);
    config.server_pid = Some(std::process::id());
    let report = signal::run(config).await.unwrap();

    shutdown.cancel();
    server.await.unwrap().unwrap();

    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    assert_eq!(report.connections, 5 * 2 + 4);
    assert!(report.joins_per_sec > 0.0);
    assert!(report.relayed > 0, "{report:?}");
    let latency = report.latency.expect("latencies recorded");
    assert_eq!(latency.count as u64, report.relayed);
    assert!(latency.p50_us > 0.0 && latency.p50_us <= latency.p99_us && latency.p99_us <= latency.max_us);
    // The server runs in this process, so its counters are ours; they must be readable.
    let server = report.server.expect("server counters");
    assert!(server.rss_end_kib > 0);
    assert!(server.cpu_us_per_msg.is_some());
}
