//! The SFU in a process of its own, so that group calls through it outlive a restart (or a
//! crash) of visavis: the worker (`visavis sfu-worker SOCKET SETTINGS`), and the main
//! process's link to it ([`SfuLink`]). They speak lines of JSON over a Unix socket in the data
//! directory: the worker says hello (its settings, addresses and sessions), then sends
//! [`Report`]s; the main process sends [`Command`]s. When the main process goes, the worker
//! keeps forwarding while it holds sessions, up to the resume grace, for the next process to
//! adopt it; with no sessions left, or none adopting it, it ends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::sfu::{apply_reports, Command, Report, SfuEdge, SfuHandle, SfuSettings};
use crate::{Settings, StateKind};

/// Bumped when the lines below change: a process adopts only a worker that speaks its lines.
const PROTOCOL: u32 = 1;
/// How long a new worker waits for the process that started it, and that process for it.
const START_WAIT: Duration = Duration::from_secs(10);
/// How long a process waits for an old worker's hello, or for it to end when told to.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// What the worker needs to know, on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerArgs {
    pub sfu: SfuSettings,
    /// Seconds it keeps its sessions going with no process attached (the resume grace).
    pub linger: u64,
}

/// The worker's first line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hello {
    protocol: u32,
    /// The release it runs: an upgrade starts a worker of its own (the calls reconnect).
    version: String,
    settings: SfuSettings,
    local: SocketAddr,
    public: SocketAddr,
    sessions: usize,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FromWorker {
    Hello(Hello),
    Report(Report),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ToWorker {
    Sfu(Command),
    /// End now (a process with other settings takes the port).
    Quit,
}

/// One end of the socket: lines read (buffered: what follows a hello must not be lost), and
/// the writer.
type Conn = (Lines<BufReader<OwnedReadHalf>>, OwnedWriteHalf);

fn conn(stream: UnixStream) -> Conn {
    let (read, write) = stream.into_split();
    (BufReader::new(read).lines(), write)
}

async fn send_line<T: Serialize>(w: &mut (impl AsyncWriteExt + Unpin), msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await
}

/// The SFU as the main process holds it: its addresses, the handle the room events go to, and
/// whether it still holds the sessions of calls an earlier process ran.
#[derive(Debug)]
pub struct SfuLink {
    pub handle: SfuHandle,
    pub local_addr: SocketAddr,
    pub public_addr: SocketAddr,
    /// An adopted worker with sessions: the restored SFU calls go on as they are (no
    /// `sfu_restart`).
    pub kept: bool,
    commands: mpsc::UnboundedReceiver<Command>,
    run: Run,
}

// One per process, moved once: the sizes of its variants do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Run {
    Here(SfuEdge),
    Worker { conn: Conn, spawn: Spawn },
}

/// How to start a worker again.
#[derive(Debug, Clone)]
struct Spawn {
    exe: PathBuf,
    socket: PathBuf,
    args: WorkerArgs,
}

/// The SFU `settings` ask for, if any: in a worker process where one may run ([`worker_exe`]),
/// else (or when none starts) in this process.
pub async fn start(settings: &Settings) -> anyhow::Result<Option<SfuLink>> {
    let Some(sfu) = SfuSettings::of(settings) else {
        return Ok(None);
    };
    if let Some(exe) = worker_exe(settings) {
        let args = WorkerArgs {
            sfu: sfu.clone(),
            linger: settings.resume_grace,
        };
        match SfuLink::worker(exe, &settings.data_dir, args).await {
            Ok(worker) => return Ok(Some(worker)),
            Err(err) => tracing::warn!(
                "no SFU worker ({err:#}): the SFU runs in this process, and a restart pauses its calls"
            ),
        }
    }
    SfuLink::here(&sfu).await.map(Some)
}

/// The binary to start the SFU worker from: set by the `visavis` binary (not by tests running
/// the server in theirs), with the state kept in a file (a worker outlives a process only for
/// the next one to restore its calls), on a single node, unless `--sfu-in-process`.
fn worker_exe(settings: &Settings) -> Option<PathBuf> {
    let worker = !settings.sfu_in_process && settings.state == StateKind::File && settings.redis.is_none();
    settings.sfu_worker_exe.clone().filter(|_| worker)
}

impl SfuLink {
    /// The SFU in this process.
    async fn here(settings: &SfuSettings) -> anyhow::Result<Self> {
        let edge = SfuEdge::bind(settings).await?;
        let (tx, commands) = mpsc::unbounded_channel();
        Ok(Self {
            handle: SfuHandle::new(tx),
            local_addr: edge.local_addr()?,
            public_addr: edge.public_addr(),
            kept: false,
            commands,
            run: Run::Here(edge),
        })
    }

