//! `visavis-bot`: runs many load bots in one group call (`run`), or records what a browser
//! publishes in one for them to replay (`record`). Prints a JSON summary on stdout.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use visavis_bot::bot::{self, BotConfig, BotReport, Meter, Speak};
use visavis_bot::janus;
use visavis_bot::media::Recording;
use visavis_bot::peer::Shared;
use visavis_bot::stats::Totals;

/// Most bots one process runs (each holds a WebSocket, a UDP socket and a str0m peer).
const MAX_BOTS: usize = 1000;
/// Longest a bot stays in a call, in seconds.
const MAX_STAY: u64 = 3600;

#[derive(Parser, Debug)]
#[command(version, about = "Load bots for visavis group calls through the SFU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Joins `--bots` bots to a room's group call; they publish, subscribe and count.
    Run(RunArgs),
    /// Joins one listening bot to a group call and stores the first camera and microphone
    /// it receives (a Chromium's, say) for `run --replay`.
    Record(RecordArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// The signalling WebSocket.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    #[arg(long, default_value = "bots")]
    room: String,
    /// An access token, for rooms that ask for one.
    #[arg(long)]
    token: Option<String>,
    /// The first loopback address bots use; bot i uses this plus i modulo `--addresses`.
    #[arg(long, default_value = "127.0.0.2")]
    source: Ipv4Addr,
    /// How many source addresses to spread bots over.
    #[arg(long, default_value_t = 50)]
    addresses: u32,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// How many bots (at most 1000).
    #[arg(long, default_value_t = 1)]
    bots: usize,
    /// How many of them publish (the first ones); the rest only subscribe. Default: all.
    #[arg(long)]
    publishers: Option<usize>,
    /// Seconds each bot stays in the call once connected (at most 3600).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// A recording made by `visavis-bot record`; without it, synthetic media (not
    /// decodable: for loads without a browser).
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Bots speak in turn, each for this many milliseconds (audio level marks voice); 0: none.
    #[arg(long, default_value_t = 0)]
    speak_ms: u64,
    /// Milliseconds between two bots joining.
    #[arg(long, default_value_t = 20)]
    join_gap_ms: u64,
    /// Names are this plus the bot's number.
    #[arg(long, default_value = "bot")]
    name: String,
    /// Print `seeing: ...` on stderr once every bot receives this many camera tracks (a
    /// second of frames from each): everyone sees everyone, for a test to wait on. 0: never.
    #[arg(long, default_value_t = 0)]
    see_cameras: usize,
    /// Add every bot's report to the summary.
    #[arg(long)]
    per_bot: bool,
    /// Join this Janus videoroom instead, through Janus's WebSocket API at `--url` (e.g.
    /// ws://127.0.0.1:8188): the same load on Janus, for comparison. `--room` is unused.
    #[arg(long)]
    janus_room: Option<u64>,
    #[command(flatten)]
    measure: MeasureArgs,
}

/// A measuring window, once every bot is connected: packets received by all bots together,
/// and the server's CPU time from /proc (when its pid is given).
#[derive(Args, Debug, Clone)]
struct MeasureArgs {
    /// The server's process id, to read its CPU time from /proc/PID/stat.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds from every bot connected to the window's start.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// The window, in seconds (0: no measurement).
    #[arg(long, default_value_t = 0)]
    measure: u64,
}

#[derive(Args, Debug)]
struct RecordArgs {
    #[command(flatten)]
    common: Common,
    /// Where to store the recording.
    #[arg(long)]
    out: PathBuf,
    /// Seconds to record (at most 600).
    #[arg(long, default_value_t = 6)]
    seconds: u64,
    /// The width of the tile the recorder says it shows the camera in: the SFU forwards the
    /// simulcast layer that fills it, which is what the bots replay (default: a small tile).
    #[arg(long, default_value_t = 320)]
    width: u32,
    /// That tile's height.
    #[arg(long, default_value_t = 180)]
    height: u32,
}

fn source(common: &Common, i: usize) -> IpAddr {
    let base = u32::from(common.source);
    IpAddr::V4(Ipv4Addr::from(base + (i as u32 % common.addresses.max(1))))
}

/// Prints one line on stderr once all `bots` see `Meter::see_cameras` cameras.
async fn tell_when_seeing(meter: Arc<Meter>, bots: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    while meter.seeing.load(Relaxed) < bots {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "seeing: each of {bots} bots receives {} cameras",
        meter.see_cameras
    );
}

