//! Reaching the media store when mounting, and saying what went wrong in words a user can act on.
//!
//! Mounting takes two steps, each retried for `--retry-time` like any call: under OAuth2 the
//! access token first (the token endpoint), then the first listing page (the Messaging API).
//! Keeping them apart is what lets the final error name the one setting to check: the token URL
//! for the first, the base URL for the second. The hard parts:
//! - **Silence.** A closed port or a name that does not resolve is retried for the whole retry
//!   time (30 s by default). A step that has not ended after [`STILL_TRYING_AFTER`] says so once,
//!   with the URL it is trying ([`StillTrying`]), on standard error and in the log.
//! - **Refusals are not outages.** A 401 or 403 never reads "cannot reach": it says whose
//!   credentials were refused and what to do. Refused Basic credentials get the news that
//!   Bandwidth retired API users (username and password) on 2026-12-02, and how to create OAuth2
//!   client credentials instead; Basic still serves the emulator and accounts that kept one.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::api::http::{HttpApi, DEFAULT_BASE_URL, DEFAULT_TOKEN_URL};
use crate::api::ApiError;
use crate::cli::logging::LogOutput;
use crate::fs::{FsError, FsOptions, MediaFs};

/// How long a step of mounting may take before the user is told it is still trying.
pub const STILL_TRYING_AFTER: Duration = Duration::from_millis(1500);

/// Where the mount goes, as the messages name it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The Messaging API base URL.
    pub base_url: String,
    /// The OAuth2 token URL.
    pub token_url: String,
    /// The account id.
    pub account_id: String,
    /// Whether the credentials are an API user's (HTTP Basic) rather than OAuth2's.
    pub basic: bool,
    /// How long each step is retried (`--retry-time`).
    pub retry_time: Duration,
}

/// The two steps of mounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Getting the OAuth2 access token.
    Token,
    /// The first listing page.
    Listing,
}

/// Get the token (under OAuth2), then the first listing page: the file system over `api`. On
/// failure, the sentence to print. A slow step is told to `log` (see [`StillTrying`]).
pub fn open(
    api: Arc<HttpApi>,
    opts: FsOptions,
    endpoint: &Endpoint,
    log: &LogOutput,
) -> Result<Arc<MediaFs>, String> {
    let retrying = humantime::format_duration(endpoint.retry_time);
    if !endpoint.basic {
        let _note = StillTrying::start(
            format!(
                "still trying to get an access token from {} (for up to {retrying}, \
                 --retry-time)",
                endpoint.token_url
            ),
            log.clone(),
        );
        api.authenticate()
            .map_err(|e| failure(Step::Token, &e, endpoint))?;
    }
    let _note = StillTrying::start(
        format!(
            "still trying to reach the media store at {} (for up to {retrying}, --retry-time)",
            endpoint.base_url
        ),
        log.clone(),
    );
    MediaFs::connect(api, opts).map_err(|e| match e {
        FsError::Api { source, .. } => failure(Step::Listing, &source, endpoint),
        other => format!("cannot mount: {other}"),
    })
}

