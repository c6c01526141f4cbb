//! `bwmedia-emulator` as a tool of its own, through the real binary over HTTP: inbound MMS and
//! their callbacks (a receiver of our own that answers as a test says), media that outlive a
//! restart with `--data-dir`, and what a mounted `bwmediafs` shows of an inbound message.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use crate::common::*;

/// A running `bwmedia-emulator` binary; killed and reaped when dropped.
struct EmulatorProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// What it printed when it started, a line each.
    banner: Vec<String>,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl EmulatorProcess {
    fn start(args: &[&str]) -> EmulatorProcess {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("emulator.log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bwmedia-emulator"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("BW_EMULATOR_CALLBACK_PASSWORD", "callback-pw")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn the emulator");
        let stdout = child.stdout.take().expect("stdout");
        // The banner: up to the line that says how to send an inbound message.
        let banner = timed("the emulator's banner", move || {
            let mut reader = BufReader::new(stdout);
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let last = line.starts_with("to receive an MMS");
                lines.push(line.trim_end().to_string());
                if last {
                    break;
                }
            }
            // Anything it prints later is read and dropped, so it never blocks on it.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            lines
        });
        let url = banner
            .first()
            .and_then(|l| l.strip_prefix("listening on "))
            .unwrap_or_else(|| panic!("no address in {banner:?}"))
            .to_string();
        EmulatorProcess {
            child,
            url,
            banner,
            log,
            _dir: dir,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (up to 20 s) until the log says `text`; the log.
    fn until_logged(&self, text: &str) -> String {
        wait_for(
            &format!("no {text:?} in the log"),
            Duration::from_secs(20),
            || self.log_text().contains(text),
            || self.log_text(),
        );
        self.log_text()
    }

    fn media_url(&self, name: &str) -> String {
        format!("{}/api/v2/users/9900000/media/{name}", self.url)
    }

    fn inbound(&self, files: &[&std::path::Path]) -> (String, Vec<String>) {
        inbound(&self.url, files)
    }
}

/// `bwmedia-emulator inbound --url URL` with `files`: the message id and the media names it
/// printed.
fn inbound(url: &str, files: &[&std::path::Path]) -> (String, Vec<String>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bwmedia-emulator"))
        .args(["inbound", "--url", url])
        .args(["--from", "+15551230000", "--to", "+15559870000"])
        .args(["--text", "two pictures"])
        .args(files)
        .output()
        .expect("bwmedia-emulator inbound");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let id = lines
        .next()
        .and_then(|l| l.strip_prefix("message "))
        .unwrap_or_else(|| panic!("no message id in {stdout:?}"))
        .to_string();
    let names = lines
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&id))
        .map(str::to_string)
        .collect();
    (id, names)
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: Vec<u8>,
}

/// A webhook receiver on a free port: answers the n-th request with `script[n]` (the last one
/// again after the end; `None`: never answers), and keeps what it got.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(script: Vec<Option<u16>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/bandwidth/callbacks",
            listener.local_addr().unwrap()
        );
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let answer = script.get(n).or(script.last()).copied().flatten();
                let kept = kept.clone();
                std::thread::spawn(move || serve_one(stream, answer, &kept));
            }
        });
        Receiver { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Wait until `n` requests came (up to `limit`).
    fn until(&self, n: usize, limit: Duration) -> Vec<Received> {
        wait_for(
            &format!("not {n} requests"),
            limit,
            || self.received().len() >= n,
            || format!("{} requests", self.received().len()),
        );
        self.received()
    }
}

fn serve_one(mut stream: TcpStream, answer: Option<u16>, kept: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    kept.lock().unwrap().push(Received { head, body });
    match answer {
        Some(status) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        // Never answers: holds the connection until the client gives up.
        None => std::thread::sleep(Duration::from_secs(60)),
    }
}

/// Bandwidth's inbound callback, as its SDKs' `InboundCallback` model reads it: every field
/// the model requires, with its type (the official Python SDK reads it too, in
/// [`parsed_by_the_sdk`]).
#[derive(Debug, Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct InboundCallback {
    #[serde(rename = "type")]
    kind: String,
    time: String,
    description: String,
    to: String,
    message: InboundCallbackMessage,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct InboundCallbackMessage {
    id: String,
    owner: String,
    application_id: String,
    time: String,
    segment_count: u32,
    direction: String,
    to: Vec<String>,
    from: String,
    text: Option<String>,
    media: Option<Vec<String>>,
}

/// The Python of the virtual environment `scripts/install-deps.sh` makes with Bandwidth's
/// Python SDK.
fn sdk_python() -> std::path::PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    let python = cache.join("bwmediafs-test/bandwidth-sdk-23.3.1/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-deps.sh, which installs Bandwidth's Python SDK",
        python.display()
    );
    python
}

