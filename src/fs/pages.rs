//! Page buffers: the memory that media bodies (downloads and write buffers) live in.
//!
//! A body is a few MB, and memory fresh from the kernel is expensive: every 4 KiB page costs a
//! fault, zeroing and accounting on first touch, which for a 3 MB body takes about 20 times as
//! long as copying the bytes into memory already mapped (measured: 1.3 ms against 0.07 ms).
//! Bodies come and go all the time (the data cache evicts one for each it takes in), so their
//! memory is recycled: a [`PageBuf`] is an anonymous mapping of its own, and when its last user
//! drops it, it goes to a small pool (at most [`POOL_BYTES`]) from which the next body takes
//! it, resized in place with `mremap` (pages beyond the new size go back to the kernel, so
//! resident memory follows the sizes really held). Keeping bodies out of `malloc` also keeps
//! its per-thread arenas from fragmenting around them.
//!
//! Mappings ask for transparent huge pages (one fault instead of 512 for each aligned 2 MiB, when
//! the system allows them; harmless when it does not). A download's buffer is also faulted in
//! by a background thread while the body arrives, so that the faults of fresh memory (a cache
//! that grows) are taken on another core rather than between two reads from the socket.

use std::ptr::NonNull;

use parking_lot::Mutex;

/// Most bytes of idle buffers kept for reuse.
pub(crate) const POOL_BYTES: usize = 8 << 20;
/// Buffers smaller than this are neither taken from the pool (whose large buffers would be cut
/// down to them) nor given back to it.
const SMALL: usize = 64 << 10;

const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// An anonymous private mapping of `cap` bytes (a multiple of the page size; 0 maps nothing).
/// Its memory is zero when fresh and holds old bytes when recycled: a user writes before it
/// reads.
pub(crate) struct PageBuf {
    ptr: NonNull<u8>,
    cap: usize,
}

// SAFETY: a PageBuf owns its mapping, and its bytes are reached only through &self (reads) and
// &mut self (writes). It is not Sync: a buffer shared while it is written is a SharedPageBuf.
unsafe impl Send for PageBuf {}

impl std::fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageBuf").field("cap", &self.cap).finish()
    }
}

struct Pool {
    idle: Vec<PageBuf>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    idle: Vec::new(),
    bytes: 0,
});

impl PageBuf {
    /// A buffer of at least `len` bytes: recycled when the pool has one, else freshly mapped.
    pub(crate) fn new(len: usize) -> std::io::Result<PageBuf> {
        if len == 0 {
            return Ok(PageBuf {
                ptr: NonNull::dangling(),
                cap: 0,
            });
        }
        let want = round_up(len, PAGE);
        if want < SMALL {
            return PageBuf::map(want);
        }
        let reused = {
            let mut pool = POOL.lock();
            // The smallest that fits, else the largest (grown by the fewest fresh pages).
            let pick = pool
                .idle
                .iter()
                .enumerate()
                .filter(|(_, b)| b.cap >= want)
                .min_by_key(|(_, b)| b.cap)
                .or_else(|| pool.idle.iter().enumerate().max_by_key(|(_, b)| b.cap))
                .map(|(i, _)| i);
            pick.map(|i| {
                let b = pool.idle.swap_remove(i);
                pool.bytes -= b.cap;
                b
            })
        };
        match reused {
            Some(mut b) => {
                b.resize(want)?;
                Ok(b)
            }
            None => PageBuf::map(want),
        }
    }

    fn map(cap: usize) -> std::io::Result<PageBuf> {
        // Large buffers start on a 2 MiB boundary, so that their whole 2 MiB pieces can be huge
        // pages: map `HUGE` more, then unmap the ends around the aligned part.
        let extra = if cap >= HUGE { HUGE } else { 0 };
        // SAFETY: a fresh anonymous mapping; no memory of ours is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap + extra,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = p as usize;
        let start = if extra > 0 {
            round_up(base, HUGE)
        } else {
            base
        };
        // SAFETY: both ranges lie in the mapping just made and hold nothing.
        unsafe {
            if start > base {
                libc::munmap(p, start - base);
            }
            let end = base + cap + extra;
            if end > start + cap {
                libc::munmap((start + cap) as *mut libc::c_void, end - (start + cap));
            }
        }
        let ptr = NonNull::new(start as *mut u8).ok_or_else(|| std::io::Error::other("mmap"))?;
        let b = PageBuf { ptr, cap };
        b.advise_huge();
        Ok(b)
    }

    /// Ask for huge pages (the kernel uses them on the 2 MiB-aligned parts). Advised over the
    /// whole mapping: advice on a part would split it, and `mremap` works on one piece only.
    fn advise_huge(&self) {
        if self.cap >= HUGE {
            // SAFETY: our own mapping; the advice changes no contents.
            unsafe {
                libc::madvise(self.ptr.as_ptr().cast(), self.cap, libc::MADV_HUGEPAGE);
            }
        }
    }

