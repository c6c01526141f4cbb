//! The hint that a reused name may send the wrong media.
//!
//! Bandwidth's SDK documentation says: "Filename should always be unique. Reusing filenames may
//! result in the wrong media being sent" (a cache in front of the stored media, presumably,
//! keeps serving the bytes a URL first had). A mount invites editing in place, so an upload
//! that replaces a media the server held says so in the log, at info, with what to do instead.
//!
//! The hard case: once per name per mount, without a set that grows for as long as the mount
//! runs (weeks): the names already told are an LRU of bounded size, so a name can be told again
//! only after thousands of other names were.

use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;

/// How many names are remembered as told.
const TOLD: usize = 4096;

/// The names told about in this mount.
#[derive(Debug)]
pub(super) struct ReuseHints {
    told: Mutex<LruCache<String, ()>>,
}

impl Default for ReuseHints {
    fn default() -> Self {
        ReuseHints {
            told: Mutex::new(LruCache::new(
                NonZeroUsize::new(TOLD).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }
}

impl ReuseHints {
    /// An upload just replaced the media `name` held on the server: the hint, unless it was
    /// given for this name already.
    pub(super) fn replaced(&self, name: &str) {
        if self.told.lock().put(name.to_string(), ()).is_some() {
            return;
        }
        log::info!(
            "{name:?} replaced a media of the same name on the server; Bandwidth warns that \
             reusing a name may send the wrong media in a message: give new content a new name \
             (this is said once per name)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_is_remembered_as_told() {
        let hints = ReuseHints::default();
        hints.replaced("a");
        hints.replaced("a");
        hints.replaced("b");
        assert_eq!(hints.told.lock().len(), 2);
    }
}