/// SIGTERM or SIGINT ends every bot's stay now; they leave, and the summary is printed as
/// after `--seconds` (a test stops the bots once it has seen what it needs).
async fn stop_on_signal(meter: Arc<Meter>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    meter.stop.send_replace(true);
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Record(args) => record(args).await,
        }
    })
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.bots <= MAX_BOTS, "at most {MAX_BOTS} bots");
    anyhow::ensure!(args.seconds <= MAX_STAY, "at most {MAX_STAY} seconds");
    let recording = Arc::new(match &args.replay {
        Some(path) => Recording::read_from(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("{}", path.display()))?,
        ))?,
        None => Recording::synthetic(10),
    });
    let shared = Arc::new(Shared::new()?);
    let publishers = args.publishers.unwrap_or(args.bots);
    let started = Instant::now();
    let meter = Arc::new(Meter {
        see_cameras: args.see_cameras,
        ..Meter::default()
    });
    if args.see_cameras > 0 {
        tokio::spawn(tell_when_seeing(meter.clone(), args.bots));
    }
    let measuring = tokio::spawn(measure(meter.clone(), args.bots, args.measure.clone()));
    tokio::spawn(stop_on_signal(meter.clone()));
    let mut tasks = Vec::new();
    for i in 0..args.bots {
        if *meter.stop.borrow() {
            break;
        }
        let config = BotConfig {
            url: args.common.url.clone(),
            room: args.common.room.clone(),
            token: args.common.token.clone(),
            name: format!("{}{}", args.name, i + 1),
            source: source(&args.common, i),
            stay: Duration::from_secs(args.seconds),
            recording: (i < publishers).then(|| recording.clone()),
            speak: (args.speak_ms > 0 && i < publishers).then(|| Speak {
                index: i,
                count: publishers,
                period: Duration::from_millis(args.speak_ms),
            }),
            record: false,
            view: None,
            meter: meter.clone(),
        };
        let task = match args.janus_room {
            Some(room) => {
                let feeds = publishers - (i < publishers) as usize;
                tokio::spawn(janus::run(shared.clone(), config, room, feeds))
            }
            None => tokio::spawn(bot::run(shared.clone(), config)),
        };
        tasks.push(task);
        tokio::time::sleep(Duration::from_millis(args.join_gap_ms)).await;
    }
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await?);
    }
    let mut summary = summarize(&reports, started.elapsed(), args.per_bot);
    measuring.abort();
    if let Ok(Some(measured)) = measuring.await {
        summary["measure"] = measured;
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    // The summary says which bots failed and why; the exit status only that some did.
    if reports.iter().any(|r| r.error.is_some()) {
        std::process::exit(1);
    }
    Ok(())
}

/// CPU time (user and system) of process `pid` so far, in seconds: /proc counts in
/// USER_HZ, which Linux fixes at 100 for user space.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) in its parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Waits for every bot to be connected (at most a minute past the last join), then measures
/// over the window. `None` when there is no window or the bots never all connected.
async fn measure(meter: Arc<Meter>, bots: usize, args: MeasureArgs) -> Option<serde_json::Value> {
    use std::sync::atomic::Ordering::Relaxed;
    if args.measure == 0 {
        return None;
    }
    let give_up = Instant::now() + Duration::from_secs(60 + bots as u64);
    while meter.connected.load(Relaxed) < bots {
        if Instant::now() > give_up {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let (t0, p0) = (Instant::now(), meter.packets.load(Relaxed));
    let c0 = args.server_pid.and_then(cpu_seconds);
    tokio::time::sleep(Duration::from_secs(args.measure)).await;
    let (t1, p1) = (Instant::now(), meter.packets.load(Relaxed));
    let c1 = args.server_pid.and_then(cpu_seconds);
    let seconds = (t1 - t0).as_secs_f64();
    let pps = (p1 - p0) as f64 / seconds;
    let cores = c0.zip(c1).map(|(a, b)| (b - a) / seconds);
    Some(json!({
        "seconds": seconds,
        "connectedAtEnd": meter.connected.load(Relaxed),
        "packets": p1 - p0,
        "packetsPerSecond": pps,
        "serverCores": cores,
        "packetsPerSecondPerCore": cores.filter(|c| *c > 0.0).map(|c| pps / c),
    }))
}

fn summarize(reports: &[BotReport], took: Duration, per_bot: bool) -> serde_json::Value {
    let mut received = Totals::default();
    for r in reports {
        received.add(&r.received);
    }
    let mut connect: Vec<u64> = reports.iter().filter_map(|r| r.connected_ms).collect();
    connect.sort_unstable();
    let errors: Vec<_> = reports
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| json!({"name": r.name, "error": e})))
        .collect();
    let mut summary = json!({
        "bots": reports.len(),
        "connected": reports.iter().filter(|r| r.connected).count(),
        "seconds": took.as_secs_f64(),
        "connectMsMedian": connect.get(connect.len() / 2),
        "connectMsMax": connect.last(),
        "sentVideoFrames": reports.iter().map(|r| r.sent_video_frames).sum::<u64>(),
        "sentAudioFrames": reports.iter().map(|r| r.sent_audio_frames).sum::<u64>(),
        "keyframeRequests": reports.iter().map(|r| r.keyframe_requests).sum::<u64>(),
        "publishersSeenMin": reports.iter().map(|r| r.publishers).min(),
        "cameraFramesMin": reports.iter().filter_map(|r| r.camera_frames_min).min(),
        "received": received.to_json(),
        "errors": errors,
    });
    if per_bot {
        summary["perBot"] = reports.iter().map(BotReport::to_json).collect();
    }
    summary
}

async fn record(args: RecordArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.seconds <= 600, "at most 600 seconds");
    let shared = Arc::new(Shared::new()?);
    let config = BotConfig {
        url: args.common.url.clone(),
        room: args.common.room.clone(),
        token: args.common.token.clone(),
        name: "recorder".into(),
        source: source(&args.common, 0),
        stay: Duration::from_secs(args.seconds),
        recording: None,
        speak: None,
        record: true,
        view: Some((args.width, args.height)),
        meter: Arc::default(),
    };
    let report = bot::run(shared, config).await;
    if let Some(e) = &report.error {
        anyhow::bail!("recording failed: {e}");
    }
    let recording = report.recording.unwrap_or_default();
    let video = recording
        .frames
        .iter()
        .filter(|f| f.kind == visavis_bot::media::Kind::Video)
        .count();
    let keyframes = recording.frames.iter().filter(|f| f.keyframe).count();
    anyhow::ensure!(keyframes > 0, "no video keyframe was received");
    let file = std::fs::File::create(&args.out).with_context(|| format!("{}", args.out.display()))?;
    recording.write_to(std::io::BufWriter::new(file))?;
    println!(
        "{}",
        json!({
            "out": args.out,
            "frames": recording.frames.len(),
            "videoFrames": video,
            "keyframes": keyframes,
            "seconds": recording.duration().as_secs_f64(),
        })
    );
    Ok(())
}
