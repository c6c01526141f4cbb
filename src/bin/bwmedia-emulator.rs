//! `bwmedia-emulator`: a local, faithful Bandwidth Media API server for tests, benchmarks and
//! development without a Bandwidth account. Prints `listening on http://ADDR` once it accepts
//! connections; stops cleanly on SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use bwmediafs::emulator::cli::{Args, Command, InboundArgs, DEMO_CLIENT_SECRET, DEMO_PASSWORD};
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

/// `bwmedia-emulator inbound`: prints the message id and the media names.
fn inbound(args: &InboundArgs) -> ExitCode {
    match bwmediafs::emulator::inbound::send(
        &args.url,
        &args.from,
        &args.to,
        args.text.as_deref(),
        &args.files,
    ) {
        Ok(answer) => {
            println!("message {}", answer.message_id);
            for (name, url) in answer.media.iter().zip(&answer.urls) {
                println!("  {name}  {url}");
            }
            if !answer.callback {
                println!("no callback sent: the emulator was started without --callback-url");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bwmedia-emulator inbound: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What a developer needs to point a client at this emulator, printed once it listens (after
/// the `listening on` line): a command that mounts it, the URLs and credentials as environment
/// lines, where callbacks go, and how to make it receive an MMS. A secret is shown only when it
/// is the built-in demo one; one given on the command line or in the environment stays unsaid.
fn banner(emulator: &Emulator, view: &Banner) -> String {
    let (base, token, account) = (
        emulator.base_url(),
        emulator.token_url(),
        emulator.account(),
    );
    let shown = |secret: &str, default: &str, flag: &str| {
        if secret == default {
            secret.to_string()
        } else {
            format!("'<your {flag}>'")
        }
    };
    let mut env = vec![format!("BW_ACCOUNT_ID={account}")];
    match (&view.oauth, &view.basic) {
        (Some((id, secret)), _) => {
            env.push(format!("BW_CLIENT_ID={id}"));
            env.push(format!(
                "BW_CLIENT_SECRET={}",
                shown(secret, DEMO_CLIENT_SECRET, "--client-secret")
            ));
            env.push(format!("BW_TOKEN_URL={token}"));
        }
        (None, Some((user, password))) => {
            env.push(format!("BW_USERNAME={user}"));
            env.push(format!(
                "BW_PASSWORD={}",
                shown(password, DEMO_PASSWORD, "--password")
            ));
        }
        (None, None) => {}
    }
    env.push(format!("BW_BASE_URL={base}"));
    let env = env.join(" ");
    let callbacks = match &view.callback {
        Some(url) => format!("message-received callbacks go to {url}"),
        None => "no callbacks: start with --callback-url URL to receive message-received \
                 webhooks"
            .to_string(),
    };
    format!(
        "to mount it: {env} bwmediafs MOUNTPOINT\n\
         base URL {base} (account {account}), OAuth2 token URL {token}\n\
         for your code: export {env}\n\
         (Bandwidth's SDKs: their messaging server at BW_BASE_URL, their token URL at \
         BW_TOKEN_URL)\n\
         {callbacks}\n\
         to receive an MMS: bwmedia-emulator inbound --url {} --from +15551230000 --to \
         +15559870000 FILE...\n",
        emulator.root_url()
    )
}

/// What [`banner`] shows of the configuration (taken before it moves into the emulator).
struct Banner {
    oauth: Option<(String, String)>,
    basic: Option<(String, String)>,
    /// The callback URL without any password in it.
    callback: Option<String>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = Args::parse();
    if let Some(Command::Inbound(inbound_args)) = args.command.take() {
        return inbound(&inbound_args);
    }
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
    let view = Banner {
        oauth: config.oauth.clone(),
        basic: config.basic.clone(),
        callback: config.callback.as_ref().map(|cb| match &cb.credentials {
            Some((user, _)) => format!("{} (Basic user {user})", cb.shown_url()),
            None => cb.shown_url(),
        }),
    };
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
        let _ = write!(out, "{}", banner(&emulator, &view));
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
