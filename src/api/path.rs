//! Media id <-> URL path. A media id may contain `/` (inbound MMS media are
//! `{messageId}/{index}/{filename}`); production wants those slashes literal, so each
//! `/`-separated segment is percent-encoded on its own and the segments are joined with `/`.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters is encoded inside a segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The URL path form of a media id: `a b/c#d.png` -> `a%20b/c%23d.png`.
pub fn encode_media_id(name: &str) -> String {
    name.split('/')
        .map(|seg| utf8_percent_encode(seg, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The longest segment of a media name a path can show (Linux's `NAME_MAX`).
pub const SEGMENT_MAX: usize = 255;

/// Why a media name cannot be shown as a path (nor addressed by a URL, for `.` and `..`), if
/// it cannot: the mount hides such media, and the emulator refuses to make them.
pub fn bad_media_name(name: &str) -> Option<&'static str> {
    if name.contains('\0') {
        return Some("it contains a NUL byte");
    }
    for seg in name.split('/') {
        if seg.is_empty() {
            return Some("it has an empty path segment");
        }
        if seg == "." || seg == ".." {
            return Some("it has a `.` or `..` segment");
        }
        if seg.len() > SEGMENT_MAX {
            return Some("a path segment is longer than 255 bytes");
        }
    }
    None
}

/// Whether a URL can address `name`: not when a segment of it is `.` or `..`, which URL
/// parsers resolve away (escaped as `%2E` too), so that `a/../b` would address `b`.
pub fn url_can_carry(name: &str) -> bool {
    !name.split('/').any(|seg| seg == "." || seg == "..")
}

/// The media id a URL path names: percent-decoded once, so `a/0/x.png` and `a%2F0%2Fx.png`
/// are the same id. `None` when the bytes are not UTF-8.
pub fn decode_media_id(path: &str) -> Option<String> {
    percent_decode_str(path)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashes_stay_literal_and_segments_are_encoded() {
        assert_eq!(encode_media_id("a b/0/c#d?.png"), "a%20b/0/c%23d%3F.png");
        assert_eq!(encode_media_id("100%+x"), "100%25%2Bx");
    }

    #[test]
    fn encoded_and_literal_slashes_decode_alike() {
        assert_eq!(
            decode_media_id("a%2F0%2Fx.png").as_deref(),
            Some("a/0/x.png")
        );
        assert_eq!(decode_media_id("a/0/x.png").as_deref(), Some("a/0/x.png"));
    }

    #[test]
    fn dot_segments_cannot_be_carried() {
        for name in [".", "..", "a/..", "../b", "a/./b"] {
            assert!(!url_can_carry(name), "{name}");
        }
        for name in ["", "...", ".a", "a.", "a/.b/..c", "a//b"] {
            assert!(url_can_carry(name), "{name}");
        }
    }

    #[test]
    fn round_trip_of_awkward_names() {
        for name in ["é/ü 😀", "a+b", "%41", "x/y/z", " lead", "q?x#y"] {
            assert_eq!(
                decode_media_id(&encode_media_id(name)).as_deref(),
                Some(name)
            );
        }
    }
}
