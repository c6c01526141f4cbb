//! `--data-dir`: the store's media on disk, so that a restart serves the same account.
//!
//! One file per media, `NNNNNNNNNNNNNNNN.media` (16 hex digits, a larger number for every
//! upload): a magic line, a JSON header line (name, type, cache-control, upload time, length),
//! then the bytes. An upload writes `NNN.tmp`, `fsync`s it, renames it to `NNN.media` and
//! `fsync`s the directory (`crate::durable`); only then is it stored in memory and answered
//! 204, and the file of the version it replaces is removed after. So a crash at any moment leaves each upload wholly
//! there or not at all: a `.tmp` is a partial upload, removed at the next start; of two files
//! of one name (a crash before the older was removed) the larger number is the newer; a file
//! whose length is not its header's cannot come from a crash and is kept aside in `damaged/`.
//! A deletion removes the file and `fsync`s the directory before it is answered. One emulator
//! at a time uses a data directory (a lock). Media that expire while it runs stay on disk
//! until the next start, which removes them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::durable::{self, sync_dir};

const MAGIC: &str = "bwmedia-emulator media 1";
const STORED: &str = "media";
const PARTIAL: &str = "tmp";

/// What the header line of a media's file says.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    name: String,
    content_type: String,
    cache_control: Option<String>,
    /// Milliseconds since the Unix epoch.
    uploaded_ms: u64,
    len: u64,
}

/// A media found on disk at start.
#[derive(Debug)]
pub struct Loaded {
    /// The media name.
    pub name: String,
    /// Its bytes.
    pub body: Bytes,
    /// The `Content-Type` it was uploaded with.
    pub content_type: String,
    /// The `Cache-Control` it was uploaded with.
    pub cache_control: Option<String>,
    /// When it was uploaded.
    pub uploaded: SystemTime,
}

/// The data directory of a store.
#[derive(Debug)]
pub struct Disk {
    dir: PathBuf,
    next: AtomicU64,
    /// The file number of each media name.
    files: Mutex<HashMap<String, u64>>,
    /// Older files of a name that could not be removed yet: a deletion removes them too, so
    /// that none comes back at the next start.
    leftovers: Mutex<HashMap<String, Vec<u64>>>,
    /// One emulator at a time in a data directory, for as long as it runs.
    _lock: File,
}

const LOCK_FILE: &str = "lock";

impl Disk {
    /// Open (or make, mode 0700) the data directory `dir`: it, and the media it holds, oldest
    /// upload first. Partial uploads are removed; older files of a name left by a crash too.
    pub fn open(dir: &Path) -> std::io::Result<(Disk, Vec<Loaded>)> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let Some(lock) = durable::lock(dir, LOCK_FILE)? else {
            return Err(std::io::Error::other(
                "another bwmedia-emulator uses it; give each its own --data-dir",
            ));
        };
        let mut newest: HashMap<String, (u64, Loaded)> = HashMap::new();
        let mut stale = Vec::new();
        let mut last = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let Ok(number) = u64::from_str_radix(stem, 16) else {
                continue;
            };
            last = last.max(number);
            match ext {
                PARTIAL => stale.push(path),
                STORED => match read_media(&path) {
                    Ok(media) => {
                        let older = match newest.get(&media.name) {
                            Some((n, _)) if *n > number => Some(number),
                            _ => newest
                                .insert(media.name.clone(), (number, media))
                                .map(|(n, _)| n),
                        };
                        if let Some(n) = older {
                            stale.push(file_path(dir, n, STORED));
                        }
                    }
                    Err(e) => {
                        let aside = durable::set_aside(dir, &path)?;
                        log::error!("{}: {e}; kept in {}", path.display(), aside.display());
                    }
                },
                _ => {}
            }
        }
        for path in stale {
            std::fs::remove_file(&path)?;
        }
        sync_dir(dir)?;
        let files = newest.iter().map(|(k, (n, _))| (k.clone(), *n)).collect();
        let mut media: Vec<Loaded> = newest.into_values().map(|(_, m)| m).collect();
        media.sort_by_key(|m| m.uploaded);
        let next = last
            .checked_add(1)
            .ok_or_else(|| std::io::Error::other("its file numbers are used up"))?;
        let disk = Disk {
            dir: dir.to_path_buf(),
            next: AtomicU64::new(next),
            files: Mutex::new(files),
            leftovers: Mutex::new(HashMap::new()),
            _lock: lock,
        };
        Ok((disk, media))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Make the upload of `name` durable (see the module's comment); the file of the version it
    /// replaces goes after.
    pub fn save(
        &self,
        name: &str,
        body: &[u8],
        content_type: &str,
        cache_control: Option<&str>,
        uploaded: SystemTime,
    ) -> std::io::Result<()> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let header = Header {
            name: name.to_string(),
            content_type: content_type.to_string(),
            cache_control: cache_control.map(str::to_string),
            uploaded_ms: uploaded
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            len: body.len() as u64,
        };
        let (partial, whole) = (
            file_path(&self.dir, number, PARTIAL),
            file_path(&self.dir, number, STORED),
        );
        durable::write_whole(&self.dir, &partial, &whole, MAGIC, &header, body)?;
        if let Some(old) = self.files.lock().insert(name.to_string(), number) {
            if let Err(e) = std::fs::remove_file(file_path(&self.dir, old, STORED)) {
                log::warn!("cannot remove the older file of {name:?}: {e}");
                self.leftovers
                    .lock()
                    .entry(name.to_string())
                    .or_default()
                    .push(old);
            }
        }
        Ok(())
    }

    /// Remove the file of `name`, durably.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        let mut numbers = self.leftovers.lock().remove(name).unwrap_or_default();
        numbers.extend(self.files.lock().remove(name));
        if numbers.is_empty() {
            return Ok(());
        }
        for number in numbers {
            match std::fs::remove_file(file_path(&self.dir, number, STORED)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        sync_dir(&self.dir)
    }
}