/// The sentence for a step that failed with `e`: what happened, and what to do.
fn failure(step: Step, e: &ApiError, at: &Endpoint) -> String {
    let account = &at.account_id;
    match (step, e) {
        (Step::Token, ApiError::Unauthorized(_) | ApiError::Forbidden(_)) => format!(
            "{e}. Set BW_CLIENT_ID and BW_CLIENT_SECRET to the client id and secret of OAuth2 \
             client credentials created in the Bandwidth App for account {account}"
        ),
        (Step::Token, e) => format!(
            "cannot get an access token from the token URL {}: {e}; check the token URL \
             (--token-url or BW_TOKEN_URL; Bandwidth's is {DEFAULT_TOKEN_URL}) and the network",
            at.token_url
        ),
        (Step::Listing, ApiError::Unauthorized(_)) if at.basic => format!(
            "{e}. Bandwidth retired API users (username and password) on 2026-12-02: create \
             OAuth2 client credentials in the Bandwidth App and set BW_CLIENT_ID and \
             BW_CLIENT_SECRET in place of BW_USERNAME and BW_PASSWORD (Basic authentication \
             still serves bwmedia-emulator and accounts that kept an API user)"
        ),
        (Step::Listing, ApiError::Unauthorized(_)) => format!(
            "{e}. The token endpoint accepted BW_CLIENT_ID and BW_CLIENT_SECRET, but the \
             Messaging API refused the token: check in the Bandwidth App that these client \
             credentials may use the Messaging API of account {account}, and that the token URL \
             ({}) belongs to the same service as the base URL ({})",
            at.token_url, at.base_url
        ),
        (Step::Listing, ApiError::Forbidden(_)) => format!(
            "{e}. The credentials are valid but not for account {account}: check BW_ACCOUNT_ID, \
             and that the {} has access to it",
            if at.basic {
                "API user (BW_USERNAME)"
            } else {
                "OAuth2 client (BW_CLIENT_ID)"
            }
        ),
        (Step::Listing, ApiError::NotFound) => format!(
            "the server has no media listing under the base URL {} (HTTP 404); check it \
             (--base-url or BW_BASE_URL): Bandwidth's is {DEFAULT_BASE_URL}, ending with /api/v2",
            at.base_url
        ),
        (Step::Listing, e) => format!(
            "cannot reach the media store at {}: {e}; check the base URL (--base-url or \
             BW_BASE_URL; Bandwidth's is {DEFAULT_BASE_URL}) and the network",
            at.base_url
        ),
    }
}

/// Says `message` once ([`LogOutput::warn_user`]) if it has not been dropped within
/// [`STILL_TRYING_AFTER`]: the guard of one step of mounting.
pub struct StillTrying {
    done: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StillTrying {
    /// Start the clock of one step.
    pub fn start(message: String, log: LogOutput) -> StillTrying {
        let (done, ended) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("still-trying".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = ended.recv_timeout(STILL_TRYING_AFTER) {
                    log.warn_user(&message);
                }
            });
        if let Err(e) = &thread {
            log::debug!("no thread to say that mounting is slow ({e})");
        }
        StillTrying {
            done: Some(done),
            thread: thread.ok(),
        }
    }
}

impl Drop for StillTrying {
    fn drop(&mut self) {
        // The step is over: the waiting thread sees the channel close and ends at once.
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(basic: bool) -> Endpoint {
        Endpoint {
            base_url: "http://127.0.0.1:9/api/v2".into(),
            token_url: "http://127.0.0.1:9/api/v1/oauth2/token".into(),
            account_id: "9900000".into(),
            basic,
            retry_time: Duration::from_secs(30),
        }
    }

    #[test]
    fn each_failure_names_what_to_check_and_refusals_never_read_cannot_reach() {
        let refused = ApiError::Unauthorized("refused".into());
        let down = ApiError::Transport("could not connect".into());
        let cases = [
            (Step::Token, refused.clone(), false, "BW_CLIENT_SECRET"),
            (Step::Token, down.clone(), false, "BW_TOKEN_URL"),
            (Step::Listing, refused.clone(), true, "retired"),
            (Step::Listing, refused.clone(), false, "Messaging API"),
            (
                Step::Listing,
                ApiError::Forbidden("no".into()),
                false,
                "BW_ACCOUNT_ID",
            ),
            (Step::Listing, ApiError::NotFound, false, "BW_BASE_URL"),
            (Step::Listing, down.clone(), false, "BW_BASE_URL"),
        ];
        for (step, e, basic, says) in cases {
            let s = failure(step, &e, &endpoint(basic));
            assert!(s.contains(says), "{step:?} {e:?}: {s}");
            if matches!(e, ApiError::Unauthorized(_) | ApiError::Forbidden(_)) {
                assert!(!s.starts_with("cannot reach"), "{s}");
            }
        }
    }
}
