//! The command line of `bwmedia-emulator`, in the library so that the man page generator
//! reaches it as well as the binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::{EmulatorConfig, Faults, StoreConfig};

/// The built-in test password (a local emulator's, never an account's).
pub const DEMO_PASSWORD: &str = "demo-password";
/// The built-in test client secret.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";

/// A local emulator of Bandwidth's Media API, for tests and development without an account.
///
/// It answers as production does: list, get, put and delete under
/// /api/v2/users/{accountId}/media, and the OAuth2 token endpoint /api/v1/oauth2/token. Media
/// are kept in memory. Control endpoints (never subject to faults):
/// GET /_emulator/stats, POST /_emulator/stats/reset, GET and PUT /_emulator/faults.
///
/// The credentials are test credentials for a local emulator: passing them as flags is
/// acceptable here (flags show in `ps`), or use the environment variables.
/// Logs go to stderr; set RUST_LOG=debug to log every request.
#[derive(Debug, Parser)]
#[command(name = "bwmedia-emulator", version)]
pub struct Args {
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

    /// Load every file below DIR at start (its path relative to DIR becomes the media name).
    #[arg(long, value_name = "DIR")]
    pub seed: Option<PathBuf>,

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
