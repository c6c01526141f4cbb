//! The Bandwidth Media API emulator: a local HTTP server that answers as production does
//! (paged list, get, put, delete; Basic and OAuth2 authentication; JSON errors), with knobs
//! production lacks: request counters for exact round-trip tests, fault injection (latency,
//! error statuses, connections cut or bodies truncated mid-body), and whether a download says
//! when the media was uploaded (`Last-Modified`, sent by default: what production does is
//! unknown, so clients are tested both ways).
//!
//! [`Emulator::start`] binds the socket in the caller (so a bad address fails at once and the
//! socket accepts connections when `start` returns) and serves on its own tokio runtime, on its
//! own threads; dropping the [`Emulator`] stops the server and its runtime. Media live in the
//! [`store::Store`], which also answers [`crate::api::MediaApi`] in-process.
//!
//! Submodules: `server` (routes and HTTP details), `auth` (Basic and tokens), [`faults`]
//! (fault draws and how a connection is cut), [`store`] (media, pages, stats), `faulty_store`
//! (the store in-process, behind calls that can be made to fail or stall; for the tests only,
//! with the `test-support` feature), [`cli`] (the command line of `bwmedia-emulator`).

pub(crate) mod auth;
pub mod cli;
pub mod faults;
#[cfg(any(test, feature = "test-support"))]
pub mod faulty_store;
pub mod inbound;
pub(crate) mod server;
pub mod store;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::watch;

pub use faults::Faults;
pub use inbound::CallbackConfig;
pub use store::{Stats, StatsSnapshot, Store, StoreConfig};

/// The application id inbound callbacks name unless told otherwise.
pub const DEFAULT_APPLICATION_ID: &str = "93de2206-9669-4e07-948d-329f4b722ee2";

/// How an emulator behaves; the defaults are production's, with demo credentials.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Where to listen (default `127.0.0.1:0`: a free port on loopback).
    pub listen: SocketAddr,
    /// The one account id it serves (default `9900000`); others answer 403.
    pub account: String,
    /// The API user's Basic credentials (default `demo-user`/`demo-password`); `None` disables.
    pub basic: Option<(String, String)>,
    /// The OAuth2 client id and secret (default `demo-client`/`demo-secret`); `None` disables.
    pub oauth: Option<(String, String)>,
    /// How long an issued token is valid (default 3600 s).
    pub token_ttl: Duration,
    /// Page size, size limit, retention; `media_url_base` is filled in by [`Emulator::start`].
    pub store: StoreConfig,
    /// Faults injected from the start (default none).
    pub faults: Faults,
    /// A directory whose files are loaded at start (relative paths become media names).
    pub seed: Option<PathBuf>,
    /// Where the media are kept on disk, to outlive a restart (default: memory only).
    pub data_dir: Option<PathBuf>,
    /// Where inbound messages' `message-received` callbacks go (default: nowhere).
    pub callback: Option<CallbackConfig>,
    /// The application id inbound callbacks name.
    pub application_id: String,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            account: "9900000".to_string(),
            basic: Some(("demo-user".to_string(), "demo-password".to_string())),
            oauth: Some(("demo-client".to_string(), "demo-secret".to_string())),
            token_ttl: Duration::from_secs(3600),
            store: StoreConfig::default(),
            faults: Faults::default(),
            seed: None,
            data_dir: None,
            callback: None,
            application_id: DEFAULT_APPLICATION_ID.to_string(),
        }
    }
}

/// Secrets are never printed: only whether they are set.
impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |pair: &Option<(String, String)>| {
            pair.as_ref()
                .map(|(id, _)| format!("({id:?}, <redacted>)"))
                .unwrap_or_else(|| "None".to_string())
        };
        f.debug_struct("EmulatorConfig")
            .field("listen", &self.listen)
            .field("account", &self.account)
            .field("basic", &format_args!("{}", redact(&self.basic)))
            .field("oauth", &format_args!("{}", redact(&self.oauth)))
            .field("token_ttl", &self.token_ttl)
            .field("store", &self.store)
            .field("faults", &self.faults)
            .field("seed", &self.seed)
            .field("data_dir", &self.data_dir)
            .field("callback", &self.callback)
            .field("application_id", &self.application_id)
            .finish()
    }
}

/// Set once the server thread has stopped serving.
#[derive(Default)]
struct Stopped {
    done: Mutex<bool>,
    cond: Condvar,
}

struct MarkStopped(Arc<Stopped>);

