//! Replies to the kernel: the core's answers turned into FUSE attributes, flags and errors, and
//! the reply helpers every callback shares.

use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileType, FopenFlags, Generation, INodeNo, ReplyAttr, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyXattr, TimeOrNow,
};

use super::FuseFs;
use crate::fs::{Attr, DirEntry, FsError, Kind, Opened};

pub(super) fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

/// The largest write the kernel sends in one request.
pub(super) const WRITE_BLKSIZE: u32 = 1024 * 1024;

/// The preferred I/O size `stat` shows of every file and directory (tools size their buffers
/// after it). Every `write` is a request of its own, so it is as large as a write can be (`cp`
/// sizes its buffer after the destination's fstat); reads come in the kernel's readahead sizes
/// whatever buffer a program uses. It is one value for every reply: a create that answered
/// another than the later stats made `st_blksize` change under a program (after a rename, when
/// the kernel asks again).
pub(super) const BLKSIZE: u32 = WRITE_BLKSIZE;

pub(super) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

pub(super) fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

pub(super) fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// FOPEN_KEEP_CACHE when the kernel's pages are current; FOPEN_NOFLUSH for a handle that
/// cannot write (a close then costs no FLUSH round trip: there is nothing to upload);
/// FOPEN_DIRECT_IO for one that can only write (its writes skip the page cache, one copy
/// less, and skip the security.capability lookup the kernel makes before each cached write).
pub(super) fn fopen(o: &Opened) -> FopenFlags {
    let mut flags = FopenFlags::empty();
    if o.keep_cache {
        flags |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if o.no_flush {
        flags |= FopenFlags::FOPEN_NOFLUSH;
    }
    if o.direct_io {
        flags |= FopenFlags::FOPEN_DIRECT_IO;
    }
    flags
}

pub(super) fn reply_xattr(reply: ReplyXattr, size: u32, value: Result<Vec<u8>, FsError>) {
    match value {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno(&e)),
    }
}

impl FuseFs {
    pub(super) fn ttl(&self) -> Duration {
        self.fs.ttl()
    }

    pub(super) fn attr(&self, reply: ReplyAttr, r: Result<Attr, FsError>) {
        match r {
            Ok(a) => reply.attr(&self.fs.kernel_ttl(a.ino), &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    pub(super) fn entry(&self, reply: ReplyEntry, r: Result<Attr, FsError>) {
        match r {
            Ok(a) => {
                self.fs.entry_handed(a.ino);
                reply.entry(&self.fs.kernel_ttl(a.ino), &file_attr(&a), Generation(0))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }
}

/// `readdir` and `readdirplus` replies, filled and answered alike.
pub(super) trait ListingReply {
    /// The kernel keeps a reference to each entry (but `.` and `..`), as after a lookup.
    const PLUS: bool;
    /// Add one entry; true when the reply is full.
    fn push(&mut self, e: &DirEntry, ttl: &Duration) -> bool;
    fn ok(self);
    fn error(self, e: Errno);
}

impl ListingReply for ReplyDirectory {
    const PLUS: bool = false;
    fn push(&mut self, e: &DirEntry, _ttl: &Duration) -> bool {
        self.add(INodeNo(e.ino), e.offset, file_type(e.kind), e.name)
    }
    fn ok(self) {
        ReplyDirectory::ok(self)
    }
    fn error(self, e: Errno) {
        ReplyDirectory::error(self, e)
    }
}

impl ListingReply for ReplyDirectoryPlus {
    const PLUS: bool = true;
    fn push(&mut self, e: &DirEntry, ttl: &Duration) -> bool {
        let attr = file_attr(&e.attr);
        self.add(INodeNo(e.ino), e.offset, e.name, ttl, &attr, Generation(0))
    }
    fn ok(self) {
        ReplyDirectoryPlus::ok(self)
    }
    fn error(self, e: Errno) {
        ReplyDirectoryPlus::error(self, e)
    }
}

impl FuseFs {
    /// Answer a listing request, then fetch the next page of the walk while the kernel hands
    /// out the entries it has.
    pub(super) fn listing<R: ListingReply>(&self, fh: u64, offset: u64, mut reply: R) {
        let ttl = self.ttl();
        match self
            .fs
            .readdir(fh, offset, R::PLUS, |e| reply.push(e, &ttl))
        {
            Ok(()) => reply.ok(),
            Err(e) => return reply.error(errno(&e)),
        }
        self.fs.readdir_ahead(fh);
    }
}

pub(super) fn empty(reply: ReplyEmpty, r: Result<(), FsError>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Who sent a request: new files and directories belong to its user and group.
pub(super) fn caller(req: &fuser::Request) -> crate::fs::Caller {
    crate::fs::Caller {
        pid: req.pid(),
        uid: req.uid(),
        gid: req.gid(),
    }
}
