//! Inbound MMS: a message received by one of the account's numbers, as Bandwidth delivers it.
//!
//! `POST /_emulator/inbound` (the `inbound` subcommand calls it) stores the message's files as
//! Bandwidth names inbound media, `MESSAGEID/N/FILENAME` (its documented example:
//! `14762070468292kw2fuqty55yp2b2/0/bw.png`), then POSTs a `message-received` callback to the
//! application's callback URL: a JSON array of one event whose `message.media` lists the media
//! URLs, as Bandwidth's messaging spec defines the inbound callback (`InboundCallback` in the
//! current SDKs, `BandwidthCallbackMessage` in older ones).
//!
//! Delivery is Bandwidth's promise, with a shorter bound: an answer other than 2xx, or none
//! within the attempt timeout (10 s, as production), is tried again after a wait that doubles
//! from 1 s up to a minute, until `--callback-retry-time` after the first attempt (production
//! tries for 24 hours); every attempt is logged, and giving up too. The callback's password is
//! never logged.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::store::{Store, StoreError};

/// Where `message-received` callbacks go, and how hard delivery tries.
#[derive(Clone)]
pub struct CallbackConfig {
    /// The application's callback URL.
    pub url: String,
    /// Basic credentials the application asks callbacks to carry.
    pub credentials: Option<(String, String)>,
    /// How long one attempt waits for an answer (production: 10 s).
    pub attempt_timeout: Duration,
    /// No attempt starts later than this after the first (production: 24 hours).
    pub retry_time: Duration,
}

impl CallbackConfig {
    /// The URL without a password it may hold.
    pub fn shown_url(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(mut u) => {
                let _ = u.set_password(None);
                u.to_string()
            }
            Err(_) => "<not a URL>".to_string(),
        }
    }
}

/// The passwords are never shown.
impl std::fmt::Debug for CallbackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackConfig")
            .field("url", &self.shown_url())
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("attempt_timeout", &self.attempt_timeout)
            .field("retry_time", &self.retry_time)
            .finish()
    }
}

/// The longest wait between two attempts.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// A message to receive, as the control endpoint takes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct InboundRequest {
    /// The sender's number, E.164 (`+15551234567`).
    pub from: String,
    /// The account's number that receives it.
    pub to: String,
    /// The message's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The files it carries, in order.
    #[serde(default)]
    pub media: Vec<InboundFile>,
}

/// One file of a message.
#[derive(Debug, Serialize, Deserialize)]
pub struct InboundFile {
    /// Its file name (the last part of the media name).
    pub name: String,
    /// Its type; by default the one its name implies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Its bytes, base64.
    pub data: String,
}

/// What the control endpoint answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundAnswer {
    /// The new message's id.
    pub message_id: String,
    /// The media names, in the message's order.
    pub media: Vec<String>,
    /// Their URLs, as the callback lists them.
    pub urls: Vec<String>,
    /// Whether a callback is sent (the emulator was started with `--callback-url`).
    pub callback: bool,
}

/// Why a message was refused (the control endpoint's 400 or 413).
#[derive(Debug)]
pub enum InboundError {
    /// The message is not one (no number, a file without a name, bad base64, a bad type).
    Invalid(String),
    /// A file is over the store's size limit.
    TooLarge {
        /// The file's name.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The store could not keep a file.
    Store(StoreError),
}

impl From<StoreError> for InboundError {
    fn from(e: StoreError) -> InboundError {
        InboundError::Store(e)
    }
}

/// A message id as Bandwidth makes them (its example: `14762070468292kw2fuqty55yp2b2`): the
/// time in milliseconds, then 16 lowercase letters and digits.
pub fn message_id() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut rng = rand::rng();
    let tail: String = (0..16)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("{millis}{tail}")
}

