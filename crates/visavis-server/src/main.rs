//! The `visavis` binary: reads settings (command line, environment, `--config` file), binds,
//! serves until SIGINT/SIGTERM; or, as `visavis check-config`, prints the settings and their
//! problems; or, as `visavis token`, mints an access token and the link that carries it.

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use visavis_server::check::{self, Facts};
use visavis_server::config_file::{self, Loaded, Mode};

fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "token") {
        return token_command(&args);
    }
    if args.get(1).is_some_and(|a| a == "sfu-worker") {
        // Started by `visavis` itself: the SFU in a process that outlives it (sfu_worker.rs).
        let (Some(socket), Some(settings)) = (args.get(2), args.get(3).and_then(|a| a.to_str())) else {
            anyhow::bail!("usage: visavis sfu-worker SOCKET SETTINGS (visavis starts it itself)");
        };
        init_logs(visavis_server::LogFormat::Text);
        visavis_server::sfu_worker::worker_main(std::path::Path::new(socket), settings)?;
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = match config_file::load(args, &|name| std::env::var_os(name)) {
        Ok(loaded) => loaded,
        // Help and version, or a command line that does not parse. check-config says "not
        // fine" with 1, whatever the reason.
        Err(failed) if failed.mode == Mode::CheckConfig && failed.error.use_stderr() => {
            let _ = failed.error.print();
            return Ok(ExitCode::FAILURE);
        }
        Err(failed) => failed.error.exit(),
    };
    match loaded.mode {
        Mode::CheckConfig => {
            let facts = Facts::gather(&loaded.settings);
            let (report, problems) = check::report(&loaded, &facts);
            print!("{report}");
            Ok(if problems == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Mode::Serve => {
            serve(loaded)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logs(format: visavis_server::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "visavis=info,visavis_server=info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        visavis_server::LogFormat::Text => logs.init(),
        // One JSON object a line, for log collectors.
        visavis_server::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn serve(loaded: Loaded) -> anyhow::Result<()> {
    init_logs(loaded.settings.log_format);
    if !loaded.file_problems.is_empty() {
        anyhow::bail!(
            "the config file has problems (visavis check-config lists them all):\n  {}",
            loaded.file_problems.join("\n  ")
        );
    }
    let mut settings = loaded.settings;
    settings.sfu_worker_exe = std::env::current_exe().ok();
    let listen = settings.listen();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let https = settings.https(addr.ip());
    let scheme = match https {
        visavis_server::Https::Off => "http",
        _ => "https",
    };
    // Signals are caught from here on (registered now, not when a task first runs: a
    // supervisor may signal as soon as it sees the first line).
    #[cfg(unix)]
    tokio::spawn(catch_hangups(
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()),
        matches!(https, visavis_server::Https::Files { .. }),
    ));
    #[cfg(unix)]
    let stops = [
        tokio::signal::unix::SignalKind::terminate(),
        tokio::signal::unix::SignalKind::interrupt(),
    ]
    .map(tokio::signal::unix::signal);
    tracing::info!("visavis {} serving {scheme}://{addr}", env!("CARGO_PKG_VERSION"));
    // Every connection and relay socket takes a file descriptor; the soft limit is often 1,024
    // while the hard one is far higher, so take what the system allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!("up to {limit} open files"),
        Err(err) => tracing::warn!("cannot raise the open-file limit: {err}"),
    }

    let shutdown = CancellationToken::new();
    #[cfg(unix)]
    tokio::spawn(cancel_on_signal(stops, shutdown.clone()));
    #[cfg(not(unix))]
    tokio::spawn({
        let token = shutdown.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
        }
    });
    visavis_server::run(listener, settings, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP asks for the certificate files to be read again (`systemctl reload`; the watcher of
/// those files hears it too). Its default action ends the process, so it is caught from the
/// start, whether there are `files` to reload or not.
#[cfg(unix)]
async fn catch_hangups(hangup: std::io::Result<tokio::signal::unix::Signal>, files: bool) {
    let mut hangup = match hangup {
        Ok(hangup) => hangup,
        Err(err) => return tracing::warn!("cannot watch SIGHUP: {err}"),
    };
    while hangup.recv().await.is_some() {
        if !files {
            tracing::info!("SIGHUP: no certificate files to reload (--tls-cert, --tls-key)");
        }
    }
}

/// SIGTERM or SIGINT: a graceful stop.
#[cfg(unix)]
async fn cancel_on_signal(
    stops: [std::io::Result<tokio::signal::unix::Signal>; 2],
    token: CancellationToken,
) {
    let [term, int] = stops;
    let (mut term, mut int) = match (term, int) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(err), _) | (_, Err(err)) => {
            tracing::warn!("cannot watch SIGTERM and SIGINT: {err}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down: closing sessions");
    token.cancel();
}

/// The options of `visavis token` itself; every other option is a setting (for the API
/// credentials and the link's origin), read as the server reads it.
fn token_options() -> clap::Command {
    use clap::{value_parser, Arg, ArgAction};
    clap::Command::new("visavis token")
        .about("Mint an access token (JWT, HS256) for one person in one room, and the link that carries it")
        .long_about(
            "Mint an access token for --access token servers: signed with the API secret \
             (--api-key/--api-secret, or the pair kept in --data-dir), for --room, with --name \
             shown to others. Prints the token and a link with the token in its fragment.",
        )
        .arg(
            Arg::new("room")
                .long("room")
                .required(true)
                .help("The room it lets into"),
        )
        .arg(
            Arg::new("name")
                .long("name")
                .required(true)
                .help("The name others see"),
        )
        .arg(
            Arg::new("role")
                .long("role")
                .value_parser(value_parser!(visavis_server::token::Role))
                .default_value("guest")
                .help("host: runs the room and skips the lobby; guest: knocks"),
        )
        .arg(
            Arg::new("ttl")
                .long("ttl")
                .value_parser(visavis_server::token::parse_ttl)
                .default_value("2h")
                .help("How long it may be used to join: 90s, 15m, 2h, 7d"),
        )
        .arg(
            Arg::new("identity")
                .long("identity")
                .help("The product's id for the person [default: random]"),
        )
        .arg(
            Arg::new("skip-lobby")
                .long("skip-lobby")
                .action(ArgAction::SetTrue)
                .help("A guest who walks straight in"),
        )
        .arg(
            Arg::new("no-chat")
                .long("no-chat")
                .action(ArgAction::SetTrue)
                .help("May not send chat messages"),
        )
        .args(
            [
                ("no-audio", "May not send audio (a microphone) in calls"),
                ("no-video", "May not send video (a camera) in calls"),
                ("no-screen", "May not share a screen in calls"),
            ]
            .map(|(flag, help)| Arg::new(flag).long(flag).action(ArgAction::SetTrue).help(help)),
        )
}

fn token_command(args: &[std::ffi::OsString]) -> anyhow::Result<ExitCode> {
    use visavis_server::token::{self, Claims, Role};
    // Split the command line: the token's own options here, settings to the loader.
    let own = token_options();
    let takes_value = |a: &str| {
        own.get_arguments()
            .any(|x| x.get_long() == Some(a) && x.get_action().takes_values())
    };
    let is_own = |a: &str| own.get_arguments().any(|x| x.get_long() == Some(a)) || a == "help" || a == "h";
    let (mut mine, mut settings) = (vec![args[0].clone()], vec![args[0].clone()]);
    let mut rest = args[2..].iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        let long = text
            .trim_start_matches('-')
            .split('=')
            .next()
            .unwrap_or_default()
            .to_owned();
        if text.starts_with('-') && is_own(&long) {
            mine.push(arg.clone());
            if takes_value(&long) && !text.contains('=') {
                mine.extend(rest.next().cloned());
            }
        } else {
            settings.push(arg.clone());
        }
    }
    let options = own.try_get_matches_from(mine).unwrap_or_else(|e| e.exit());
    let loaded =
        config_file::load(settings, &|name| std::env::var_os(name)).unwrap_or_else(|e| e.error.exit());
    let s = &loaded.settings;
    let (credentials, _) =
        visavis_server::ApiCredentials::load(s.api_key.as_deref(), s.api_secret.as_deref(), &s.data_dir)?;
    let room = options.get_one::<String>("room").cloned().unwrap_or_default();
    let identity = options
        .get_one::<String>("identity")
        .cloned()
        .unwrap_or_else(|| format!("id-{}", &visavis_server::random_hex(8)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let ttl = *options.get_one::<std::time::Duration>("ttl").expect("defaulted");
    let role = *options.get_one::<Role>("role").expect("defaulted");
    let name = options.get_one::<String>("name").cloned().unwrap_or_default();
    let mut claims = Claims::new(&credentials.key, &identity, &room, &name, role, now, ttl);
    claims.permissions.skip_lobby = options.get_flag("skip-lobby");
    claims.permissions.chat = !options.get_flag("no-chat");
    claims.permissions.audio = !options.get_flag("no-audio");
    claims.permissions.video = !options.get_flag("no-video");
    claims.permissions.screen = !options.get_flag("no-screen");
    let minted = token::mint(&credentials, &claims)?;
    println!("{minted}");
    println!(
        "{}",
        token::link(&visavis_server::public_origin(s), &room, &minted)
    );
    Ok(ExitCode::SUCCESS)
}
