//! The `visavis-bench` command line: `visavis-bench signal --target visavis --url ws://127.0.0.1:8080`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use visavis_bench::signal::{self, Config, Mode, Report};
use visavis_bench::Target;

/// Load generator for signalling servers (loopback only).
#[derive(Debug, Parser)]
#[command(name = "visavis-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Clients in rooms of two relay offer/answer/candidate-sized messages through the server.
    Signal(SignalArgs),
}

#[derive(Debug, Args)]
struct SignalArgs {
    /// Which server protocol to speak.
    #[arg(long, value_enum, default_value = "visavis")]
    target: Target,
    /// The server's base URL (loopback only), e.g. ws://127.0.0.1:8080; for PeerServer include
    /// its mount path (the WebSocket is at URL/peerjs).
    #[arg(long, default_value = "ws://127.0.0.1:8080")]
    url: String,
    /// Rooms of two that relay messages [default: 10; --quick: 5].
    #[arg(long)]
    pairs: Option<usize>,
    /// closed: each pair ping-pongs as fast as it can; rate: --rate messages/s in total.
    #[arg(long, value_enum, default_value = "closed")]
    mode: Mode,
    /// Total messages per second in rate mode.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Seconds of counted load [default: 10; --quick: 2].
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of load before counting starts [default: 1; --quick: 0.2].
    #[arg(long)]
    warmup: Option<f64>,
    /// Whole-frame sizes in bytes of the messages in turn: offer, answer, then candidates.
    #[arg(long, value_delimiter = ',', default_value = "3072,1024,200")]
    message_sizes: Vec<usize>,
    /// Send only offers of this many bytes (uniform ping-pong) [--quick: 2048].
    #[arg(long)]
    size: Option<usize>,
    /// Extra connections that join rooms of two and stay idle [default: 0; --quick: 4].
    #[arg(long)]
    idle: Option<usize>,
    /// Loopback source addresses to spread the connections over, e.g. 127.0.0.1,127.0.0.2.
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    /// The server's pid: CPU time and RSS are read from /proc/PID.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connections opened at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to keep every connection open after the load.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// With --hold: stop holding as soon as this file exists.
    #[arg(long)]
    release_file: Option<PathBuf>,
    /// File created once every connection has joined (holds the number joined).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Prefix of room names and peer ids [default: unique per process].
    #[arg(long)]
    tag: Option<String>,
    /// A few seconds with a handful of pairs (a smoke test).
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn secs(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("bad --{what} {value}"))
}

impl SignalArgs {
    fn config(&self) -> anyhow::Result<Config> {
        let mut config = if self.quick {
            Config::quick(self.target, &self.url)
        } else {
            Config::new(self.target, &self.url)
        };
        config.mode = self.mode;
        config.rate = self.rate;
        config.message_sizes.clone_from(&self.message_sizes);
        config.size = self.size.or(config.size);
        config.pairs = self.pairs.unwrap_or(config.pairs);
        config.idle = self.idle.unwrap_or(config.idle);
        if let Some(d) = self.duration {
            config.duration = secs(d, "duration")?;
        }
        if let Some(w) = self.warmup {
            config.warmup = secs(w, "warmup")?;
        }
        config.source_ips.clone_from(&self.source_ips);
        config.server_pid = self.server_pid;
        config.concurrency = self.concurrency;
        config.hold = secs(self.hold, "hold")?;
        config.ready_file.clone_from(&self.ready_file);
        config.release_file.clone_from(&self.release_file);
        if let Some(tag) = &self.tag {
            config.tag.clone_from(tag);
        }
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Signal(args) = Cli::parse().command;
    let report = signal::run(args.config()?).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Report) {
    println!("target              {:?} ({:?} loop)", r.target, r.mode);
    println!(
        "connections held    {} ({} pairs, {} idle asked)",
        r.connections, r.pairs, r.idle
    );
    println!("joins per second    {:.0}", r.joins_per_sec);
    println!(
        "relayed             {} of {} sent in {:.1} s = {:.0} msg/s",
        r.relayed, r.sent, r.duration_s, r.relayed_per_sec
    );
    if let Some(l) = &r.latency {
        println!(
            "latency (µs)        p50 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
            l.p50_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    println!("errors              {}", r.errors);
    for e in &r.error_samples {
        println!("  {e}");
    }
    println!("load generator CPU  {:.2} s", r.client_cpu_s);
    if let Some(s) = &r.server {
        println!(
            "server CPU          {:.2} s = {} µs per relayed message",
            s.cpu_s,
            s.cpu_us_per_msg.map_or("-".into(), |v| format!("{v:.2}"))
        );
        println!(
            "server RSS (KiB)    start {}  idle joined {}  end {}",
            s.rss_start_kib, s.rss_idle_kib, s.rss_end_kib
        );
        if let Some(k) = s.kib_per_idle_conn {
            println!("server per idle     {k:.2} KiB per connection");
        }
    }
}