    /// The SFU in a worker process: the one at `data_dir`'s socket if it runs with these
    /// settings (its calls go on), or a new one started from `exe`.
    async fn worker(exe: PathBuf, data_dir: &Path, args: WorkerArgs) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let socket = data_dir.join("sfu.sock");
        let spawn = Spawn { exe, socket, args };
        let (conn, hello, kept) = match adopt(&spawn).await {
            Some((conn, hello)) => {
                tracing::info!(
                    sessions = hello.sessions,
                    "SFU worker adopted on udp {}: its calls go on",
                    hello.local
                );
                let kept = hello.sessions > 0;
                (conn, hello, kept)
            }
            None => {
                let (conn, hello) = spawn.start().await?;
                (conn, hello, false)
            }
        };
        let (tx, commands) = mpsc::unbounded_channel();
        Ok(Self {
            handle: SfuHandle::new(tx),
            local_addr: hello.local,
            public_addr: hello.public,
            kept,
            commands,
            run: Run::Worker { conn, spawn },
        })
    }

    /// Runs the SFU (or the link to it) for `hub` until `shutdown`.
    pub fn spawn(self, hub: Arc<Hub>, shutdown: CancellationToken) {
        match self.run {
            Run::Here(edge) => {
                let (reports, rx) = mpsc::unbounded_channel();
                edge.spawn(self.commands, reports, shutdown);
                tokio::spawn(apply_reports(hub, rx));
            }
            Run::Worker { conn, spawn } => {
                tokio::spawn(link(hub, conn, self.commands, spawn, shutdown));
            }
        }
    }
}

/// Connects to a worker already at the socket, if one runs with the same settings; one with
/// other settings (or another protocol) is told to end first.
async fn adopt(spawn: &Spawn) -> Option<(Conn, Hello)> {
    let (mut lines, mut write) = conn(UnixStream::connect(&spawn.socket).await.ok()?);
    let hello = match tokio::time::timeout(ANSWER_WAIT, lines.next_line()).await {
        Ok(Ok(Some(line))) => match serde_json::from_str(&line) {
            Ok(FromWorker::Hello(hello)) => Some(hello),
            _ => None,
        },
        _ => None,
    };
    match hello {
        Some(hello)
            if hello.protocol == PROTOCOL
                && hello.version == env!("CARGO_PKG_VERSION")
                && hello.settings == spawn.args.sfu =>
        {
            Some(((lines, write), hello))
        }
        _ => {
            tracing::info!("an SFU worker of another release or with other settings runs: ending it");
            let _ = send_line(&mut write, &ToWorker::Quit).await;
            // Its end closes the socket: then the port is free.
            let _ = tokio::time::timeout(ANSWER_WAIT, async {
                while let Ok(Some(_)) = lines.next_line().await {}
            })
            .await;
            None
        }
    }
}

