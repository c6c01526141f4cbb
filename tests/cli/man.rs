//! The committed man pages are what the command definitions render today, and they document
//! every flag.

use std::path::Path;

use bwmediafs::cli::man;
use clap::CommandFactory;

fn committed(file_name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(man::DIR)
        .join(file_name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}/{file_name}: {e}; run `{}` and commit it",
            man::DIR,
            man::REGENERATE
        )
    })
}

#[test]
fn committed_man_pages_are_up_to_date() {
    let pages = man::pages();
    assert_eq!(pages.len(), 3);
    for page in pages {
        let old = committed(&page.file_name);
        if old != page.text {
            let (line, (was, now)) = old
                .lines()
                .chain(std::iter::repeat(""))
                .zip(page.text.lines().chain(std::iter::repeat("")))
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .expect("texts differ, so some line does");
            panic!(
                "{}/{} is stale: the command line changed since it was generated. Run `{}` and \
                 commit the result.\nFirst difference, line {}:\n  committed: {was}\n  now:       \
                 {now}",
                man::DIR,
                page.file_name,
                man::REGENERATE,
                line + 1
            );
        }
    }
}

/// How a flag appears in roff: dashes are escaped.
fn roff(s: &str) -> String {
    s.replace('-', "\\-")
}

#[test]
fn the_pages_document_every_flag_and_the_sections_users_look_for() {
    let commands = [
        ("bwmediafs.1", bwmediafs::cli::options::Args::command()),
        (
            "bwmedia-emulator.1",
            bwmediafs::emulator::cli::Args::command(),
        ),
        (
            "bwmedia-emulator-inbound.1",
            bwmediafs::emulator::cli::Args::command()
                .find_subcommand("inbound")
                .expect("the inbound subcommand")
                .clone(),
        ),
    ];
    for (file_name, cmd) in commands {
        let page = man::pages()
            .into_iter()
            .find(|p| p.file_name == file_name)
            .unwrap_or_else(|| panic!("no page {file_name}"));
        assert!(
            page.text.starts_with(".ie \\n(.g .ds Aq"),
            "{file_name}: {}",
            &page.text[..80]
        );
        assert_eq!(
            page.text.matches(".ds Aq").count(),
            2,
            "{file_name}: one preamble (two lines)"
        );
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                let flag = roff(&format!("--{long}"));
                assert!(page.text.contains(&flag), "{file_name} lacks {flag}");
            }
        }
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "EXAMPLES",
            "SEE ALSO",
        ]
        .into_iter()
        // A subcommand that reads no variable has no ENVIRONMENT.
        .filter(|s| *s != "ENVIRONMENT" || !file_name.contains("inbound"))
        {
            let heading = if section.contains(' ') {
                format!("\n.SH \"{section}\"\n")
            } else {
                format!("\n.SH {section}\n")
            };
            assert!(page.text.contains(&heading), "{file_name} lacks {section}");
        }
    }
    let page = &man::pages()[0].text;
    assert!(page.contains("\n.SH FILES\n"));
    for text in [
        "bwmediafs /mnt/media fuse.bwmediafs credentials=/etc/bwmediafs/credentials,allow_other,_netdev,nofail 0 0",
        "BW_CLIENT_SECRET",
        "bwmediafs/recovery/",
        "\\fBbwmediafs\\fR --completions SHELL",
    ] {
        assert!(page.contains(&roff(text)), "bwmediafs.1 lacks {text}");
    }
}
