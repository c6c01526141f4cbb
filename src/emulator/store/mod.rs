//! The emulator's media store: media held in memory as shared [`Bytes`] (served without copying),
//! sorted by name, with Bandwidth's size limit and retention, and request counters.
//!
//! The HTTP server answers from it; it also implements [`MediaApi`] directly so the filesystem
//! core can be unit-tested in-process, with the same listing pages and tokens as over HTTP.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::api::{ApiError, ListPage, Media, MediaApi, MediaInfo, MAX_MEDIA_SIZE};

pub mod disk;
mod stats;
pub use disk::Disk;
pub use stats::{Serving, Stats, StatsSnapshot};

/// How the store behaves; the defaults are production's.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Items per listing page (production: 1000).
    pub page_size: usize,
    /// Largest media accepted, in bytes (production: 3.75 MB).
    pub max_size: u64,
    /// How long a media lives after its last upload (production: 48 hours).
    pub retention: Duration,
    /// Base of the URLs reported in listings and by `media_url`, e.g.
    /// `http://127.0.0.1:8080/api/v2/users/9900000/media`.
    pub media_url_base: String,
    /// Whether a download says when the media was uploaded (`Last-Modified`). Whether
    /// production does is unknown, so both behaviours are there to test against.
    pub last_modified: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            page_size: 1000,
            max_size: MAX_MEDIA_SIZE,
            retention: crate::api::RETENTION,
            media_url_base: "http://127.0.0.1/api/v2/users/9900000/media".to_string(),
            last_modified: true,
        }
    }
}

/// One stored media.
#[derive(Debug, Clone)]
pub struct StoredMedia {
    /// The bytes.
    pub body: Bytes,
    /// The `Content-Type` it was uploaded with.
    pub content_type: String,
    /// The `Cache-Control` it was uploaded with.
    pub cache_control: Option<String>,
    /// When it was stored (it lives for the retention after its upload).
    pub stored_at: Instant,
    /// How old it was when stored (a media dated in the past by [`Store::put_at`]).
    pub age: Duration,
    /// When it was uploaded, by the clock (what `Last-Modified` says).
    pub uploaded: SystemTime,
}

/// Why the store refused a call; the server turns these into Bandwidth's statuses and bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// 404
    #[error("the media was not found")]
    NotFound,
    /// 413
    #[error("{size} bytes is over the limit of {limit}")]
    TooLarge {
        /// The size of the upload.
        size: u64,
        /// The store's limit.
        limit: u64,
    },
    /// 400: the continuation token is not one this store made.
    #[error("invalid continuation token")]
    BadToken,
    /// 500: the data directory could not be written.
    #[error(
        "the emulator cannot write its data directory ({0}); give it room or permission, or \
         start it with another --data-dir"
    )]
    Disk(String),
}

/// The media of one account, in memory, and on disk too with a data directory.
#[derive(Debug)]
pub struct Store {
    config: RwLock<StoreConfig>,
    media: RwLock<BTreeMap<String, StoredMedia>>,
    /// The data directory, if any; changes are written there before memory, one at a time.
    disk: Option<Mutex<Disk>>,
    /// Requests served.
    pub stats: Stats,
}

