//! The command line of `bwmedia-emulator`, in the library so that the man page generator
//! reaches it as well as the binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use super::{CallbackConfig, EmulatorConfig, Faults, StoreConfig};

/// The built-in test password (a local emulator's, never an account's).
pub const DEMO_PASSWORD: &str = "demo-password";
/// The built-in test client secret.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";

/// A local stand-in for Bandwidth's Media API and inbound MMS, for tests and for developing
/// against Bandwidth's messaging without an account.
///
/// It answers as production does: list, get, put and delete under
/// /api/v2/users/{accountId}/media, and the OAuth2 token endpoint /api/v1/oauth2/token. Media
/// are kept in memory, or in --data-dir to outlive a restart. An upload whose Content-Type is
/// not a media type is refused with 400.
///
/// Inbound MMS: `bwmedia-emulator inbound --url URL --from NUMBER --to NUMBER FILE...` makes
/// a running emulator receive a message: its files are stored as Bandwidth names inbound media
/// (MESSAGEID/0/FILE, MESSAGEID/1/FILE...), and with --callback-url a message-received
/// callback is POSTed to your application, tried again as Bandwidth does when it does not
/// answer 2xx.
///
/// Control endpoints (never subject to faults): GET /_emulator/stats, POST
/// /_emulator/stats/reset, GET and PUT /_emulator/faults, POST /_emulator/inbound.
///
/// The credentials are test credentials for a local emulator: passing them as flags is
/// acceptable here (flags show in `ps`), or use the environment variables.
/// Logs go to stderr; set RUST_LOG=debug to log every request.
#[derive(Debug, Parser)]
#[command(
    name = "bwmedia-emulator",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Args {
    /// What to do instead of serving (`inbound`).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on (port 0 picks a free port; the real address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The account id served; requests for other accounts answer 403.
    #[arg(long, value_name = "ID", default_value = "9900000")]
    pub account: String,

    /// Username for HTTP Basic authentication.
    #[arg(long, value_name = "NAME", default_value = "demo-user")]
    pub username: String,

    /// Password for HTTP Basic authentication.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "BW_EMULATOR_PASSWORD",
        hide_env_values = true,
        default_value = DEMO_PASSWORD
    )]
    pub password: String,

    /// Refuse HTTP Basic authentication (OAuth2 tokens only, as after December 2026).
    #[arg(long)]
    pub no_basic: bool,

    /// OAuth2 client id (client-credentials grant).
    #[arg(long, value_name = "ID", default_value = "demo-client")]
    pub client_id: String,

    /// OAuth2 client secret.
    #[arg(
        long,
        value_name = "SECRET",
        env = "BW_EMULATOR_CLIENT_SECRET",
        hide_env_values = true,
        default_value = DEMO_CLIENT_SECRET
    )]
    pub client_secret: String,

    /// Refuse OAuth2 (Basic authentication only).
    #[arg(long)]
    pub no_oauth: bool,

    /// Lifetime of issued OAuth2 tokens, e.g. 1h, 90s, 1s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "1h")]
    pub token_ttl: Duration,

    /// Media per listing page.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub page_size: u64,

    /// Largest media accepted, in bytes (larger uploads answer 413).
    #[arg(long, value_name = "BYTES", default_value_t = crate::api::MAX_MEDIA_SIZE)]
    pub max_size: u64,

    /// How long media live after upload, e.g. 48h, 10m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "48h")]
    pub retention: Duration,

    /// Send no Last-Modified header with downloads (whether production sends one is unknown;
    /// by default the emulator sends the media's upload time).
    #[arg(long)]
    pub no_last_modified: bool,

    /// Load every file below DIR at start (its path relative to DIR becomes the media name);
    /// with --data-dir, each start uploads them again, as new.
    #[arg(long, value_name = "DIR")]
    pub seed: Option<PathBuf>,

    /// Keep the media in DIR (made if missing), so that a restart serves the same account:
    /// their bytes, headers and upload times (the retention counts from the real upload). An
    /// upload is on disk before it is answered, and a crash never leaves one half-stored.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// POST a message-received callback here for every inbound message (your application's
    /// callback URL).
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,

    /// Basic credentials callbacks carry, as a Bandwidth application can be set to send.
    #[arg(long, value_name = "NAME", requires = "callback_password")]
    pub callback_username: Option<String>,

    /// The password of --callback-username (unused without it).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "BW_EMULATOR_CALLBACK_PASSWORD",
        hide_env_values = true
    )]
    pub callback_password: Option<String>,

    /// How long one callback attempt waits for an answer (production: 10s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
    pub callback_timeout: Duration,

    /// How long a callback not answered 2xx is tried again, with a backoff from 1s to 1m
    /// (production tries for 24h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5m")]
    pub callback_retry_time: Duration,

    /// The application id inbound callbacks name.
    #[arg(long, value_name = "ID", default_value = super::DEFAULT_APPLICATION_ID)]
    pub application_id: String,

    /// Fault: milliseconds added to every API request.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Fault: share of API requests (0.0 to 1.0) answered with an error status.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub error_rate: f64,

    /// Fault: the statuses injected errors pick from.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "500,503,429"
    )]
    pub error_statuses: Vec<u16>,

    /// Fault: the Retry-After (seconds) of an injected 429.
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    pub retry_after_secs: u64,

    /// Fault: share of API requests whose connection is reset in the middle of the body.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub cut_rate: f64,

    /// Fault: share of API responses that announce their full length but send fewer bytes.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub truncate_rate: f64,
}

