//! `bwmedia-emulator`: a local, faithful Bandwidth Media API server for tests, benchmarks and
//! development without a Bandwidth account. Prints `listening on http://ADDR` once it accepts
//! connections; stops cleanly on SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bwmediafs::emulator::{Emulator, EmulatorConfig, Faults, StoreConfig};
use clap::Parser;

/// A local emulator of Bandwidth's Media API (list, get, put, delete under
/// /api/v2/users/{accountId}/media, and the OAuth2 token endpoint /api/v1/oauth2/token).
///
/// Media are kept in memory. Control endpoints (never subject to faults):
/// GET /_emulator/stats, POST /_emulator/stats/reset, GET and PUT /_emulator/faults.
///
/// The credentials are test credentials for a local emulator: passing them as flags is
/// acceptable here (flags show in `ps`), or use the environment variables.
/// Logs go to stderr; set RUST_LOG=debug to log every request.
/// The built-in test password (a local emulator's, never an account's).
const DEMO_PASSWORD: &str = "demo-password";
/// The built-in test client secret.
const DEMO_CLIENT_SECRET: &str = "demo-secret";

#[derive(Debug, Parser)]
#[command(name = "bwmedia-emulator", version, about, long_about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the real address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// The account id served; requests for other accounts answer 403.
    #[arg(long, value_name = "ID", default_value = "9900000")]
    account: String,

    /// Username for HTTP Basic authentication.
    #[arg(long, value_name = "NAME", default_value = "demo-user")]
    username: String,

    /// Password for HTTP Basic authentication.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "BW_EMULATOR_PASSWORD",
        hide_env_values = true,
        default_value = DEMO_PASSWORD
    )]
    password: String,

    /// Refuse HTTP Basic authentication (OAuth2 tokens only, as after December 2026).
    #[arg(long)]
    no_basic: bool,

    /// OAuth2 client id (client-credentials grant).
    #[arg(long, value_name = "ID", default_value = "demo-client")]
    client_id: String,

    /// OAuth2 client secret.
    #[arg(
        long,
        value_name = "SECRET",
        env = "BW_EMULATOR_CLIENT_SECRET",
        hide_env_values = true,
        default_value = DEMO_CLIENT_SECRET
    )]
    client_secret: String,

    /// Refuse OAuth2 (Basic authentication only).
    #[arg(long)]
    no_oauth: bool,

    /// Lifetime of issued OAuth2 tokens, e.g. 1h, 90s, 1s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1h")]
    token_ttl: Duration,

    /// Media per listing page.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    page_size: u64,

    /// Largest media accepted, in bytes (larger uploads answer 413).
    #[arg(long, value_name = "BYTES", default_value_t = bwmediafs::api::MAX_MEDIA_SIZE)]
    max_size: u64,

    /// How long media live after upload, e.g. 48h, 10m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "48h")]
    retention: Duration,

    /// Load every file below DIR at start (its path relative to DIR becomes the media name).
    #[arg(long, value_name = "DIR")]
    seed: Option<PathBuf>,

    /// Fault: milliseconds added to every API request.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,

    /// Fault: share of API requests (0.0 to 1.0) answered with an error status.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    error_rate: f64,

    /// Fault: the statuses injected errors pick from.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "500,503,429"
    )]
    error_statuses: Vec<u16>,

    /// Fault: the Retry-After (seconds) of an injected 429.
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    retry_after_secs: u64,

    /// Fault: share of API requests whose connection is reset in the middle of the body.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    cut_rate: f64,

    /// Fault: share of API responses that announce their full length but send fewer bytes.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    truncate_rate: f64,
}

fn config_of(args: Args) -> Result<EmulatorConfig, String> {
    let faults = Faults {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        error_statuses: args.error_statuses,
        retry_after_secs: args.retry_after_secs,
        cut_rate: args.cut_rate,
        truncate_rate: args.truncate_rate,
    };
    faults.validate()?;
    let page_size = usize::try_from(args.page_size).map_err(|_| "--page-size is too large")?;
    Ok(EmulatorConfig {
        listen: args.listen,
        account: args.account,
        basic: (!args.no_basic).then_some((args.username, args.password)),
        oauth: (!args.no_oauth).then_some((args.client_id, args.client_secret)),
        token_ttl: args.token_ttl,
        store: StoreConfig {
            page_size,
            max_size: args.max_size,
            retention: args.retention,
            ..StoreConfig::default()
        },
        faults,
        seed: args.seed,
    })
}

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
    let config = match config_of(args) {
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