const TOKEN_PREFIX: &str = "bwemu1:";

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Store {
        Store {
            config: RwLock::new(config),
            media: RwLock::new(BTreeMap::new()),
            disk: None,
            stats: Stats::default(),
        }
    }

    /// A store kept in the data directory `dir` as well as in memory, holding what `dir`
    /// holds (media past the retention are left out, and their files removed).
    pub fn with_data_dir(config: StoreConfig, dir: &std::path::Path) -> std::io::Result<Store> {
        let (disk, loaded) = Disk::open(dir)?;
        let mut store = Store::new(config);
        let now = SystemTime::now();
        let retention = store.config.read().retention;
        let mut expired = Vec::new();
        {
            let media = store.media.get_mut();
            for m in loaded {
                let age = now.duration_since(m.uploaded).unwrap_or_default();
                if age >= retention {
                    expired.push(m.name);
                    continue;
                }
                media.insert(
                    m.name,
                    StoredMedia {
                        body: m.body,
                        content_type: m.content_type,
                        cache_control: m.cache_control,
                        stored_at: Instant::now(),
                        age,
                        uploaded: m.uploaded,
                    },
                );
            }
        }
        for name in expired {
            disk.remove(&name)?;
        }
        store.disk = Some(Mutex::new(disk));
        Ok(store)
    }

    /// The settings now.
    pub fn config(&self) -> StoreConfig {
        self.config.read().clone()
    }

    /// Change the settings at run time (tests shrink the page size, say).
    pub fn set_config(&self, config: StoreConfig) {
        *self.config.write() = config;
    }

    fn alive(&self, m: &StoredMedia, now: Instant) -> bool {
        now.duration_since(m.stored_at) + m.age < self.config.read().retention
    }

    /// One page of names after the position `token` encodes (all names sorted, as Bandwidth's
    /// order is unknown). Tokens are opaque to clients: base64 of the last name served, so they
    /// contain `+` and `/` like production's.
    pub fn list_page(
        &self,
        token: Option<&str>,
    ) -> Result<(Vec<MediaInfo>, Option<String>), StoreError> {
        let after = match token {
            None => None,
            Some(t) => Some(decode_token(t).ok_or(StoreError::BadToken)?),
        };
        let page_size = self.config.read().page_size.max(1);
        let now = Instant::now();
        let media = self.media.read();
        let range = match &after {
            None => media.range::<String, _>(..),
            Some(a) => media.range::<String, _>((Bound::Excluded(a.clone()), Bound::Unbounded)),
        };
        let mut items = Vec::with_capacity(page_size.min(media.len()));
        let mut more = false;
        for (name, m) in range.filter(|(_, m)| self.alive(m, now)) {
            if items.len() == page_size {
                more = true;
                break;
            }
            items.push(MediaInfo {
                name: name.clone(),
                content_length: m.body.len() as u64,
            });
        }
        let next = if more {
            items.last().map(|last| encode_token(&last.name))
        } else {
            None
        };
        Ok((items, next))
    }

    /// A live media.
    pub fn get(&self, name: &str) -> Result<StoredMedia, StoreError> {
        let media = self.media.read();
        match media.get(name) {
            Some(m) if self.alive(m, Instant::now()) => Ok(m.clone()),
            _ => Err(StoreError::NotFound),
        }
    }

    /// Store a media (replacing one of the same name), unless it is over the size limit.
    pub fn put(
        &self,
        name: &str,
        body: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), StoreError> {
        self.put_at(name, body, content_type, cache_control, SystemTime::now())
    }

    /// [`Store::put`] as if it had happened at `uploaded` (now or earlier): tests and seeds of
    /// media that arrived a while ago. It lives for the retention after that moment.
    pub fn put_at(
        &self,
        name: &str,
        body: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
        uploaded: SystemTime,
    ) -> Result<(), StoreError> {
        let limit = self.config.read().max_size;
        let size = body.len() as u64;
        if size > limit {
            return Err(StoreError::TooLarge { size, limit });
        }
        // On disk first (durable when this returns), then in memory, one change at a time so
        // both agree on the last one.
        let disk = self.disk.as_ref().map(|d| d.lock());
        if let Some(disk) = &disk {
            disk.save(name, &body, content_type, cache_control, uploaded)
                .map_err(|e| StoreError::Disk(format!("{}: {e}", disk.dir().display())))?;
        }
        let now = Instant::now();
        let age = SystemTime::now()
            .duration_since(uploaded)
            .unwrap_or_default();
        self.media.write().insert(
            name.to_string(),
            StoredMedia {
                body,
                content_type: content_type.to_string(),
                cache_control: cache_control.map(str::to_string),
                stored_at: now,
                age,
                uploaded,
            },
        );
        Ok(())
    }

    /// What a download says of when `m` was stored: its upload time, unless the store is set
    /// to send no `Last-Modified`.
    pub fn last_modified(&self, m: &StoredMedia) -> Option<SystemTime> {
        self.config.read().last_modified.then_some(m.uploaded)
    }

    /// Remove a media behind the API's back (tests, tools); a failure to write the data
    /// directory is logged.
    pub fn delete(&self, name: &str) {
        if let Err(e) = self.remove(name) {
            log::error!("cannot delete {name:?}: {e:?}");
        }
    }

    /// Remove a media, from the data directory first; a missing one is not an error
    /// (production answers 204).
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let disk = self.disk.as_ref().map(|d| d.lock());
        if let Some(disk) = &disk {
            disk.remove(name)
                .map_err(|e| StoreError::Disk(format!("{}: {e}", disk.dir().display())))?;
        }
        self.media.write().remove(name);
        Ok(())
    }

    /// Number of live media.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.media
            .read()
            .values()
            .filter(|m| self.alive(m, now))
            .count()
    }

    /// Whether no media lives.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Names of all live media, sorted.
    pub fn names(&self) -> Vec<String> {
        let now = Instant::now();
        let media = self.media.read();
        media
            .iter()
            .filter(|(_, m)| self.alive(m, now))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Load every file below `dir` (recursively); the path relative to `dir` becomes the name.
    pub fn seed_from_dir(&self, dir: &std::path::Path) -> std::io::Result<usize> {
        let mut count = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d)? {
                let entry = entry?;
                let path = entry.path();
                let ft = entry.file_type()?;
                if ft.is_dir() {
                    stack.push(path);
                } else if ft.is_file() {
                    let rel = path.strip_prefix(dir).unwrap_or(&path);
                    let name = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    let body = Bytes::from(std::fs::read(&path)?);
                    let ct = crate::api::content_type_for(&name);
                    self.put(&name, body, &ct, None).map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: {e:?}", path.display()),
                        )
                    })?;
                    count += 1;
                }
            }
        }
        Ok(count)
    }
}