/// Each event of `body` read by the official SDK's `InboundCallback` model: its type, message
/// id and media URLs, one line each (the test fails if the model refuses the body).
fn parsed_by_the_sdk(body: &[u8]) -> String {
    let script = "import json, sys\n\
                  from bandwidth.models.inbound_callback import InboundCallback\n\
                  for e in json.load(sys.stdin):\n\
                  \x20   cb = InboundCallback.from_dict(e)\n\
                  \x20   print(cb.type.value, cb.message.id, ' '.join(cb.message.media or []))\n";
    let mut child = std::process::Command::new(sdk_python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the SDK's python");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "Bandwidth's SDK refused the callback: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A request of `http` with the account's (demo) credentials.
fn as_account(req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::Response {
    req.basic_auth("demo-user", Some("demo-password"))
        .send()
        .expect("the emulator answers")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let png = dir.join("bw.png");
    let txt = dir.join("note.txt");
    let png_bytes = [&b"\x89PNG\r\n\x1a\n"[..], &bytes(5000, 7)].concat();
    std::fs::write(&png, &png_bytes).unwrap();
    std::fs::write(&txt, b"a note").unwrap();
    vec![(png, png_bytes), (txt, b"a note".to_vec())]
}

#[test]
fn an_inbound_mms_posts_one_callback_whose_media_download_with_the_accounts_credentials() {
    let receiver = Receiver::start(vec![Some(204)]);
    let emulator = EmulatorProcess::start(&[
        "--callback-url",
        &receiver.url,
        "--callback-username",
        "my-app",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let files = files(tmp.path());
    let paths: Vec<&std::path::Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    let (id, names) = emulator.inbound(&paths);
    assert_eq!(
        names,
        [format!("{id}/0/bw.png"), format!("{id}/1/note.txt")]
    );
    let got = receiver.until(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.received().len(), 1, "one callback");
    let head = &got[0].head;
    assert!(head.starts_with("POST /bandwidth/callbacks "), "{head}");
    let auth = format!("authorization: {}", basic("my-app", "callback-pw"));
    assert!(
        head.to_ascii_lowercase()
            .contains(&auth.to_ascii_lowercase()),
        "{head}"
    );
    let events: Vec<InboundCallback> =
        serde_json::from_slice(&got[0].body).expect("the body parses as Bandwidth's callback");
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.kind, "message-received");
    assert_eq!(event.to, "+15559870000");
    assert_eq!(event.message.id, id);
    assert_eq!(event.message.direction, "in");
    assert_eq!(event.message.from, "+15551230000");
    assert_eq!(event.message.to, ["+15559870000"]);
    assert_eq!(event.message.text.as_deref(), Some("two pictures"));
    let urls = event.message.media.clone().expect("media URLs");
    assert_eq!(urls.len(), 2);
    assert_eq!(
        parsed_by_the_sdk(&got[0].body).trim(),
        format!("message-received {id} {}", urls.join(" "))
    );
    let http = reqwest::blocking::Client::new();
    for (url, (_, want)) in urls.iter().zip(&files) {
        let resp = as_account(http.get(url));
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        assert_eq!(&resp.bytes().unwrap()[..], &want[..], "{url}");
        // Without the account's credentials: refused.
        assert_eq!(http.get(url).send().unwrap().status().as_u16(), 401);
    }
    let log = emulator.until_logged("attempt 1 answered 204: delivered");
    assert!(
        !log.contains("callback-pw"),
        "the callback's password is logged"
    );
}

#[test]
fn a_callback_answered_500_twice_then_200_gets_three_attempts() {
    let receiver = Receiver::start(vec![Some(500), Some(500), Some(200)]);
    let emulator = EmulatorProcess::start(&["--callback-url", &receiver.url]);
    let (id, _) = emulator.inbound(&[]);
    let got = receiver.until(3, Duration::from_secs(20));
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "the same callback each time"
    );
    let log = emulator.until_logged("attempt 3 answered 200: delivered");
    assert_eq!(receiver.received().len(), 3, "no attempt after the 200");
    for line in [
        format!("callback of message {id}: attempt 1 answered 500; trying again in 1s"),
        format!("callback of message {id}: attempt 2 answered 500; trying again in 2s"),
        format!("callback of message {id}: attempt 3 answered 200: delivered"),
    ] {
        assert!(log.contains(&line), "no {line:?} in:\n{log}");
    }
}

#[test]
fn a_callback_never_answered_is_given_up_after_the_bound() {
    let receiver = Receiver::start(vec![None]);
    let emulator = EmulatorProcess::start(&[
        "--callback-url",
        &receiver.url,
        "--callback-timeout",
        "500ms",
        "--callback-retry-time",
        // Shorter than one attempt: still tried again once, as Bandwidth promises.
        "500ms",
    ]);
    let (id, _) = emulator.inbound(&[]);
    let log = emulator.until_logged("given up");
    assert!(
        log.contains(&format!("callback of message {id}: attempt")),
        "{log}"
    );
    assert!(log.contains("had no answer within 500ms"), "{log}");
    // Tried again at least once; none after giving up.
    let attempts = receiver.received().len();
    assert!(attempts >= 2, "{attempts} attempts");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        receiver.received().len(),
        attempts,
        "an attempt after giving up"
    );
}

#[test]
fn media_kept_in_a_data_dir_outlive_a_restart_and_a_kill_9_mid_upload() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_string();
    let http = reqwest::blocking::Client::new();
    let first = EmulatorProcess::start(&["--data-dir", &dir]);
    let put = as_account(
        http.put(first.media_url("kept/a.png"))
            .header("Content-Type", "image/png")
            .header("Cache-Control", "no-cache")
            .body(b"png bytes".to_vec()),
    );
    assert_eq!(put.status().as_u16(), 204);
    let uploaded = as_account(http.get(first.media_url("kept/a.png")))
        .headers()
        .get("last-modified")
        .cloned();
    // kill -9 while an upload's body is half sent: that upload is nowhere after the restart
    // (the emulator writes nothing before the whole body is in; a crash in the middle of the
    // write itself is `disk.rs`'s test, at every step).
    let addr = first.url.trim_start_matches("http://").to_string();
    let mut raw = TcpStream::connect(&addr).unwrap();
    write!(
        raw,
        "PUT /api/v2/users/9900000/media/torn.bin HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 3000000\r\n\r\n",
        basic("demo-user", "demo-password")
    )
    .unwrap();
    raw.write_all(&vec![7u8; 1_500_000]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut first = first;
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(first.child.id() as i32, libc::SIGKILL) };
    let _ = first.child.wait();
    drop(raw);
    drop(first);
    let second = EmulatorProcess::start(&["--data-dir", &dir]);
    let resp = as_account(http.get(second.media_url("kept/a.png")));
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    assert_eq!(resp.headers().get("last-modified").cloned(), uploaded);
    assert_eq!(&resp.bytes().unwrap()[..], b"png bytes");
    let listing = as_account(http.get(format!("{}/api/v2/users/9900000/media", second.url)))
        .bytes()
        .unwrap();
    let listing: serde_json::Value = serde_json::from_slice(&listing).unwrap();
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["mediaName"].as_str())
        .collect();
    assert_eq!(names, ["kept/a.png"], "no partial upload");
    // A deletion lasts too.
    let del = as_account(http.delete(second.media_url("kept/a.png")));
    assert_eq!(del.status().as_u16(), 204);
    drop(second);
    let third = EmulatorProcess::start(&["--data-dir", &dir]);
    let gone = as_account(http.get(third.media_url("kept/a.png")));
    assert_eq!(gone.status().as_u16(), 404);
}

