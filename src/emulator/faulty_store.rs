//! The in-process store behind calls that can be made to fail or stall, for tests of the core
//! (with or without a FUSE mount) that need an API error or a download held mid-way without
//! an HTTP server in between.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::store::Store;
use crate::api::{ApiError, ListPage, Media, MediaApi};

/// Longest a GET or PUT waits while [`StoreFaults::hold_gets`] or [`StoreFaults::hold_puts`]
/// is set (a test that forgets to clear it fails instead of hanging).
const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// What the next calls do instead of answering: each error, while set, is returned by every
/// call of its kind.
#[derive(Default)]
pub struct StoreFaults {
    /// The error of every listing page while set.
    pub list: Mutex<Option<ApiError>>,
    /// The error of every GET while set.
    pub get: Mutex<Option<ApiError>>,
    /// The error of every GET of one name while set.
    pub get_of: Mutex<Option<(String, ApiError)>>,
    /// The error of every PUT while set.
    pub put: Mutex<Option<ApiError>>,
    /// The error of every PUT of one name while set.
    pub put_of: Mutex<Option<(String, ApiError)>>,
    /// The error of every DELETE while set.
    pub delete: Mutex<Option<ApiError>>,
    /// The error of every DELETE of one name while set.
    pub delete_of: Mutex<Option<(String, ApiError)>>,
    /// While set, GETs wait until it is cleared.
    pub hold_gets: AtomicBool,
    /// GETs begun, held ones included.
    pub gets_started: AtomicU64,
    /// While set, a listing page asked for with a continuation token names that same token as
    /// its next (a hostile server whose listing never ends).
    pub repeat_tokens: AtomicBool,
    /// Milliseconds every PUT takes (a slow server).
    pub put_delay_ms: AtomicU64,
    /// While set, PUTs wait until it is cleared (an upload held at a chosen point).
    pub hold_puts: AtomicBool,
    /// PUTs begun, held ones included.
    pub puts_started: AtomicU64,
}

/// A [`MediaApi`] over `store`, with `faults` applied first.
pub struct FaultyStore {
    /// The store behind the calls.
    pub store: Arc<Store>,
    /// What the calls do instead, while set.
    pub faults: Arc<StoreFaults>,
}

fn fault(slot: &Mutex<Option<ApiError>>) -> Result<(), ApiError> {
    match slot.lock().clone() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The error in `slot` if it is set for `name`.
fn fault_of(slot: &Mutex<Option<(String, ApiError)>>, name: &str) -> Result<(), ApiError> {
    match slot.lock().as_ref() {
        Some((n, e)) if n == name => Err(e.clone()),
        _ => Ok(()),
    }
}

impl MediaApi for FaultyStore {
    fn list_page(&self, token: Option<&str>) -> Result<ListPage, ApiError> {
        fault(&self.faults.list)?;
        let mut page = MediaApi::list_page(&*self.store, token)?;
        if let Some(t) = token.filter(|_| self.faults.repeat_tokens.load(Ordering::SeqCst)) {
            page.next = Some(t.to_string());
        }
        Ok(page)
    }

    fn get(&self, name: &str) -> Result<Media, ApiError> {
        self.faults.gets_started.fetch_add(1, Ordering::SeqCst);
        let t0 = Instant::now();
        while self.faults.hold_gets.load(Ordering::SeqCst) && t0.elapsed() < HOLD_LIMIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        fault(&self.faults.get)?;
        fault_of(&self.faults.get_of, name)?;
        MediaApi::get(&*self.store, name)
    }

    fn put(
        &self,
        name: &str,
        body: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), ApiError> {
        self.faults.puts_started.fetch_add(1, Ordering::SeqCst);
        let t0 = Instant::now();
        while self.faults.hold_puts.load(Ordering::SeqCst) && t0.elapsed() < HOLD_LIMIT {
            std::thread::sleep(Duration::from_millis(5));
        }
        fault(&self.faults.put)?;
        fault_of(&self.faults.put_of, name)?;
        let delay = self.faults.put_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        MediaApi::put(&*self.store, name, body, content_type, cache_control)
    }

    fn delete(&self, name: &str) -> Result<(), ApiError> {
        fault(&self.faults.delete)?;
        fault_of(&self.faults.delete_of, name)?;
        MediaApi::delete(&*self.store, name)
    }

    fn media_url(&self, name: &str) -> String {
        self.store.media_url(name)
    }
}