fn encode_token(last_name: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{TOKEN_PREFIX}{last_name}"))
}

fn decode_token(token: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.strip_prefix(TOKEN_PREFIX).map(str::to_string)
}

fn store_error_to_api(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::NotFound,
        StoreError::TooLarge { size, limit } => ApiError::TooLarge {
            size,
            limit: Some(limit),
        },
        StoreError::BadToken => ApiError::Status {
            status: 400,
            kind: Some("request-validation".into()),
            description: Some("invalid continuation token".into()),
        },
        StoreError::Disk(why) => ApiError::Status {
            status: 500,
            kind: Some("internal-server-error".into()),
            description: Some(why),
        },
    }
}

/// The store answers the API in-process, counting requests as the server would.
impl MediaApi for Store {
    fn list_page(&self, token: Option<&str>) -> Result<ListPage, ApiError> {
        self.stats.list.fetch_add(1, Ordering::Relaxed);
        let (items, next) = Store::list_page(self, token).map_err(store_error_to_api)?;
        Ok(ListPage { items, next })
    }

    fn get(&self, name: &str) -> Result<Media, ApiError> {
        self.stats.get.fetch_add(1, Ordering::Relaxed);
        let m = Store::get(self, name).map_err(store_error_to_api)?;
        // What crosses HTTP: a date in whole seconds.
        let last_modified = self
            .last_modified(&m)
            .and_then(|t| httpdate::parse_http_date(&httpdate::fmt_http_date(t)).ok());
        Ok(Media {
            body: m.body,
            content_type: Some(m.content_type),
            cache_control: m.cache_control,
            last_modified,
        })
    }

    fn put(
        &self,
        name: &str,
        body: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), ApiError> {
        self.stats.put.fetch_add(1, Ordering::Relaxed);
        Store::put(self, name, body, content_type, cache_control).map_err(store_error_to_api)
    }

    fn delete(&self, name: &str) -> Result<(), ApiError> {
        self.stats.delete.fetch_add(1, Ordering::Relaxed);
        Store::remove(self, name).map_err(store_error_to_api)
    }

    fn media_url(&self, name: &str) -> String {
        format!(
            "{}/{}",
            self.config.read().media_url_base,
            crate::api::path::encode_media_id(name)
        )
    }
}

#[cfg(test)]
mod tests;
