//! Content types: the one a media's name implies, and the one its first bytes imply.
//!
//! The name comes first (`mime_guess`, with the spellings of Bandwidth's list for the types MMS
//! uses where it lacks them or spells them otherwise: `.amr`, `.vcf`, `.smil`, ...). When the
//! name implies nothing (no extension, an unknown one), the bytes are asked: magic numbers by
//! `infer`, plus what it does not know (3GPP brands, vCard, vCalendar, SMIL, plain text).

/// Whether `content_type` is a media type an upload may carry: `type/subtype`, optionally with
/// parameters (RFC 9110), not a wildcard; else why not. The emulator refuses the others with
/// 400 as a careful server does, and the mount refuses them as a file's type (EINVAL) before
/// any upload.
pub fn check_media_type(content_type: &str) -> Result<(), String> {
    match content_type.parse::<::mime::Mime>() {
        Err(e) => Err(e.to_string()),
        Ok(m) if m.type_() == ::mime::STAR || m.subtype() == ::mime::STAR => {
            Err("a wildcard names no type".to_string())
        }
        Ok(m) if m.subtype().as_str().is_empty() => Err("the subtype is missing".to_string()),
        Ok(_) => Ok(()),
    }
}

/// The content type of bytes nothing says more about.
pub const UNKNOWN_CONTENT_TYPE: &str = "application/octet-stream";

/// How many leading bytes [`content_type_of_bytes`] looks at.
pub const SNIFF_LEN: usize = 8192;

/// Extensions of the types MMS uses that `mime_guess` lacks or spells otherwise than Bandwidth's
/// list of supported types.
const BY_EXTENSION: &[(&str, &str)] = &[
    ("amr", "audio/amr"),
    ("awb", "audio/amr-wb"),
    ("3gp", "video/3gpp"),
    ("3gpp", "video/3gpp"),
    ("3g2", "video/3gpp2"),
    ("3gpp2", "video/3gpp2"),
    ("vcf", "text/vcard"),
    ("vcard", "text/vcard"),
    ("ics", "text/calendar"),
    ("vcs", "text/calendar"),
    ("smil", "application/smil"),
    ("smi", "application/smil"),
];

/// `infer`'s names for types Bandwidth's list spells otherwise.
const RESPELLED: &[(&str, &str)] = &[
    ("audio/x-wav", "audio/wav"),
    ("audio/x-flac", "audio/flac"),
    ("audio/m4a", "audio/mp4"),
    ("video/x-msvideo", "video/avi"),
    ("image/vnd.microsoft.icon", "image/x-icon"),
];

/// The content type a media's name implies (from its extension), or [`UNKNOWN_CONTENT_TYPE`].
pub fn content_type_for(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    if let Some((_, ext)) = base.rsplit_once('.') {
        let ext = ext.to_ascii_lowercase();
        if let Some((_, ct)) = BY_EXTENSION.iter().find(|(e, _)| *e == ext) {
            return ct.to_string();
        }
    }
    mime_guess::from_path(base)
        .first()
        .map(|m| m.essence_str().to_string())
        .unwrap_or_else(|| UNKNOWN_CONTENT_TYPE.to_string())
}

/// The content type the first bytes of a media imply (only the first [`SNIFF_LEN`] are looked
/// at), if they imply one.
pub fn content_type_of_bytes(bytes: &[u8]) -> Option<&'static str> {
    let head = &bytes[..bytes.len().min(SNIFF_LEN)];
    if head.is_empty() {
        return None;
    }
    let text = as_text(head);
    if let Some(ct) = iso_brand(head).or_else(|| text.and_then(marked_text)) {
        return Some(ct);
    }
    if let Some(t) = infer::get(head) {
        let ct = t.mime_type();
        let ct = RESPELLED
            .iter()
            .find(|(from, _)| *from == ct)
            .map_or(ct, |(_, to)| *to);
        return Some(ct);
    }
    text.map(|_| "text/plain")
}

/// 3GPP and 3GPP2 files are ISO media files whose `ftyp` brand `infer` does not know.
fn iso_brand(head: &[u8]) -> Option<&'static str> {
    if head.len() < 12 || &head[4..8] != b"ftyp" {
        return None;
    }
    match &head[8..11] {
        b"3gp" | b"3ge" | b"3gg" | b"3gr" | b"3gs" => Some("video/3gpp"),
        b"3g2" => Some("video/3gpp2"),
        _ => None,
    }
}

/// The head as text, if it is: valid UTF-8 (a character cut at the end of the head aside) with
/// no control characters but tab, newlines, form feed and escape.
fn as_text(head: &[u8]) -> Option<&str> {
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // A character cut by the end of the head.
        Err(e) if e.error_len().is_none() && head.len() == SNIFF_LEN => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c' | '\x1b'))
        .then_some(text)
}

