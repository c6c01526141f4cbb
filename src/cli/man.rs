//! The man pages of `bwmediafs` and `bwmedia-emulator`. `clap_mangen` renders the title, name,
//! synopsis, options and version from the same command definitions that parse the command
//! lines, so the pages list every flag as `--help` does; the description keeps the help text's
//! aligned lines as they are, and the sections clap knows nothing of (exit status, environment,
//! files, examples, see also) are written here.
//!
//! `cargo run --example man` writes the pages into `man/`; a test fails when a committed page
//! differs from what this module renders.

use std::io::Write;

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};
use clap_mangen::Man;

/// Where the pages live in the source tree.
pub const DIR: &str = "man";

/// The command that rewrites the committed pages.
pub const REGENERATE: &str = "cargo run --example man";

/// One rendered page.
pub struct Page {
    /// Its file name, such as `bwmediafs.1`.
    pub file_name: String,
    /// The roff source.
    pub text: String,
}

/// The examples of the `bwmediafs` page: what each does, and its lines (tests run them).
pub fn bwmediafs_examples() -> &'static [(&'static str, &'static [&'static str])] {
    BWMEDIAFS.examples
}

/// Every page, rendered.
pub fn pages() -> Vec<Page> {
    let emulator = crate::emulator::cli::Args::command();
    let mut pages = vec![
        render(super::options::Args::command(), &BWMEDIAFS),
        render(emulator.clone(), &EMULATOR),
    ];
    // Each subcommand has a page of its own, NAME-SUBCOMMAND(1), which the SUBCOMMANDS section
    // of its command's page names.
    if let Some(inbound) = emulator.find_subcommand("inbound") {
        let page = inbound
            .clone()
            .name("bwmedia-emulator-inbound")
            .bin_name("bwmedia-emulator inbound")
            .version(env!("CARGO_PKG_VERSION"));
        pages.push(render(page, &EMULATOR_INBOUND));
    }
    pages
}

/// What a page says beyond the command definition.
struct Extra {
    exit_status: &'static [(&'static str, &'static str)],
    environment: &'static [(&'static str, &'static str)],
    files: &'static [(&'static str, &'static str)],
    /// What an example does, and its lines.
    examples: &'static [(&'static str, &'static [&'static str])],
    see_also: &'static [&'static str],
}

const BWMEDIAFS: Extra = Extra {
    exit_status: &[
        (
            "0",
            "Mounted (in the background, once the mount answers), or with -f unmounted (by \
             umount, SIGTERM, SIGINT or SIGHUP) after every file was uploaded.",
        ),
        (
            "1",
            "The mount failed, or some files could not be uploaded at unmount; the message says \
             why and what to do.",
        ),
        ("2", "The command line is wrong."),
    ],
    environment: &[
        ("BW_ACCOUNT_ID", "The Bandwidth account id."),
        (
            "BW_CLIENT_ID, BW_CLIENT_SECRET",
            "OAuth2 client credentials, created in the Bandwidth App: the way into Bandwidth's \
             production service.",
        ),
        (
            "BW_USERNAME, BW_PASSWORD",
            "Legacy: an API user's name and password (HTTP Basic authentication). Bandwidth \
             retired API users on 2026-12-02; they serve bwmedia-emulator and accounts that \
             kept one.",
        ),
        (
            "BW_BASE_URL, BW_TOKEN_URL",
            "The Messaging API base URL and the OAuth2 token URL, as --base-url and --token-url.",
        ),
        (
            "RUST_LOG",
            "The log filter, such as debug or bwmediafs=trace; it overrides -v.",
        ),
        (
            "XDG_STATE_HOME",
            "Where the state directory is made (default ~/.local/state).",
        ),
    ],
    files: &[
        (
            "$XDG_STATE_HOME/bwmediafs/",
            "The state directory (by default ~/.local/state/bwmediafs): the log of a mount in \
             the background without --log-file is there.",
        ),
        (
            "$XDG_STATE_HOME/bwmediafs/times-ACCOUNT-HASH.json",
            "The times of the media of one account on one server (HASH stands for its base \
             URL): when each was first seen, and the mtime set by touch, cp -p, rsync -a or tar \
             x while the media keeps the bytes it was set on, kept across remounts.",
        ),
        (
            "$XDG_STATE_HOME/bwmediafs/recovery/ACCOUNT-HASH/",
            "The bytes of files whose upload failed for good, named after the media, until \
             those bytes are uploaded (the default of --recovery-dir: a folder for each account \
             on each server, HASH standing for its base URL). The log says once where \
             each is and the command that uploads it again, or, when the server refused it as \
             too large, to make the file smaller.",
        ),
        (
            "/etc/bwmediafs/credentials",
            "The credentials of system mounts (fstab, systemd units): the BW_* variables as \
             KEY=VALUE lines, # for comments. Installed by the Debian package with mode 600; a \
             credentials file that group or others can read is refused.",
        ),
    ],
    examples: &[
        (
            "Try it without an account: mount a built-in emulator with sample media, look, \
             unmount.",
            &[
                "mkdir -p /tmp/media && bwmediafs --demo /tmp/media",
                "ls -lR /tmp/media",
                "umount /tmp/media",
            ],
        ),
        (
            "Mount an account with its credentials (BW_ACCOUNT_ID, BW_CLIENT_ID and \
             BW_CLIENT_SECRET lines) in a file only you can read, copy a file into a new \
             directory and get the URL to put in an MMS.",
            &[
                "chmod 600 ~/.config/bwmediafs/credentials",
                "mkdir -p ~/media",
                "bwmediafs --credentials ~/.config/bwmediafs/credentials ~/media",
                "mkdir -p ~/media/campaign",
                "cp flyer.jpg ~/media/campaign/flyer.jpg",
                "getfattr -n user.bandwidth.url --only-values ~/media/campaign/flyer.jpg",
            ],
        ),
        (
            "Mount at boot for every user: a line in /etc/fstab, then mount /mnt/media. The \
             first field is the name the mount table shows; the account is the file's \
             BW_ACCOUNT_ID.",
            &["bwmediafs /mnt/media fuse.bwmediafs credentials=/etc/bwmediafs/credentials,allow_other,_netdev,nofail 0 0"],
        ),
        (
            "Or the same with the systemd template unit of the Debian package (the instance \
             names the mountpoint, as systemd-escape --path does).",
            &["systemctl enable --now bwmediafs@mnt-media.service"],
        ),
        (
            "Complete bwmediafs's flags in bash (zsh and fish likewise).",
            &["source <(bwmediafs --completions bash)"],
        ),
    ],
    see_also: &[
        "bwmedia-emulator(1)",
        "fusermount3(1)",
        "getfattr(1)",
        "fstab(5)",
        "systemd.mount(5)",
        "mount(8)",
        "mount.fuse3(8)",
    ],
};

