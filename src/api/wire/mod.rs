//! What the server says, parsed: listing pages, error bodies and the error each status stands
//! for.
//!
//! The hard cases:
//! - **Strict listings.** A page must be a JSON array of objects with a string `mediaName` and a
//!   non-negative integer `contentLength` (other fields ignored); anything else is
//!   [`ApiError::Malformed`], never a panic and never a guess.
//! - **Tolerant errors.** Error answers carry `{type, description}` in production, a Spring-style
//!   body on unknown paths, or anything else: all are accepted, and their status decides.
//! - **Secrets.** A server may echo the credentials it was sent: every text quoted from it has
//!   them masked first.

use base64::Engine;
use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::{ApiError, MediaInfo, MAX_MEDIA_SIZE};

/// Longest server text we keep in an error message.
const MAX_DESCRIPTION: usize = 300;

/// What a call does, for the statuses whose meaning depends on it.
pub(crate) enum Op<'a> {
    Put { size: u64, content_type: &'a str },
    Other,
}

/// The error an answer with a non-success `status` and error `body` stands for; the server's texts
/// are quoted with every string of `hide` masked. `who` gives the message of a 401 and the
/// account id (for a 403).
pub(crate) fn status_error(
    status: u16,
    body: &[u8],
    hide: &[String],
    op: &Op<'_>,
    who: impl FnOnce() -> (String, String),
) -> ApiError {
    let (kind, description) = parse_error_body_hiding(body, hide);
    let said = description
        .as_deref()
        .map(|d| format!(" (server: {d})"))
        .unwrap_or_default();
    match (status, op) {
        (401, _) => ApiError::Unauthorized(format!("{}{said}", who().0)),
        (403, _) => ApiError::Forbidden(format!(
            "the credentials give no access to account {}{said}",
            who().1
        )),
        (404, _) => ApiError::NotFound,
        (400..=499, Op::Put { size, .. }) if *size > MAX_MEDIA_SIZE => ApiError::TooLarge {
            size: *size,
            limit: Some(MAX_MEDIA_SIZE),
        },
        // Within Bandwidth's limit: this server's is lower, and unknown.
        (413, Op::Put { size, .. }) => ApiError::TooLarge {
            size: *size,
            limit: None,
        },
        (415, Op::Put { content_type, .. }) => ApiError::UnsupportedType(content_type.to_string()),
        _ => ApiError::Status {
            status,
            kind,
            description,
        },
    }
}

/// One item of a listing, as the API sends it (other fields are ignored).
struct WireItem {
    media_name: String,
    content_length: u64,
}

/// By hand rather than derived: a derived struct also accepts a JSON array of its fields in
/// order (`["a.png", 12]`), which is not what the API sends. Only an object is an item; each of
/// the two fields must appear exactly once.
impl<'de> Deserialize<'de> for WireItem {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = WireItem;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object with mediaName and contentLength")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<WireItem, A::Error> {
                use serde::de::Error;
                let (mut name, mut length) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "mediaName" => {
                            if name.replace(map.next_value::<String>()?).is_some() {
                                return Err(A::Error::duplicate_field("mediaName"));
                            }
                        }
                        "contentLength" => {
                            if length.replace(map.next_value::<u64>()?).is_some() {
                                return Err(A::Error::duplicate_field("contentLength"));
                            }
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WireItem {
                    media_name: name.ok_or_else(|| A::Error::missing_field("mediaName"))?,
                    content_length: length
                        .ok_or_else(|| A::Error::missing_field("contentLength"))?,
                })
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A listing page's body: a JSON array of `{mediaName: string, contentLength: integer >= 0}`.
pub fn parse_list(body: &[u8]) -> Result<Vec<MediaInfo>, ApiError> {
    let items: Vec<WireItem> = serde_json::from_slice(body).map_err(|e| {
        ApiError::Malformed(format!(
            "the listing page is not a JSON array of {{mediaName, contentLength}}: {e}"
        ))
    })?;
    Ok(items
        .into_iter()
        .map(|i| MediaInfo {
            name: i.media_name,
            content_length: i.content_length,
        })
        .collect())
}

/// `(type, description)` of an error body, when it has them. Bandwidth sends
/// `{"type", "description"}`; OAuth2 `{"error", "error_description"}`; Spring
/// `{"error", "message"}`. Any other body (or none) gives `(None, None)`. Texts are shortened
/// and stripped of control characters, and whatever follows `Basic` or `Bearer` in them is
/// masked: a server may echo the `Authorization` header it was sent.
pub fn parse_error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    parse_error_body_hiding(body, &[])
}

/// [`parse_error_body`], with every string of `hide` masked too (before the texts are shortened,
/// so that no part of one survives a cut).
fn parse_error_body_hiding(body: &[u8], hide: &[String]) -> (Option<String>, Option<String>) {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return (None, None);
    };
    let text = |keys: &[&str]| {
        keys.iter().find_map(|k| match obj.get(*k) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                Some(clean(&mask(s, hide)))
            }
            _ => None,
        })
    };
    (
        text(&["type", "error"]),
        text(&["description", "error_description", "message"]),
    )
}

/// What of an `Authorization` value must never be shown: the value, its credential, and for
/// Basic the decoded `user:password` and the password. Longest first, so that no secret is
/// masked only in part because a shorter one inside it was masked first.
pub(crate) fn secrets_of(authorization: &HeaderValue) -> Vec<String> {
    let Ok(value) = authorization.to_str() else {
        return Vec::new();
    };
    let mut secrets = vec![value.to_string()];
    if let Some((scheme, credential)) = value.split_once(' ') {
        secrets.push(credential.trim().to_string());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credential.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok());
        if let (true, Some(pair)) = (scheme.eq_ignore_ascii_case("basic"), decoded) {
            if let Some((_, password)) = pair.split_once(':') {
                secrets.push(password.to_string());
            }
            secrets.push(pair);
        }
    }
    secrets.retain(|s| !s.trim().is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// `s` with every string of `hide`, and the word after any `Basic` or `Bearer`, replaced by `***`.
fn mask(s: &str, hide: &[String]) -> String {
    let mut s = s.to_string();
    for secret in hide {
        s = s.replace(secret.as_str(), "***");
    }
    let mut out = String::with_capacity(s.len());
    let mut after_scheme = false;
    for piece in s.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end();
        if after_scheme && !word.is_empty() {
            out.push_str("***");
            out.push_str(&piece[word.len()..]);
            after_scheme = false;
            continue;
        }
        out.push_str(piece);
        let word = word.to_ascii_lowercase();
        if word.ends_with("basic") || word.ends_with("bearer") {
            after_scheme = true;
        }
    }
    out
}

fn clean(s: &str) -> String {
    let s: String = s
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match s.char_indices().nth(MAX_DESCRIPTION) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

#[cfg(test)]
mod tests;