/// What `bwmedia-emulator` can do besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a running emulator receive an MMS: its files are stored under a new message id and
    /// the message-received callback is sent; prints the message id and the media names.
    ///
    /// The files are stored as Bandwidth names inbound media: MESSAGEID/0/NAME,
    /// MESSAGEID/1/NAME... (the message id made as Bandwidth's look). When the emulator was
    /// started with --callback-url, it POSTs a message-received callback to that URL: a JSON
    /// array of one event whose message.media lists the media URLs, which download with the
    /// account's credentials. Each line printed after the message id is a media name and its
    /// URL. The same message can be POSTed as JSON to /_emulator/inbound: {"from", "to",
    /// "text", "media": [{"name", "content_type", "data" (base64)}]}.
    Inbound(InboundArgs),
}

/// `bwmedia-emulator inbound`.
#[derive(Debug, clap::Args)]
pub struct InboundArgs {
    /// The emulator, as it printed it (`listening on http://HOST:PORT`).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// The sender's number (E.164, like +15551234567).
    #[arg(long, value_name = "NUMBER")]
    pub from: String,

    /// The account's number that receives the message.
    #[arg(long, value_name = "NUMBER")]
    pub to: String,

    /// The message's text.
    #[arg(long, value_name = "TEXT")]
    pub text: Option<String>,

    /// The files the message carries (their type from their name).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

impl Args {
    /// The emulator's configuration, or what is wrong with the flags.
    pub fn config(self) -> Result<EmulatorConfig, String> {
        let faults = Faults {
            latency_ms: self.latency_ms,
            error_rate: self.error_rate,
            error_statuses: self.error_statuses,
            retry_after_secs: self.retry_after_secs,
            cut_rate: self.cut_rate,
            truncate_rate: self.truncate_rate,
        };
        faults.validate()?;
        if let Some(url) = &self.callback_url {
            match reqwest::Url::parse(url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {
                    if !u.username().is_empty() && self.callback_username.is_some() {
                        return Err("--callback-url holds credentials and --callback-username \
                                    gives others: give them once"
                            .to_string());
                    }
                }
                _ => return Err("--callback-url is not an http:// or https:// URL".to_string()),
            }
        }
        if self.callback_timeout.is_zero() {
            return Err("--callback-timeout must be more than 0".to_string());
        }
        let page_size = usize::try_from(self.page_size).map_err(|_| "--page-size is too large")?;
        Ok(EmulatorConfig {
            listen: self.listen,
            account: self.account,
            basic: (!self.no_basic).then_some((self.username, self.password)),
            oauth: (!self.no_oauth).then_some((self.client_id, self.client_secret)),
            token_ttl: self.token_ttl,
            store: StoreConfig {
                page_size,
                max_size: self.max_size,
                retention: self.retention,
                last_modified: !self.no_last_modified,
                ..StoreConfig::default()
            },
            faults,
            seed: self.seed,
            data_dir: self.data_dir,
            callback: self.callback_url.map(|url| CallbackConfig {
                url,
                credentials: self.callback_username.zip(self.callback_password),
                attempt_timeout: self.callback_timeout,
                retry_time: self.callback_retry_time,
            }),
            application_id: self.application_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_modified_is_sent_unless_turned_off() {
        let config = |args: &[&str]| {
            let argv = std::iter::once("bwmedia-emulator").chain(args.iter().copied());
            Args::try_parse_from(argv).unwrap().config().unwrap()
        };
        assert!(config(&[]).store.last_modified);
        assert!(!config(&["--no-last-modified"]).store.last_modified);
    }
}
