//! The filesystem's one error type, and the one place where errors become errno values.
//!
//! Every failure the core can report is an [`FsError`]; failures of the Media API travel inside
//! [`FsError::Api`] with the operation and the media name, so that a log line or the message
//! `bwmediafs` prints says what failed. [`errno`] maps both the local variants and every
//! [`ApiError`] to the errno the kernel hands to the program, following the design's error table:
//!
//! | API answer | errno |
//! |---|---|
//! | 401, 403 | EACCES |
//! | 404 | ENOENT |
//! | oversize (413, or 400 on a too-large upload) | EFBIG |
//! | 415, a header value HTTP cannot carry | EINVAL |
//! | 429, 5xx, timeouts, resets, malformed answers | EIO |

use crate::api::ApiError;

/// What a failed upload is called in errors and logs.
pub(super) const UPLOAD: &str = "upload";
/// What a failed download is called in errors and logs.
pub(super) const DOWNLOAD: &str = "download";
/// What a failed fetch ahead of a scan is called in the (debug) log.
pub(super) const READ_AHEAD: &str = "read-ahead";

/// Why a filesystem operation failed. `Display` gives one clear sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// A call to the Media API failed (after the retries it deserved).
    #[error("{}: {source}{}", what(.op, .name), auth_hint(.source))]
    Api {
        /// What we were doing: "listing the media", "download", "upload", "delete".
        op: &'static str,
        /// The media name (empty for a listing).
        name: String,
        /// What the API said.
        source: ApiError,
    },
    /// The name does not exist (ENOENT).
    #[error("no such file or directory")]
    NotFound,
    /// The name exists already (EEXIST).
    #[error("file exists")]
    Exists,
    /// A directory was needed (ENOTDIR).
    #[error("not a directory")]
    NotDir,
    /// A file was needed (EISDIR).
    #[error("is a directory")]
    IsDir,
    /// The directory has entries (ENOTEMPTY).
    #[error("directory not empty")]
    NotEmpty,
    /// A name component is too long (ENAMETOOLONG).
    #[error("a file name component is longer than 255 bytes")]
    NameTooLong,
    /// A name that cannot be a media name (EINVAL).
    #[error("invalid file name: {0}")]
    InvalidName(String),
    /// A file would pass the size limit (EFBIG).
    #[error("file too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge {
        /// The size the file would have had.
        size: u64,
        /// The largest a media may be.
        limit: u64,
    },
    /// The mount is read-only (EROFS).
    #[error("the file system is mounted read-only")]
    ReadOnly,
    /// No such open handle (EBADF).
    #[error("bad file handle")]
    BadHandle,
    /// No such extended attribute (ENODATA).
    #[error("no such extended attribute")]
    NoAttr,
    /// An extended attribute's value is larger than a value may be (E2BIG).
    #[error("the value is larger than {0} bytes")]
    ValueTooLarge(usize),
    /// No room left for what was asked (ENOSPC).
    #[error("no room left: {0}")]
    NoSpace(String),
    /// Not something this file system does (ENOTSUP).
    #[error("operation not supported")]
    NotSupported,
    /// An ioctl a media does not answer: it is no terminal, no device (ENOTTY).
    #[error("inappropriate ioctl for a media")]
    NoIoctl,
    /// Not something the API can store (EPERM).
    #[error("operation not permitted")]
    NotPermitted,
    /// An argument that makes no sense here (EINVAL).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A download ended short, or the media changed between two attempts of it: the fault is
    /// the server's (or the network's), never short data handed out.
    #[error("the download went wrong: {0}")]
    BadDownload(String),
    /// An open file's media went from the server before this reader had any of its bytes:
    /// nothing is left to read (EIO; a read never answers ENOENT).
    #[error("the media was removed on the server while it was open, before its bytes were read")]
    Gone,
    /// The kernel named a node that is gone (removed here or on the server) through a name it
    /// still caches: ESTALE makes the kernel look the name up again and retry, so an open or a
    /// stat acts on what the name is now (a new file for `O_CREAT`, else ENOENT).
    #[error("stale file handle: the name was removed")]
    Stale,
    /// A local failure: memory, the recovery folder (EIO).
    #[error("local I/O error: {0}")]
    Io(String),
}

/// "listing the media failed", "download of \"a/b.png\" failed", ...
fn what(op: &str, name: &str) -> String {
    if name.is_empty() {
        format!("{op} failed")
    } else {
        format!("{op} of {name:?} failed")
    }
}

/// The sentence that tells a user what to fix when the server refuses the credentials.
pub(crate) fn auth_hint(e: &ApiError) -> &'static str {
    match e {
        ApiError::Unauthorized(_) => {
            "; the credentials were refused: check BW_CLIENT_ID/BW_CLIENT_SECRET (OAuth2 client \
             credentials, the only way into Bandwidth's production since it retired API users on \
             2026-12-02), or BW_USERNAME/BW_PASSWORD if you use a legacy API user (emulators, old \
             accounts)"
        }
        ApiError::Forbidden(_) => {
            "; the credentials are valid but not for this account: check BW_ACCOUNT_ID, and that \
             the client (BW_CLIENT_ID) or API user (BW_USERNAME) has access to it"
        }
        _ => "",
    }
}