/// Store the files of `req` as message `id`'s media; their names. All are checked before any
/// is stored.
pub fn store_media(
    store: &Store,
    id: &str,
    req: &InboundRequest,
) -> Result<Vec<String>, InboundError> {
    if req.from.trim().is_empty() || req.to.trim().is_empty() {
        return Err(InboundError::Invalid(
            "a message needs \"from\" and \"to\" numbers".into(),
        ));
    }
    let limit = store.config().max_size;
    let mut files = Vec::new();
    for (i, f) in req.media.iter().enumerate() {
        let name = f.name.rsplit('/').next().unwrap_or_default().trim();
        if name.is_empty() {
            return Err(InboundError::Invalid(format!("file {i} has no name")));
        }
        let media_name = format!("{id}/{i}/{name}");
        if let Some(why) = crate::api::path::bad_media_name(&media_name) {
            return Err(InboundError::Invalid(format!(
                "file {i}: {name:?} cannot be a media name: {why}"
            )));
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(&f.data)
            .map_err(|e| InboundError::Invalid(format!("{name}: its data is not base64: {e}")))?;
        if body.len() as u64 > limit {
            return Err(InboundError::TooLarge {
                name: name.to_string(),
                size: body.len() as u64,
                limit,
            });
        }
        let content_type = f
            .content_type
            .clone()
            .unwrap_or_else(|| crate::api::content_type_for(name));
        crate::api::check_media_type(&content_type).map_err(|why| {
            InboundError::Invalid(format!(
                "{name}: {content_type:?} is not a media type ({why})"
            ))
        })?;
        files.push((media_name, Bytes::from(body), content_type));
    }
    let mut names: Vec<String> = Vec::new();
    for (media_name, body, content_type) in files {
        if let Err(e) = store.put(&media_name, body, &content_type, None) {
            // A message is received whole or not at all.
            for stored in &names {
                store.delete(stored);
            }
            return Err(InboundError::Store(e));
        }
        names.push(media_name);
    }
    Ok(names)
}

/// The `message-received` callback of a message, as Bandwidth posts it.
pub fn callback_body(
    id: &str,
    req: &InboundRequest,
    application_id: &str,
    urls: &[String],
) -> serde_json::Value {
    let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let mut message = serde_json::json!({
        "id": id,
        "owner": req.to,
        "applicationId": application_id,
        "time": time,
        "segmentCount": 1,
        "direction": "in",
        "to": [req.to],
        "from": req.from,
        "text": req.text.clone().unwrap_or_default(),
    });
    if !urls.is_empty() {
        message["media"] = serde_json::json!(urls);
    }
    serde_json::json!([{
        "type": "message-received",
        "time": time,
        "description": "Incoming message received",
        "to": req.to,
        "message": message,
    }])
}

/// Deliver `body` (the callback of message `id`) as [`CallbackConfig`] says, logging each
/// attempt.
pub async fn deliver(cb: Arc<CallbackConfig>, client: reqwest::Client, id: String, body: Bytes) {
    let started = Instant::now();
    let mut wait = Duration::from_secs(1);
    for attempt in 1.. {
        let mut req = client
            .post(&cb.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(cb.attempt_timeout)
            .body(body.clone());
        if let Some((user, password)) = &cb.credentials {
            req = req.basic_auth(user, Some(password));
        }
        let failure = match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                log::info!(
                    "callback of message {id}: attempt {attempt} answered {}: delivered",
                    resp.status().as_u16()
                );
                return;
            }
            Ok(resp) => format!("answered {}", resp.status().as_u16()),
            Err(e) if e.is_timeout() => format!(
                "had no answer within {}",
                humantime::format_duration(cb.attempt_timeout)
            ),
            Err(e) => format!("failed ({})", error_chain(&e.without_url())),
        };
        // A failed first attempt is always tried again once; later ones within the bound.
        if attempt > 1 && started.elapsed() + wait > cb.retry_time {
            log::warn!(
                "callback of message {id}: attempt {attempt} {failure}; given up {} after the \
                 first attempt (--callback-retry-time)",
                humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
            );
            return;
        }
        log::warn!(
            "callback of message {id}: attempt {attempt} {failure}; trying again in {}",
            humantime::format_duration(wait)
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_WAIT);
    }
}

