//! `bwmedia-emulator`: a local, faithful Bandwidth Media API server for tests, benchmarks and
//! development without a Bandwidth account. Prints `listening on http://ADDR` once it accepts
//! connections; stops cleanly on SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use bwmediafs::emulator::cli::{Args, DEMO_CLIENT_SECRET, DEMO_PASSWORD};
use bwmediafs::emulator::Emulator;
use clap::Parser;

/// SIGINT and SIGTERM, registered at once (before the "listening" line), awaited later.
struct Signals {
    rt: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (interrupt, terminate) = {
            let _guard = rt.enter();
            (
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            )
        };
        Ok(Signals {
            rt,
            interrupt,
            terminate,
        })
    }

    fn wait(mut self) {
        let Signals {
            rt,
            interrupt,
            terminate,
        } = &mut self;
        rt.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        });
    }
}

/// A `bwmediafs` command line that mounts this emulator. A secret is shown only when it is the
/// built-in demo one; one given on the command line or in the environment stays unsaid.
fn mount_command(
    emulator: &Emulator,
    oauth: Option<&(String, String)>,
    basic: Option<&(String, String)>,
) -> String {
    let shown = |secret: &str, default: &str, flag: &str| {
        if secret == default {
            secret.to_string()
        } else {
            format!("'<your {flag}>'")
        }
    };
    let credentials = match (oauth, basic) {
        (Some((id, secret)), _) => format!(
            "BW_CLIENT_ID={id} BW_CLIENT_SECRET={} BW_TOKEN_URL={}",
            shown(secret, DEMO_CLIENT_SECRET, "--client-secret"),
            emulator.token_url()
        ),
        (None, Some((user, password))) => format!(
            "BW_USERNAME={user} BW_PASSWORD={}",
            shown(password, DEMO_PASSWORD, "--password")
        ),
        (None, None) => String::new(),
    };
    format!(
        "BW_ACCOUNT_ID={} {credentials} BW_BASE_URL={} bwmediafs MOUNTPOINT",
        emulator.account(),
        emulator.base_url()
    )
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bwmedia-emulator: {e}");
            return ExitCode::from(2);
        }
    };
    log::debug!("configuration: {config:?}");
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bwmedia-emulator: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (oauth, basic) = (config.oauth.clone(), config.basic.clone());
    let emulator = match Emulator::start(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bwmedia-emulator: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{}", emulator.addr());
        let _ = writeln!(
            out,
            "to mount it: {}",
            mount_command(&emulator, oauth.as_ref(), basic.as_ref())
        );
        let _ = out.flush();
    }
    log::info!(
        "serving account {} at {} (token endpoint {})",
        emulator.account(),
        emulator.base_url(),
        emulator.token_url()
    );
    signals.wait();
    log::info!("shutting down");
    drop(emulator);
    ExitCode::SUCCESS
}