const EMULATOR: Extra = Extra {
    exit_status: &[
        ("0", "Stopped by SIGINT or SIGTERM."),
        (
            "1",
            "It could not start (the address is taken, the seed or the data directory \
             unreadable).",
        ),
        ("2", "The command line is wrong."),
    ],
    environment: &[
        ("BW_EMULATOR_PASSWORD", "As --password."),
        ("BW_EMULATOR_CLIENT_SECRET", "As --client-secret."),
        (
            "BW_EMULATOR_CALLBACK_PASSWORD",
            "As --callback-password: the password callbacks carry with --callback-username.",
        ),
        (
            "RUST_LOG",
            "The log filter (default info); debug logs every request.",
        ),
    ],
    files: &[],
    examples: &[
        (
            "Develop an MMS application: keep the media across restarts, send the callbacks of \
             inbound messages to it, then make the emulator receive one.",
            &[
                "bwmedia-emulator --data-dir ~/.local/share/bwmedia-emulator \\",
                "    --callback-url http://127.0.0.1:3000/callbacks",
                "bwmedia-emulator inbound --from +15551230000 --to +15559870000 photo.jpg",
            ],
        ),
        (
            "Serve the files of a folder on a free port. The emulator prints the address it \
             listens on (listening on http://127.0.0.1:PORT) and, on the next line after \
             \"to mount it:\", a bwmediafs command line that mounts it.",
            &["bwmedia-emulator --listen 127.0.0.1:0 --seed ./some-folder"],
        ),
        (
            "Fail a fifth of the requests and cut one in twenty mid-body, then count what the \
             client asked and change the faults while it runs.",
            &[
                "bwmedia-emulator --error-rate 0.2 --cut-rate 0.05",
                "curl http://127.0.0.1:8080/_emulator/stats",
                "curl -X PUT -H 'Content-Type: application/json' \\",
                "     -d '{\"error_rate\": 0}' http://127.0.0.1:8080/_emulator/faults",
            ],
        ),
    ],
    see_also: &["bwmedia-emulator-inbound(1)", "bwmediafs(1)", "curl(1)"],
};

const EMULATOR_INBOUND: Extra = Extra {
    exit_status: &[
        (
            "0",
            "The emulator received the message (and sends its callback, if it has a URL).",
        ),
        (
            "1",
            "A file could not be read, the emulator could not be reached, or it refused the \
             message (the message says why).",
        ),
        ("2", "The command line is wrong."),
    ],
    environment: &[],
    files: &[],
    examples: &[(
        "Start an emulator that sends callbacks to an application on port 3000, then make \
             it receive an MMS with two files. It prints the message id and each media's name \
             and URL; the application gets a message-received callback listing the URLs.",
        &[
            "bwmedia-emulator --callback-url http://127.0.0.1:3000/callbacks &",
            "bwmedia-emulator inbound --url http://127.0.0.1:8080 \\",
            "    --from +15551230000 --to +15559870000 --text 'two files' photo.jpg note.txt",
        ],
    )],
    see_also: &["bwmedia-emulator(1)"],
};