impl Spawn {
    /// Starts a worker and waits for its hello.
    async fn start(&self) -> anyhow::Result<(Conn, Hello)> {
        use std::os::unix::process::CommandExt;
        let args = serde_json::to_string(&self.args)?;
        let mut child = std::process::Command::new(&self.exe)
            .arg("sfu-worker")
            .arg(&self.socket)
            .arg(args)
            // Its log goes where this process's goes (stdout and stderr inherited).
            .stdin(std::process::Stdio::null())
            // Its own process group: a terminal's Ctrl-C (or a supervisor's signal to the
            // group) reaches this process, which decides; the worker ends when it is not needed.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start the SFU worker {}", self.exe.display()))?;
        let started = tokio::time::Instant::now();
        let stream = loop {
            if let Ok(stream) = UnixStream::connect(&self.socket).await {
                break stream;
            }
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!("the SFU worker ended at its start ({status}): see its error above");
            }
            if started.elapsed() > START_WAIT {
                let _ = child.kill();
                anyhow::bail!("the SFU worker did not answer at {}", self.socket.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Reaped when it ends (it may outlive this process, then init reaps it).
        std::thread::spawn(move || child.wait());
        let (mut lines, write) = conn(stream);
        let line = tokio::time::timeout(START_WAIT, lines.next_line())
            .await
            .context("the SFU worker said no hello")??
            .context("the SFU worker closed before its hello")?;
        let FromWorker::Hello(hello) = serde_json::from_str(&line)? else {
            anyhow::bail!("the SFU worker's first line is not its hello");
        };
        tracing::info!("SFU worker started on udp {}", hello.local);
        Ok(((lines, write), hello))
    }
}

/// The main process's side: commands to the worker, its reports to the room core. Should the
/// worker end while this process runs, another is started and every SFU call is told to
/// connect again (`sfu_restart`).
async fn link(
    hub: Arc<Hub>,
    mut conn: Conn,
    mut commands: mpsc::UnboundedReceiver<Command>,
    spawn: Spawn,
    shutdown: CancellationToken,
) {
    loop {
        let (lines, write) = &mut conn;
        loop {
            tokio::select! {
                // Closing the socket leaves the worker to its calls, for the next process.
                () = shutdown.cancelled() => return,
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    if send_line(write, &ToWorker::Sfu(command)).await.is_err() {
                        break;
                    }
                }
                line = lines.next_line() => match line {
                    Ok(Some(line)) => match serde_json::from_str(&line) {
                        Ok(FromWorker::Report(report)) => hub.api(|core, _| report.apply(core)),
                        _ => tracing::warn!("SFU worker: a line not understood"),
                    },
                    _ => break,
                },
            }
        }
        tracing::error!("the SFU worker ended; starting another (SFU calls connect again)");
        conn = loop {
            if shutdown.is_cancelled() {
                return;
            }
            match spawn.start().await {
                Ok((conn, _)) => break conn,
                Err(e) => {
                    tracing::error!("{e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        hub.api(|core, _| core.sfu_restart_all());
    }
}

/// The worker process: binds the SFU, serves one main process at a time at `socket`.
pub fn worker_main(socket: &Path, args: &str) -> anyhow::Result<()> {
    let args: WorkerArgs = serde_json::from_str(args).context("the SFU worker's settings")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve_worker(socket, args))
}

async fn serve_worker(socket: &Path, args: WorkerArgs) -> anyhow::Result<()> {
    let edge = SfuEdge::bind(&args.sfu).await?;
    // A file left by a worker that died is in the way; a live one would not have let this
    // worker bind the SFU's port.
    let _ = std::fs::remove_file(socket);
    let listener =
        UnixListener::bind(socket).with_context(|| format!("cannot listen at {}", socket.display()))?;
    // Whoever may connect may steer the SFU: only this user.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    }
    let ours = inode(socket);
    let (local, public) = (edge.local_addr()?, edge.public_addr());
    let sessions = edge.sessions();
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    edge.spawn(commands_rx, reports_tx, shutdown.clone());
    let linger = Duration::from_secs(args.linger);
    // Until the first process attaches: how long it may take to; then, the resume grace.
    let mut attached = false;
    loop {
        let wait = if attached { linger } else { START_WAIT };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("SFU worker: {e}");
                    continue;
                }
            },
            () = tokio::time::sleep(wait) => {
                tracing::info!("SFU worker: no visavis came back; ending its calls");
                break;
            }
            () = no_sessions(&sessions), if attached => break,
        };
        let hello = Hello {
            protocol: PROTOCOL,
            version: env!("CARGO_PKG_VERSION").into(),
            settings: args.sfu.clone(),
            local,
            public,
            sessions: sessions.load(Ordering::Relaxed),
        };
        if serve_main(stream, hello, &commands, &mut reports).await {
            break;
        }
        let held = sessions.load(Ordering::Relaxed);
        if held == 0 {
            break;
        }
        tracing::info!(
            sessions = held,
            "SFU worker: visavis went; its calls go on for up to {} s for the next to adopt",
            args.linger
        );
        attached = true;
    }
    shutdown.cancel();
    // The path may be a newer worker's by now (one that replaced this one): only ours goes.
    if ours.is_some() && inode(socket) == ours {
        let _ = std::fs::remove_file(socket);
    }
    Ok(())
}

fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Resolves when the SFU holds no session (checked once a second).
async fn no_sessions(sessions: &AtomicUsize) {
    while sessions.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One main process attached: its commands to the SFU, the SFU's reports to it, until it goes
/// (false) or says to quit (true). Reports made while none is attached wait for the next.
async fn serve_main(
    stream: UnixStream,
    hello: Hello,
    commands: &mpsc::UnboundedSender<Command>,
    reports: &mut mpsc::UnboundedReceiver<Report>,
) -> bool {
    let (mut lines, mut write) = conn(stream);
    if send_line(&mut write, &FromWorker::Hello(hello)).await.is_err() {
        return false;
    }
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => match serde_json::from_str(&line) {
                    Ok(ToWorker::Sfu(command)) => {
                        let _ = commands.send(command);
                    }
                    Ok(ToWorker::Quit) => return true,
                    Err(e) => tracing::warn!("SFU worker: a line not understood: {e}"),
                },
                _ => return false,
            },
            Some(report) = reports.recv() => {
                if send_line(&mut write, &FromWorker::Report(report)).await.is_err() {
                    return false;
                }
            }
        }
    }
}