/// One line starts it and says how to reach it: a command that mounts it, the base and token
/// URLs, an export line for code, where callbacks go (the user, never the password).
#[test]
fn the_banner_says_how_to_reach_it_and_keeps_passwords_unsaid() {
    let emulator = EmulatorProcess::start(&[
        "--callback-url",
        "http://127.0.0.1:9/callbacks",
        "--callback-username",
        "my-app",
    ]);
    let text = emulator.banner.join("\n");
    let base = format!("{}/api/v2", emulator.url);
    let token = format!("{}/api/v1/oauth2/token", emulator.url);
    for want in [
        format!("BW_BASE_URL={base} bwmediafs MOUNTPOINT"),
        format!("base URL {base} (account 9900000), OAuth2 token URL {token}"),
        format!(
            "for your code: export BW_ACCOUNT_ID=9900000 BW_CLIENT_ID=demo-client \
             BW_CLIENT_SECRET=demo-secret BW_TOKEN_URL={token} BW_BASE_URL={base}"
        ),
        "message-received callbacks go to http://127.0.0.1:9/callbacks (Basic user my-app)"
            .to_string(),
        format!("bwmedia-emulator inbound --url {} ", emulator.url),
    ] {
        assert!(text.contains(&want), "no {want:?} in:\n{text}");
    }
    assert!(!text.contains("callback-pw"), "{text}");
}

#[test]
fn a_mounted_bwmediafs_shows_an_inbound_message_under_its_id() {
    let m = Mount::with(emulator_with(&[]), &["--metadata-ttl", "0s"]);
    let tmp = tempfile::tempdir().unwrap();
    let files = files(tmp.path());
    let paths: Vec<&std::path::Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    let (id, _) = inbound(&m.emulator.root_url(), &paths);
    assert_eq!(sh_ok(&format!("ls {}", q(&m.path(&id)))).trim(), "0\n1");
    for (i, (path, want)) in files.iter().enumerate() {
        let name = path.file_name().unwrap().to_str().unwrap();
        let got = std::fs::read(m.path(&format!("{id}/{i}/{name}"))).unwrap();
        assert_eq!(&got, want, "{name}");
    }
}