impl Drop for MarkStopped {
    fn drop(&mut self) {
        *self.0.done.lock() = true;
        self.0.cond.notify_all();
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    stopped: Arc<Stopped>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The address clients should use: loopback when listening on every interface.
fn client_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

impl Emulator {
    /// Bind, load the seed, and serve on a runtime of its own (two worker threads). Returns
    /// once the socket accepts connections.
    pub fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        if let Err(e) = config.faults.validate() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bwmedia-emulator")
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            let socket = match config.listen {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.set_reuseaddr(true)?;
            socket.bind(config.listen)?;
            socket.listen(1024)?
        };
        let addr = listener.local_addr()?;

        let mut store_config = config.store.clone();
        store_config.media_url_base = format!(
            "http://{}/api/v2/users/{}/media",
            client_addr(addr),
            crate::api::path::encode_media_id(&config.account)
        );
        let store = Arc::new(match &config.data_dir {
            Some(dir) => {
                let store = Store::with_data_dir(store_config, dir).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("data directory {}: {e}", dir.display()))
                })?;
                log::info!("{} media kept in {}", store.len(), dir.display());
                store
            }
            None => Store::new(store_config),
        });
        if let Some(dir) = &config.seed {
            let n = store.seed_from_dir(dir)?;
            log::info!("seeded {n} media from {}", dir.display());
        }
        let shared = Arc::new(server::Shared {
            account: config.account.clone(),
            auth: auth::Auth::new(config.basic.clone(), config.oauth.clone(), config.token_ttl),
            store,
            faults: RwLock::new(config.faults.clone()),
            callback: match &config.callback {
                Some(cb) => {
                    let client = reqwest::Client::builder()
                        .connect_timeout(cb.attempt_timeout)
                        .build()
                        .map_err(std::io::Error::other)?;
                    Some((Arc::new(cb.clone()), client))
                }
                None => None,
            },
            application_id: config.application_id.clone(),
        });

        let (shutdown, shutdown_rx) = watch::channel(false);
        let stopped = Arc::new(Stopped::default());
        let router = server::router(shared.clone());
        let thread = {
            let stopped = stopped.clone();
            std::thread::Builder::new()
                .name("bwmedia-emulator-main".to_string())
                .spawn(move || {
                    // Marks the server stopped on the way out, even by a panic, so `wait`
                    // never hangs.
                    let _mark = MarkStopped(stopped);
                    runtime.block_on(server::serve(listener, router, shutdown_rx));
                    // Connections still open are dropped with their tasks.
                    runtime.shutdown_timeout(Duration::from_secs(1));
                })?
        };
        Ok(Emulator {
            addr,
            shared,
            shutdown,
            thread: Some(thread),
            stopped,
        })
    }

    /// The address the server listens on (with the real port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: where the control endpoints live.
    pub fn root_url(&self) -> String {
        format!("http://{}", client_addr(self.addr))
    }

    /// `http://127.0.0.1:PORT/api/v2`: the base URL a Media API client is given.
    pub fn base_url(&self) -> String {
        format!("{}/api/v2", self.root_url())
    }

    /// `http://127.0.0.1:PORT/api/v1/oauth2/token`: the OAuth2 token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/api/v1/oauth2/token", self.root_url())
    }

    /// The account id it serves.
    pub fn account(&self) -> &str {
        &self.shared.account
    }

    /// The media it holds (shared with the server: changes show in both).
    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// Requests served so far, per operation, failures included.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.store.stats.snapshot()
    }

    /// The most API requests served at once since the last reset of the counters.
    pub fn peak_in_flight(&self) -> u64 {
        self.shared.store.stats.peak_in_flight()
    }

    /// Start the request counters from zero.
    pub fn reset_stats(&self) {
        self.shared.store.stats.reset()
    }

    /// The faults injected from now on (`Faults::default()` for none).
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.write() = faults;
    }

    /// The faults injected now.
    pub fn faults(&self) -> Faults {
        self.shared.faults.read().clone()
    }

    /// Ask the server to stop, without waiting (see [`Emulator::wait`]).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Block until the server has stopped (after [`Emulator::shutdown`], from another thread).
    pub fn wait(&self) {
        let mut done = self.stopped.done.lock();
        while !*done {
            self.stopped.cond.wait(&mut done);
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::warn!("the emulator's server thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let config = EmulatorConfig {
            callback: Some(CallbackConfig {
                url: "http://app:url-secret@127.0.0.1:3000/cb".into(),
                credentials: Some(("app".into(), "cb-secret".into())),
                attempt_timeout: Duration::from_secs(10),
                retry_time: Duration::from_secs(60),
            }),
            ..EmulatorConfig::default()
        };
        let text = format!("{config:?}");
        assert!(text.contains("demo-user"));
        for secret in ["demo-password", "demo-secret", "url-secret", "cb-secret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn start_and_drop_promptly() {
        let started = std::time::Instant::now();
        let emu = Emulator::start(EmulatorConfig::default()).unwrap();
        assert_ne!(emu.addr().port(), 0);
        assert!(emu.base_url().ends_with("/api/v2"));
        let addr = emu.addr();
        drop(emu);
        assert!(std::net::TcpStream::connect(addr).is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn wait_returns_after_shutdown() {
        let emu = Emulator::start(EmulatorConfig::default()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                emu.shutdown();
            });
            emu.wait();
        });
        assert!(std::net::TcpStream::connect(emu.addr()).is_err());
    }

    #[test]
    fn bad_faults_refuse_to_start() {
        let config = EmulatorConfig {
            faults: Faults {
                error_rate: 3.0,
                ..Faults::default()
            },
            ..EmulatorConfig::default()
        };
        assert!(Emulator::start(config).is_err());
    }

    #[test]
    fn a_taken_port_is_an_error() {
        let first = Emulator::start(EmulatorConfig::default()).unwrap();
        let second = Emulator::start(EmulatorConfig {
            listen: first.addr(),
            ..EmulatorConfig::default()
        });
        assert!(second.is_err());
    }
}