/// The `inbound` subcommand: send a message with `files` to the emulator at `url` (its
/// control endpoint); what it answered, or what went wrong, said for a person.
pub fn send(
    url: &str,
    from: &str,
    to: &str,
    text: Option<&str>,
    files: &[std::path::PathBuf],
) -> Result<InboundAnswer, String> {
    let mut media = Vec::new();
    for path in files {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{} is not a file", path.display()))?;
        media.push(InboundFile {
            name,
            content_type: None,
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        });
    }
    let req = InboundRequest {
        from: from.to_string(),
        to: to.to_string(),
        text: text.map(str::to_string),
        media,
    };
    let endpoint = format!("{}/_emulator/inbound", url.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .post(&endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&req).map_err(|e| e.to_string())?)
        .send()
        .map_err(|e| format!("cannot reach the emulator at {url}: {e}; is it running there?"))?;
    let status = resp.status();
    let body = resp.text().unwrap_or_default();
    if !status.is_success() {
        return Err(format!(
            "the emulator refused the message ({}): {body}",
            status.as_u16()
        ));
    }
    serde_json::from_str(&body).map_err(|e| {
        format!("{endpoint} answered something else than an emulator does ({e}): is {url} a bwmedia-emulator?")
    })
}

/// An error and its causes, without the URL (which may hold a password).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_look_like_bandwidths() {
        let id = message_id();
        assert_eq!(id.len(), "14762070468292kw2fuqty55yp2b2".len(), "{id}");
        assert!(id[..13].bytes().all(|b| b.is_ascii_digit()));
        assert!(id[13..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(message_id(), id);
    }

    fn req_like(req: &InboundRequest) -> InboundRequest {
        InboundRequest {
            from: req.from.clone(),
            to: req.to.clone(),
            text: req.text.clone(),
            media: Vec::new(),
        }
    }

    #[test]
    fn files_are_named_as_bandwidth_names_inbound_media_and_checked_first() {
        let store = Store::new(Default::default());
        let file = |name: &str, data: &[u8]| InboundFile {
            name: name.into(),
            content_type: None,
            data: base64::engine::general_purpose::STANDARD.encode(data),
        };
        let req = InboundRequest {
            from: "+15551230000".into(),
            to: "+15559870000".into(),
            text: Some("hi".into()),
            media: vec![file("bw.png", b"png"), file("dir/note.txt", b"text")],
        };
        let names = store_media(&store, "1476207046829abc", &req).unwrap();
        for bad in ["..", "."] {
            let dots = InboundRequest {
                media: vec![file(bad, b"x")],
                ..req_like(&req)
            };
            assert!(
                matches!(
                    store_media(&store, "dots", &dots),
                    Err(InboundError::Invalid(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            names,
            ["1476207046829abc/0/bw.png", "1476207046829abc/1/note.txt"]
        );
        assert_eq!(store.get(&names[0]).unwrap().content_type, "image/png");
        let mut bad = req;
        bad.media.push(InboundFile {
            name: "x.bin".into(),
            content_type: Some("@0E4_K^j".into()),
            data: String::new(),
        });
        assert!(matches!(
            store_media(&store, "second", &bad),
            Err(InboundError::Invalid(_))
        ));
        assert!(store.get("second/0/bw.png").is_err(), "nothing is stored");
    }

    #[test]
    fn the_callback_is_an_array_of_one_message_received_event() {
        let req = InboundRequest {
            from: "+15551230000".into(),
            to: "+15559870000".into(),
            text: None,
            media: Vec::new(),
        };
        let body = callback_body("id1", &req, "app", &["http://x/media/id1/0/a.png".into()]);
        let event = &body[0];
        assert_eq!(event["type"], "message-received");
        assert_eq!(event["message"]["direction"], "in");
        assert_eq!(event["message"]["to"][0], "+15559870000");
        assert_eq!(event["message"]["from"], "+15551230000");
        assert_eq!(event["message"]["media"][0], "http://x/media/id1/0/a.png");
    }
}
