//! Bots against a real visavis server started in this process: three join a group call
//! through the SFU, each publishes, and each receives the others' video and audio.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use visavis_bot::bot::{self, BotConfig, Speak};
use visavis_bot::media::Recording;
use visavis_bot::peer::Shared;
use visavis_server::{App, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bots_see_and_hear_each_other_through_the_sfu() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let settings = Settings::parse_from([
        "visavis",
        "--no-turn",
        "--state",
        "none",
        "--sfu-listen",
        "127.0.0.1:0",
    ]);
    let shutdown = CancellationToken::new();
    let app = App::start(listener, settings, shutdown.clone()).await.unwrap();
    let server = tokio::spawn(app.serve());

    let shared = Arc::new(Shared::new().unwrap());
    let recording = Arc::new(Recording::synthetic(3));
    let bots: Vec<_> = (0..3)
        .map(|i| {
            let config = BotConfig {
                url: url.clone(),
                room: "bots".into(),
                token: None,
                name: format!("bot{i}"),
                source: [127, 0, 0, 1].into(),
                stay: Duration::from_secs(3),
                recording: Some(recording.clone()),
                speak: Some(Speak {
                    index: i,
                    count: 3,
                    period: Duration::from_millis(500),
                }),
                record: false,
                view: None,
                meter: Arc::default(),
            };
            tokio::spawn(bot::run(shared.clone(), config))
        })
        .collect();
    let mut reports = Vec::new();
    for b in bots {
        reports.push(b.await.unwrap());
    }
    shutdown.cancel();
    server.await.unwrap().unwrap();

    for r in &reports {
        assert_eq!(r.error, None, "{}", r.to_json());
        assert!(r.connected);
        assert_eq!(r.publishers, 2, "{}", r.to_json());
        // Three seconds at 30 fps from each of two others: most of them arrive (the last
        // to join has the least time with the others).
        assert!(r.sent_video_frames >= 60, "{}", r.to_json());
        assert!(r.camera_frames_min.unwrap_or(0) >= 30, "{}", r.to_json());
        assert!(r.received.audio_frames >= 100, "{}", r.to_json());
        assert_eq!(
            r.received.tracks,
            4,
            "two cameras and two microphones: {}",
            r.to_json()
        );
        assert_eq!(r.received.freezes, 0, "{}", r.to_json());
    }
}