fn render(mut cmd: clap::Command, extra: &Extra) -> Page {
    let name = cmd.get_name().to_string();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let long_about = cmd
        .get_long_about()
        .map(|a| a.to_string())
        .unwrap_or_else(|| about.clone());
    // The synopsis is clap's usage line, and a line of its own for each flag that goes alone
    // (clap_mangen's would list every flag, without their values).
    let usage = cmd.render_usage().to_string();
    let mut forms = vec![usage.trim_start_matches("Usage:").trim().to_string()];
    for arg in cmd.get_arguments().filter(|a| a.is_exclusive_set()) {
        let values = arg.get_value_names().unwrap_or_default().join(" ");
        if let Some(long) = arg.get_long() {
            forms.push(format!("{name} --{long} {values}").trim_end().to_string());
        }
    }
    let man_has_subcommands = cmd.has_subcommands();
    let man = Man::new(cmd.override_usage(forms.join("\n")));
    let clap_section = |render: fn(&Man, &mut dyn Write) -> std::io::Result<()>| {
        let mut out = Vec::new();
        render(&man, &mut out).expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("roff of UTF-8 text is UTF-8")
    };
    // The title by hand: clap_mangen drops an empty date, which shifts the footer's fields, and
    // a page stays byte-for-byte the same without a date that changes.
    let mut text = format!(
        "{PREAMBLE}.TH {} 1 \"\" \"{name} {version}\" \"User Commands\"\n",
        name.to_uppercase()
    );
    let mut add = |roff: String| text.push_str(without_preamble(&roff));
    let mut name_section = Roff::new();
    name_section
        .control("SH", ["NAME"])
        .text([roman(format!("{name} - {}", about.trim_end_matches('.')))]);
    add(name_section.render());
    add(clap_section(Man::render_synopsis_section));
    add(description(&long_about, &about).render());
    add(clap_section(Man::render_options_section));
    if man_has_subcommands {
        add(clap_section(Man::render_subcommands_section));
    }
    add(sections_of(extra).render());
    add(clap_section(Man::render_version_section));
    Page {
        file_name: format!("{name}.1"),
        text,
    }
}

/// What the roff crate starts every rendering with: the definition of the apostrophe string.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// A section without the preamble (the page has it once, at the top).
fn without_preamble(roff: &str) -> &str {
    roff.strip_prefix(PREAMBLE).unwrap_or(roff)
}

/// The long help without its first paragraph (the NAME line says it); aligned lines (indented,
/// or with columns of spaces) stay as they are, the rest is filled.
fn description(long_about: &str, about: &str) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    let text = if long_about.starts_with(about) {
        long_about.split_once("\n\n").map_or("", |(_, rest)| rest)
    } else {
        long_about
    };
    let mut aligned = false;
    let mut set_aligned = |roff: &mut Roff, now: bool| {
        if now != aligned {
            if now {
                roff.control("RS", ["4"]).control("nf", []);
            } else {
                roff.control("fi", []).control("RE", []);
            }
            aligned = now;
        }
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            set_aligned(&mut roff, false);
            roff.control("PP", []);
            continue;
        }
        let is_aligned = line.starts_with(char::is_whitespace) || line.trim().contains("   ");
        set_aligned(&mut roff, is_aligned);
        roff.text([roman(line.trim_end())]);
    }
    set_aligned(&mut roff, false);
    roff
}

fn sections_of(extra: &Extra) -> Roff {
    let mut roff = Roff::new();
    let list = |roff: &mut Roff, title: &str, items: &[(&str, &str)], term: fn(&str) -> Inline| {
        if items.is_empty() {
            return;
        }
        roff.control("SH", [title]);
        for (name, text) in items {
            roff.control("TP", [])
                .text([term(name)])
                .text([roman(*text)]);
        }
    };
    list(&mut roff, "EXIT STATUS", extra.exit_status, |s| bold(s));
    list(&mut roff, "ENVIRONMENT", extra.environment, |s| bold(s));
    list(&mut roff, "FILES", extra.files, |s| italic(s));
    if !extra.examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for (what, lines) in extra.examples {
            roff.control("PP", []).text([roman(*what)]);
            roff.control("PP", [])
                .control("RS", ["4"])
                .control("nf", []);
            for line in lines.iter() {
                roff.text([roman(*line)]);
            }
            roff.control("fi", []).control("RE", []);
        }
    }
    if !extra.see_also.is_empty() {
        roff.control("SH", ["SEE ALSO"]);
        let mut refs = Vec::new();
        for (i, reference) in extra.see_also.iter().enumerate() {
            let (page, section) = reference.split_once('(').unwrap_or((reference, ""));
            refs.push(bold(page));
            let sep = if i + 1 < extra.see_also.len() {
                ", "
            } else {
                ""
            };
            refs.push(roman(format!("({section}{sep}")));
        }
        roff.text(refs);
    }
    roff
}
