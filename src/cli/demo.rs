//! `bwmediafs --demo`: the emulator inside the process, on loopback, with a few sample media, so
//! anyone can try the filesystem without a Bandwidth account.

use bytes::Bytes;

use crate::api::auth::Credentials;
use crate::api::content_type_for;
use crate::api::http::HttpConfig;
use crate::emulator::{Emulator, EmulatorConfig};

/// The sample media: an image, a short audio clip, a text file, and one inbound-style
/// `{messageId}/{index}/{filename}` photo as MMS media received by Bandwidth are named.
pub const SAMPLES: &[(&str, &[u8])] = &[
    ("logo.png", include_bytes!("../../assets/demo/logo.png")),
    ("chime.wav", include_bytes!("../../assets/demo/chime.wav")),
    ("hello.txt", include_bytes!("../../assets/demo/hello.txt")),
    (
        "14762070468292kw2fuqty55yp2b2/0/photo.jpg",
        include_bytes!("../../assets/demo/photo.jpg"),
    ),
];

/// Start the demo emulator on a free loopback port, load the samples, and return it with the
/// client settings that reach it (its built-in demo OAuth2 client).
pub fn start() -> std::io::Result<(Emulator, HttpConfig)> {
    let config = EmulatorConfig::default();
    let (client_id, client_secret) = config
        .oauth
        .clone()
        .ok_or_else(|| std::io::Error::other("the demo emulator has no OAuth2 client"))?;
    let account = config.account.clone();
    let emulator = Emulator::start(config)?;
    for (name, body) in SAMPLES {
        emulator
            .store()
            .put(
                name,
                Bytes::from_static(body),
                &content_type_for(name),
                None,
            )
            .map_err(|e| std::io::Error::other(format!("loading demo sample {name}: {e:?}")))?;
    }
    let mut http = HttpConfig::new(
        account,
        Credentials::OAuth2 {
            client_id,
            client_secret,
        },
    );
    http.base_url = emulator.base_url();
    http.token_url = emulator.token_url();
    Ok((emulator, http))
}
