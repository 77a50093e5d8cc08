//! The `visavis` binary: reads settings (command line, environment, `--config` file), binds,
//! serves until SIGINT/SIGTERM; or, as `visavis check-config`, prints the settings and their
//! problems.

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use visavis_server::check::{self, Facts};
use visavis_server::config_file::{self, Loaded, Mode};

fn main() -> anyhow::Result<ExitCode> {
    let loaded = match config_file::load(std::env::args_os(), &|name| std::env::var_os(name)) {
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

#[tokio::main]
async fn serve(loaded: Loaded) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "visavis=info,visavis_server=info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match loaded.settings.log_format {
        visavis_server::LogFormat::Text => logs.init(),
        // One JSON object a line, for log collectors.
        visavis_server::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    if !loaded.file_problems.is_empty() {
        anyhow::bail!(
            "the config file has problems (visavis check-config lists them all):\n  {}",
            loaded.file_problems.join("\n  ")
        );
    }
    let settings = loaded.settings;
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
    tracing::info!("visavis {} serving {scheme}://{addr}", env!("CARGO_PKG_VERSION"));
    #[cfg(unix)]
    tokio::spawn(catch_hangups(matches!(
        https,
        visavis_server::Https::Files { .. }
    )));
    // Every connection and relay socket takes a file descriptor; the soft limit is often 1,024
    // while the hard one is far higher, so take what the system allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!("up to {limit} open files"),
        Err(err) => tracing::warn!("cannot raise the open-file limit: {err}"),
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    visavis_server::run(listener, settings, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP asks for the certificate files to be read again (`systemctl reload`; the watcher of
/// those files hears it too). Its default action ends the process, so it is caught from the
/// start, whether there are `files` to reload or not.
#[cfg(unix)]
async fn catch_hangups(files: bool) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(err) => return tracing::warn!("cannot watch SIGHUP: {err}"),
    };
    while hangup.recv().await.is_some() {
        if !files {
            tracing::info!("SIGHUP: no certificate files to reload (--tls-cert, --tls-key)");
        }
    }
}

async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(err) => {
                tracing::warn!("cannot watch SIGTERM: {err}");
                let _ = ctrl_c.await;
                token.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: closing sessions");
    token.cancel();
}
