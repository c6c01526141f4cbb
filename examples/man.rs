//! Writes the man pages into `man/`: `cargo run --example man`. Run it after changing a flag or
//! its help; the `man` test fails until the committed pages match.

use std::path::Path;
use std::process::ExitCode;

use bwmediafs::cli::man;

fn main() -> ExitCode {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(man::DIR);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for page in man::pages() {
        let path = dir.join(&page.file_name);
        let shown = format!("{}/{}", man::DIR, page.file_name);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == page.text) {
            println!("{shown} is up to date");
            continue;
        }
        if let Err(e) = std::fs::write(&path, &page.text) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {shown}");
    }
    ExitCode::SUCCESS
}