fn file_path(dir: &Path, number: u64, ext: &str) -> PathBuf {
    dir.join(format!("{number:016x}.{ext}"))
}

fn read_media(path: &Path) -> std::io::Result<Loaded> {
    let mut reader = BufReader::new(File::open(path)?);
    let header: Header = durable::read_header(&mut reader, MAGIC).map_err(std::io::Error::other)?;
    // The length the header says is checked against the file before anything is allocated.
    let size = std::fs::metadata(path)?.len();
    if header.len > size {
        return Err(std::io::Error::other(format!(
            "its header says {} bytes, more than the file holds",
            header.len
        )));
    }
    let mut body = Vec::with_capacity(header.len as usize);
    reader.read_to_end(&mut body)?;
    if body.len() as u64 != header.len {
        return Err(std::io::Error::other(format!(
            "{} bytes where its header says {}",
            body.len(),
            header.len
        )));
    }
    Ok(Loaded {
        name: header.name,
        body: Bytes::from(body),
        content_type: header.content_type,
        cache_control: header.cache_control,
        uploaded: UNIX_EPOCH + Duration::from_millis(header.uploaded_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(disk: &Disk, name: &str, body: &[u8]) {
        disk.save(
            name,
            body,
            "text/plain",
            Some("no-cache"),
            SystemTime::now(),
        )
        .unwrap();
    }

    #[test]
    fn media_come_back_with_their_headers_and_the_newest_version_of_each_name() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (disk, media) = Disk::open(tmp.path()).unwrap();
            assert!(media.is_empty());
            save(&disk, "a/0/x.png", b"first");
            save(&disk, "a/0/x.png", b"second");
            save(&disk, "gone.txt", b"removed");
            disk.remove("gone.txt").unwrap();
        }
        let (_, media) = Disk::open(tmp.path()).unwrap();
        assert_eq!(media.len(), 1);
        assert_eq!(media[0].name, "a/0/x.png");
        assert_eq!(&media[0].body[..], b"second");
        assert_eq!(media[0].cache_control.as_deref(), Some("no-cache"));
    }

    #[test]
    fn a_crash_at_every_step_of_an_upload_leaves_it_whole_or_absent() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (disk, _) = Disk::open(tmp.path()).unwrap();
            save(&disk, "kept.txt", b"old bytes");
        }
        // A crash while writing (any prefix of the file as a .tmp)...
        let whole = format!(
            "{MAGIC}\n{}\nnew bytes",
            serde_json::to_string(&Header {
                name: "kept.txt".into(),
                content_type: "text/plain".into(),
                cache_control: None,
                uploaded_ms: 1,
                len: 9,
            })
            .unwrap()
        );
        for cut in [0, 10, whole.len() - 3, whole.len()] {
            std::fs::write(tmp.path().join("00000000000000ff.tmp"), &whole[..cut]).unwrap();
            let (_, media) = Disk::open(tmp.path()).unwrap();
            assert_eq!(&media[0].body[..], b"old bytes", "cut at {cut}");
            assert!(!tmp.path().join("00000000000000ff.tmp").exists());
        }
        // ...and after the rename, before the older file was removed: the newer wins.
        std::fs::write(tmp.path().join("00000000000000ff.media"), &whole).unwrap();
        let (_, media) = Disk::open(tmp.path()).unwrap();
        assert_eq!(media.len(), 1);
        assert_eq!(&media[0].body[..], b"new bytes");
        let media_files = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == STORED))
            })
            .count();
        assert_eq!(media_files, 1, "the older file is removed");
    }

    #[test]
    fn a_file_damaged_otherwise_is_kept_aside() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("0000000000000001.media"), "not a media").unwrap();
        let (_, media) = Disk::open(tmp.path()).unwrap();
        assert!(media.is_empty());
        assert!(tmp.path().join("damaged/0000000000000001.media").exists());
    }

    #[test]
    fn one_emulator_at_a_time_uses_a_data_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (first, _) = Disk::open(tmp.path()).unwrap();
        let second = Disk::open(tmp.path()).unwrap_err();
        assert!(
            second.to_string().contains("another bwmedia-emulator"),
            "{second}"
        );
        drop(first);
        assert!(Disk::open(tmp.path()).is_ok());
    }

    #[test]
    fn a_header_that_claims_more_bytes_than_the_file_holds_is_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let header = Header {
            name: "big".into(),
            content_type: "text/plain".into(),
            cache_control: None,
            uploaded_ms: 1,
            len: u64::MAX,
        };
        let text = format!(
            "{MAGIC}\n{}\nshort",
            serde_json::to_string(&header).unwrap()
        );
        std::fs::write(tmp.path().join("0000000000000001.media"), text).unwrap();
        let (_, media) = Disk::open(tmp.path()).unwrap();
        assert!(media.is_empty());
        assert!(tmp.path().join("damaged/0000000000000001.media").exists());
    }
}