impl FsError {
    /// A failed API call, with what we were doing.
    pub fn api(op: &'static str, name: &str, source: ApiError) -> FsError {
        FsError::Api {
            op,
            name: name.to_string(),
            source,
        }
    }

    /// Whether the server refused the upload for good (400, 413, 415, a header it cannot
    /// carry, a file over the limit): the same bytes would be refused again.
    pub fn is_permanent(&self) -> bool {
        match self {
            FsError::TooLarge { .. } => true,
            FsError::Api { source, .. } => matches!(
                source,
                ApiError::TooLarge { .. }
                    | ApiError::UnsupportedType(_)
                    | ApiError::InvalidHeader(_)
                    | ApiError::Config(_)
                    | ApiError::Status { status: 400, .. }
            ),
            _ => false,
        }
    }

    /// Whether it says the name or media does not exist (locally, or a 404 from the server).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            FsError::NotFound
                | FsError::Api {
                    source: ApiError::NotFound,
                    ..
                }
        )
    }

    /// The errno for this error, from the one mapping of errors to errno values.
    pub fn errno(&self) -> i32 {
        errno(self)
    }
}

/// The one mapping of errors to errno values.
fn errno(e: &FsError) -> i32 {
    match e {
        FsError::Api { source, .. } => match source {
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) => libc::EACCES,
            ApiError::NotFound => libc::ENOENT,
            ApiError::TooLarge { .. } => libc::EFBIG,
            ApiError::UnsupportedType(_) | ApiError::InvalidHeader(_) => libc::EINVAL,
            ApiError::Status { status: 413, .. } => libc::EFBIG,
            ApiError::Status { status: 415, .. } => libc::EINVAL,
            ApiError::Status { .. }
            | ApiError::Transport(_)
            | ApiError::Malformed(_)
            | ApiError::Config(_) => libc::EIO,
        },
        FsError::NotFound => libc::ENOENT,
        FsError::Stale => libc::ESTALE,
        FsError::Exists => libc::EEXIST,
        FsError::NotDir => libc::ENOTDIR,
        FsError::IsDir => libc::EISDIR,
        FsError::NotEmpty => libc::ENOTEMPTY,
        FsError::NameTooLong => libc::ENAMETOOLONG,
        FsError::InvalidName(_) => libc::EINVAL,
        FsError::TooLarge { .. } => libc::EFBIG,
        FsError::ReadOnly => libc::EROFS,
        FsError::BadHandle => libc::EBADF,
        FsError::NoAttr => libc::ENODATA,
        FsError::NotSupported => libc::ENOTSUP,
        FsError::ValueTooLarge(_) => libc::E2BIG,
        FsError::NoSpace(_) => libc::ENOSPC,
        FsError::NotPermitted => libc::EPERM,
        FsError::NoIoctl => libc::ENOTTY,
        FsError::Invalid(_) => libc::EINVAL,
        FsError::BadDownload(_) | FsError::Gone | FsError::Io(_) => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(e: ApiError) -> i32 {
        errno(&FsError::api("download", "x", e))
    }

    #[test]
    fn error_table() {
        assert_eq!(api(ApiError::Unauthorized("no".into())), libc::EACCES);
        assert_eq!(api(ApiError::Forbidden("no".into())), libc::EACCES);
        assert_eq!(api(ApiError::NotFound), libc::ENOENT);
        assert_eq!(
            api(ApiError::TooLarge {
                size: 5,
                limit: Some(4)
            }),
            libc::EFBIG
        );
        assert_eq!(api(ApiError::UnsupportedType("a/b".into())), libc::EINVAL);
        assert_eq!(api(ApiError::InvalidHeader("a\nb".into())), libc::EINVAL);
        let status = |s| ApiError::Status {
            status: s,
            kind: None,
            description: None,
        };
        assert_eq!(api(status(429)), libc::EIO);
        assert_eq!(api(status(503)), libc::EIO);
        assert_eq!(api(ApiError::Transport("reset".into())), libc::EIO);
        assert_eq!(api(ApiError::Malformed("json".into())), libc::EIO);
        assert_eq!(errno(&FsError::TooLarge { size: 9, limit: 1 }), libc::EFBIG);
        assert_eq!(errno(&FsError::ReadOnly), libc::EROFS);
        assert_eq!(errno(&FsError::NameTooLong), libc::ENAMETOOLONG);
        assert_eq!(errno(&FsError::Gone), libc::EIO);
        assert_eq!(errno(&FsError::Stale), libc::ESTALE);
    }

    #[test]
    fn auth_errors_say_which_variables_to_check() {
        let e = FsError::api(
            "listing the media",
            "",
            ApiError::Unauthorized("Authentication Failed".into()),
        );
        let s = e.to_string();
        assert!(
            s.starts_with("listing the media failed: authentication failed"),
            "{s}"
        );
        // OAuth2 first; Basic named, as legacy, after it.
        let oauth2 = s.find("BW_CLIENT_ID/BW_CLIENT_SECRET").expect(&s);
        let basic = s.find("BW_USERNAME/BW_PASSWORD").expect(&s);
        assert!(oauth2 < basic, "{s}");
        assert!(s[basic..].contains("legacy"), "{s}");
        let e = FsError::api("list", "", ApiError::Forbidden("Access Denied".into()));
        assert!(e.to_string().contains("BW_ACCOUNT_ID"));
    }
}