    /// Make the mapping exactly `cap` bytes (a page multiple), keeping the bytes that stay.
    fn resize(&mut self, cap: usize) -> std::io::Result<()> {
        if cap == self.cap {
            return Ok(());
        }
        if self.cap == 0 {
            *self = PageBuf::new(cap)?;
            return Ok(());
        }
        // SAFETY: remaps our own mapping; it may move, and `self.ptr` follows it.
        let p = unsafe {
            libc::mremap(
                self.ptr.as_ptr().cast(),
                self.cap,
                cap,
                libc::MREMAP_MAYMOVE,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        self.ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| std::io::Error::other("mremap"))?;
        self.cap = cap;
        Ok(())
    }

    /// Make room for at least `len` bytes, keeping the contents (for buffers that grow).
    pub(crate) fn reserve(&mut self, len: usize) -> std::io::Result<()> {
        if len <= self.cap {
            return Ok(());
        }
        let cap = round_up(len.max(self.cap * 2), PAGE);
        self.resize(cap)
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `cap` readable bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.cap) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `cap` writable bytes, borrowed mutably through self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }

    fn unmap(&mut self) {
        if self.cap > 0 {
            // SAFETY: our own mapping, never used again.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.cap);
            }
            self.cap = 0;
        }
    }
}

/// A page buffer shared between threads while one of them fills it (a download read as it
/// arrives). It offers only ranged access, each under the caller's promise that a range being
/// written is not read at the same time: there is no whole-slice view, so safe code cannot read
/// bytes another thread is writing.
pub(crate) struct SharedPageBuf(PageBuf);

// SAFETY: the bytes are reached only through the unsafe ranged accessors below, whose callers
// keep the reads and writes of any one range apart.
unsafe impl Sync for SharedPageBuf {}

impl SharedPageBuf {
    pub(crate) fn new(buf: PageBuf) -> SharedPageBuf {
        SharedPageBuf(buf)
    }

    /// The bytes `start..end` while others may be reading other bytes of the buffer.
    ///
    /// # Safety
    /// No other reference to `start..end` may exist while the returned one lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn range_mut(&self, start: usize, end: usize) -> &mut [u8] {
        assert!(start <= end && end <= self.0.cap);
        std::slice::from_raw_parts_mut(self.0.ptr.as_ptr().add(start), end - start)
    }

    /// The bytes `start..end` while another thread may be writing other bytes of the buffer.
    ///
    /// # Safety
    /// Nobody may write `start..end` while the returned reference lives.
    pub(crate) unsafe fn range(&self, start: usize, end: usize) -> &[u8] {
        assert!(start <= end && end <= self.0.cap);
        std::slice::from_raw_parts(self.0.ptr.as_ptr().add(start), end - start)
    }

    /// Fault in the pages of the first `len` bytes now (MADV_POPULATE_WRITE, Linux 5.14), so
    /// that a writer filling them later does not stop at every page. Pages already there keep
    /// their bytes, so this may run while the buffer is being written; on an older kernel it
    /// does nothing.
    pub(crate) fn populate(&self, len: usize) {
        let len = round_up(len.min(self.0.cap), PAGE);
        if len > 0 {
            // SAFETY: our own mapping; the advice adds missing pages and changes no bytes.
            unsafe {
                libc::madvise(self.0.ptr.as_ptr().cast(), len, libc::MADV_POPULATE_WRITE);
            }
        }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        if self.cap == 0 {
            return;
        }
        let mut pool = POOL.lock();
        if self.cap >= SMALL && pool.bytes + self.cap <= POOL_BYTES {
            let b = PageBuf {
                ptr: self.ptr,
                cap: self.cap,
            };
            self.cap = 0;
            pool.bytes += b.cap;
            pool.idle.push(b);
            return;
        }
        drop(pool);
        self.unmap();
    }
}

/// Run `job` on the one background thread of page buffers (started on first use, so after the
/// daemon's fork). Jobs are best effort: if the thread cannot be started they are dropped.
pub(crate) fn in_background(job: impl FnOnce() + Send + 'static) {
    type Job = Box<dyn FnOnce() + Send>;
    static QUEUE: std::sync::OnceLock<Option<Mutex<std::sync::mpsc::Sender<Job>>>> =
        std::sync::OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("bwmediafs-pages".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    if let Some(tx) = queue {
        let _ = tx.lock().send(Box::new(job));
    }
}

/// `len` bytes at the start of a page buffer, as the owner of a [`bytes::Bytes`].
#[derive(Debug)]
pub(crate) struct Filled {
    pub buf: PageBuf,
    pub len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.buf.as_slice()[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_recycled_and_resized() {
        let mut a = PageBuf::new(10_000).unwrap();
        assert_eq!(a.capacity(), 12_288, "small buffers are mapped as they are");
        a.as_mut_slice()[..3].copy_from_slice(b"abc");
        a.reserve(100_000).unwrap();
        assert!(a.capacity() >= 100_000);
        assert_eq!(&a.as_slice()[..3], b"abc", "growing keeps the bytes");
        drop(a);
        let b = PageBuf::new(70_000).unwrap();
        assert_eq!(b.capacity(), 73_728, "a recycled buffer is cut to size");
        let big = PageBuf::new(POOL_BYTES + 1).unwrap();
        drop(big); // too large for the pool: unmapped
        assert!(POOL.lock().bytes <= POOL_BYTES);
        let f = Filled { buf: b, len: 2 };
        assert_eq!(f.as_ref().len(), 2);
        let mut empty = PageBuf::new(0).unwrap();
        assert_eq!(empty.as_slice().len(), 0, "no mapping for nothing");
        empty.reserve(10).unwrap();
        empty.as_mut_slice()[..2].copy_from_slice(b"ok");
    }
}