/// vCard, vCalendar and SMIL, told by how their text begins (before `infer`, which would call
/// a SMIL document XML).
fn marked_text(text: &str) -> Option<&'static str> {
    let start = text.trim_start_matches('\u{feff}').trim_start();
    let starts = |prefix: &str| {
        start
            .get(..prefix.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(prefix))
    };
    if starts("BEGIN:VCARD") {
        Some("text/vcard")
    } else if starts("BEGIN:VCALENDAR") {
        Some("text/calendar")
    } else if starts("<smil") || (starts("<?xml") && start.contains("<smil")) {
        Some("application/smil")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_imply_types_with_the_spellings_of_the_api() {
        for (name, ct) in [
            ("a/b/photo.JPG", "image/jpeg"),
            ("x.png", "image/png"),
            ("voice.amr", "audio/amr"),
            ("clip.3gp", "video/3gpp"),
            ("clip.3g2", "video/3gpp2"),
            ("me.vcf", "text/vcard"),
            ("slides.smil", "application/smil"),
            ("meet.ics", "text/calendar"),
            ("doc.pdf", "application/pdf"),
            ("notes.txt", "text/plain"),
            ("photo", UNKNOWN_CONTENT_TYPE),
            ("dir.d/photo", UNKNOWN_CONTENT_TYPE),
            ("x.nosuchext", UNKNOWN_CONTENT_TYPE),
        ] {
            assert_eq!(content_type_for(name), ct, "{name}");
        }
    }

    /// The head of a file of each type MMS uses, padded as a real file would be.
    fn file(head: &[u8]) -> Vec<u8> {
        let mut v = head.to_vec();
        v.resize(64, 0);
        v
    }

    #[test]
    fn bytes_imply_the_types_mms_uses() {
        let riff = |kind: &[u8]| {
            let mut v = b"RIFF\x24\0\0\0".to_vec();
            v.extend_from_slice(kind);
            file(&v)
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (file(b"\xff\xd8\xff\xe0\0\x10JFIF\0"), "image/jpeg"),
            (file(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png"),
            (file(b"GIF89a\x01\0\x01\0"), "image/gif"),
            (file(b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0"), "image/bmp"),
            (file(b"#!AMR\n\x3c\x48\xf5\x1f"), "audio/amr"),
            (file(b"\0\0\0\x18ftyp3gp4\0\0\0\0"), "video/3gpp"),
            (file(b"\0\0\0\x18ftyp3g2a\0\0\0\0"), "video/3gpp2"),
            (file(b"\0\0\0\x18ftypisom\0\0\x02\0"), "video/mp4"),
            (file(b"ID3\x03\0\0\0\0\0\0"), "audio/mpeg"),
            (file(b"\xff\xfb\x90\x64\0"), "audio/mpeg"),
            (
                file(b"OggS\0\x02\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x1evorbis"),
                "audio/ogg",
            ),
            (riff(b"WAVEfmt "), "audio/wav"),
            (file(b"%PDF-1.4\n"), "application/pdf"),
        ];
        for (bytes, ct) in cases {
            assert_eq!(content_type_of_bytes(&bytes), Some(ct), "{bytes:02x?}");
        }
        let text: [(&[u8], &str); 6] = [
            (
                b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEND:VCARD\r\n",
                "text/vcard",
            ),
            (b"\xef\xbb\xbfbegin:vcard\nEND:VCARD\n", "text/vcard"),
            (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n", "text/calendar"),
            (b"<smil><head/><body/></smil>", "application/smil"),
            (
                b"<?xml version=\"1.0\"?>\n<smil xmlns=\"x\"></smil>",
                "application/smil",
            ),
            ("Grüße, see you at 5\n".as_bytes(), "text/plain"),
        ];
        for (bytes, ct) in text {
            assert_eq!(content_type_of_bytes(bytes), Some(ct), "{bytes:?}");
        }
    }

    #[test]
    fn bytes_that_imply_nothing() {
        assert_eq!(content_type_of_bytes(b""), None);
        assert_eq!(content_type_of_bytes(b"\0\x01\x02\x03binary\0"), None);
        assert_eq!(content_type_of_bytes(b"\xff\xfe\xfd not utf-8"), None);
    }

    #[test]
    fn a_long_text_cut_inside_a_character_is_still_text() {
        let mut v = vec![b'a'; SNIFF_LEN - 1];
        v.extend_from_slice("é and more".as_bytes());
        assert_eq!(content_type_of_bytes(&v), Some("text/plain"));
    }

    #[test]
    fn a_media_type_is_type_slash_subtype_with_parameters_and_no_wildcard() {
        for good in [
            "image/png",
            "text/plain; charset=utf-8",
            "application/vnd.3gpp.sms",
        ] {
            assert_eq!(check_media_type(good), Ok(()), "{good}");
        }
        for bad in [
            "@0E4_K^j", "image", "image/", "/png", "image/*", "*/*", "a b/c", "",
        ] {
            assert!(check_media_type(bad).is_err(), "{bad}");
        }
    }
}
