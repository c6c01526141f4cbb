//! The pages in the repository say only what a reader can check: every file or directory of the
//! repository they name exists, and every function and type `docs/architecture.md` names is in
//! the code. A page that falls behind a move or a rename fails here, naming what it cites.
//!
//! The hard part is telling a repository path from the other slashes of prose (`a/b/c.png`,
//! `image/jpeg`, `/mnt/media`, `MSGID/0/name`). A word is taken as a claim about the repository
//! when its first segment is a top-level directory of the repository (`src/api/`,
//! `scripts/bench.sh`), or when it names a source or document file by its extension
//! (`fs/attr.rs`, `README.md`), which may be shortened to a tail of the real path
//! (`attr.rs` for `src/fs/attr.rs`), as the pages do inside a section about one directory.
//! Build outputs (`target/`) and absolute paths are not the repository's.
//!
//! The tests docs/decisions.md cites by name (`a_redirect_and_a_redirected_loop_cost_one_put_each`)
//! must exist too, so a renamed test does not leave the page pointing at nothing.

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every file of the repository, as paths relative to its root (`src/fs/attr.rs`).
fn repo_files() -> Vec<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let name = entry.file_name().to_string_lossy().into_owned();
            if rel.is_empty() && (name == "target" || name == ".git") {
                continue;
            }
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.path().is_dir() {
                walk(&entry.path(), &path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(root(), "", &mut out);
    out
}

/// The repository's top-level directories (`src`, `tests`, `docs`, ...), build output aside.
fn top_dirs() -> BTreeSet<String> {
    repo_files()
        .iter()
        .filter_map(|f| f.split_once('/').map(|(dir, _)| dir.to_string()))
        .collect()
}

/// Extensions of the files a page may name without their directory.
const FILE_EXTENSIONS: &[&str] = &[".rs", ".md", ".sh", ".py", ".toml", ".lock"];

/// The words of `text` that claim to be paths of the repository.
fn cited_paths(text: &str) -> BTreeSet<String> {
    let tops = top_dirs();
    let separators = |c: char| c.is_whitespace() || "`()[]{}<>\"',;|*".contains(c);
    text.split(separators)
        .map(|w| w.trim_end_matches(['.', ':', '!', '?']))
        .filter(|w| !w.is_empty() && !w.contains("://"))
        .filter(|w| !w.starts_with(['/', '~', '$', '-', '.']))
        .filter(|w| {
            let top = w.split_once('/').map(|(dir, _)| dir);
            let in_tree = top.is_some_and(|dir| tops.contains(dir) || dir == "target");
            let has_stem = w.rsplit('/').next().is_some_and(|name| {
                FILE_EXTENSIONS
                    .iter()
                    .any(|ext| name.len() > ext.len() && name.ends_with(ext))
            });
            in_tree || has_stem
        })
        .filter(|w| !w.starts_with("target/"))
        .map(str::to_string)
        .collect()
}

/// Whether `cited` is a file or directory of the repository, by its full path or by a tail of
/// one (`fs/attr.rs`, `attr.rs`).
fn exists(cited: &str, files: &[String]) -> bool {
    let cited = cited.trim_end_matches('/');
    if root().join(cited).exists() {
        return true;
    }
    let tail = format!("/{cited}");
    files
        .iter()
        .any(|f| f.ends_with(&tail) || f.contains(&format!("{tail}/")))
}

/// The repository paths `page` names that do not exist.
fn missing_paths(page: &str) -> Vec<String> {
    let files = repo_files();
    cited_paths(&read(page))
        .into_iter()
        .filter(|p| !exists(p, &files))
        .collect()
}

fn assert_cites_only_what_exists(page: &str) {
    let missing = missing_paths(page);
    assert!(
        missing.is_empty(),
        "{page} names paths that are not in the repository: {missing:?}. Correct the page (or \
         the path, if it moved) so a reader can open what it cites."
    );
}

#[test]
fn the_architecture_page_names_only_paths_that_exist() {
    // The page must cite something, or the check would pass on an empty page.
    assert!(cited_paths(&read("docs/architecture.md")).len() > 30);
    assert_cites_only_what_exists("docs/architecture.md");
}

#[test]
fn the_decisions_readme_and_durability_pages_name_only_paths_that_exist() {
    for page in ["docs/decisions.md", "README.md", "docs/durability.md"] {
        assert_cites_only_what_exists(page);
    }
}

#[test]
fn the_path_check_tells_repository_paths_from_other_slashes() {
    let cited = cited_paths(
        "`src/api/auth.rs` and (`attr.rs`) but not a/b/c.png, image/jpeg, /mnt/media, \
         MSGID/0/name, ~/.local/state, https://example.com/x.rs, target/release/bwmediafs \
         or mnt-media.log.1; see [BENCHMARKS.md](BENCHMARKS.md) and scripts/bench.sh.",
    );
    let expected: BTreeSet<String> = [
        "src/api/auth.rs",
        "attr.rs",
        "BENCHMARKS.md",
        "scripts/bench.sh",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(cited, expected);
    let files = repo_files();
    assert!(exists("attr.rs", &files) && exists("fs/attr.rs", &files));
    assert!(exists("src/api/", &files) && exists("BENCHMARKS.md", &files));
    assert!(!exists("api/auth.rs", &files) && !exists("src/fs/no_such.rs", &files));
    assert!(
        !exists("tr.rs", &files),
        "a tail is whole path segments, not part of a name"
    );
}

/// Every `.rs` file under `src/`, with its text.
fn sources() -> Vec<(String, String)> {
    repo_files()
        .into_iter()
        .filter(|f| f.starts_with("src/") && f.ends_with(".rs"))
        .map(|f| {
            let text = read(&f);
            (f, text)
        })
        .collect()
}

fn declares_type(text: &str, name: &str) -> bool {
    ["struct", "enum", "trait", "type"].iter().any(|kw| {
        [" ", "<", "(", " {", ";", ":"]
            .iter()
            .any(|end| text.contains(&format!("{kw} {name}{end}")))
    })
}

fn declares_fn(text: &str, name: &str) -> bool {
    text.contains(&format!("fn {name}(")) || text.contains(&format!("fn {name}<"))
}

/// Whether `text` has an `impl` block or trait definition of `ty` (where its methods live).
fn implements(text: &str, ty: &str) -> bool {
    [" ", "<", " {"].iter().any(|end| {
        text.contains(&format!("impl {ty}{end}"))
            || text.contains(&format!("for {ty}{end}"))
            || text.contains(&format!("trait {ty}{end}"))
            || text.contains(&format!("trait {ty}:"))
    })
}

/// The code names `page` cites in backticks that the sources under `src/` do not declare:
/// `Type::method` (a method in an `impl` or trait of that type), `snake_case_names` (a
/// function) and `CamelCase` names (a type).
fn missing_names(page: &str) -> Vec<String> {
    let srcs = sources();
    let text = read(page);
    let spans: BTreeSet<&str> = text.split('`').skip(1).step_by(2).collect();
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut missing = Vec::new();
    for span in spans {
        let found = if let Some((ty, method)) = span.split_once("::") {
            if !(ident(ty) && ident(method) && ty.starts_with(|c: char| c.is_ascii_uppercase())) {
                continue;
            }
            srcs.iter().any(|(_, t)| declares_type(t, ty))
                && srcs
                    .iter()
                    .any(|(_, t)| implements(t, ty) && declares_fn(t, method))
        } else if ident(span) && span.contains('_') && span.chars().all(|c| !c.is_ascii_uppercase())
        {
            srcs.iter().any(|(_, t)| declares_fn(t, span))
        } else if ident(span)
            && !span.contains('_')
            && span.starts_with(|c: char| c.is_ascii_uppercase())
            && span.chars().skip(1).any(|c| c.is_ascii_uppercase())
            && span.chars().any(|c| c.is_ascii_lowercase())
        {
            srcs.iter().any(|(_, t)| declares_type(t, span))
        } else {
            continue;
        };
        if !found {
            missing.push(span.to_string());
        }
    }
    missing
}

#[test]
fn the_architecture_page_names_only_functions_and_types_that_exist() {
    let missing = missing_names("docs/architecture.md");
    assert!(
        missing.is_empty(),
        "docs/architecture.md names functions or types that are not in src/: {missing:?}. \
         Correct the page after a rename or a move."
    );
}

/// The `rust-version` of `Cargo.toml`: the oldest Rust that builds the project.
fn rust_version() -> String {
    read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("Cargo.toml sets rust-version")
}

#[test]
fn the_readme_says_which_rust_builds_the_project_and_how_to_get_it() {
    let readme = read("README.md");
    let version = rust_version();
    assert!(
        readme.contains(&format!("Rust {version} or newer")),
        "README.md must say \"Rust {version} or newer\" (rust-version in Cargo.toml): a \
         distribution's older rustc fails on the first command"
    );
    assert!(
        readme.contains("https://sh.rustup.rs"),
        "README.md must say how to get that toolchain (rustup)"
    );
}

/// The files that tell people, or scripts, how to build and install the project.
fn build_instructions() -> Vec<String> {
    repo_files()
        .into_iter()
        .filter(|f| {
            f == "README.md"
                || (f.starts_with("docs/") && f.ends_with(".md"))
                || (f.starts_with("man/") && f.ends_with(".1"))
                || f == "src/cli/man.rs"
                || f.starts_with("scripts/")
        })
        .collect()
}

#[test]
fn every_cargo_install_and_build_uses_the_tested_lock_file() {
    let files = build_instructions();
    assert!(files.iter().any(|f| f == "README.md") && files.iter().any(|f| f.starts_with("man/")));
    let mut unlocked = Vec::new();
    for file in files {
        // roff escapes the dashes of `--locked` as `\-\-locked`.
        let text = read(&file).replace("\\-", "-");
        for (n, line) in text.lines().enumerate() {
            let builds = line.contains("cargo install") || line.contains("cargo build");
            if builds && !line.contains("--locked") {
                unlocked.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        unlocked.is_empty(),
        "without --locked, cargo install ignores Cargo.lock and builds dependencies newer than \
         the ones tested (and cargo build may update the lock file); add --locked:\n{}",
        unlocked.join("\n")
    );
}

/// The tests `page` names (`ls_l_costs_one_listing_walk_even_with_a_ttl_of_zero`: backticked
/// lower-case names of four words or more, which options and fields never are) that no file
/// under `tests/` or `src/` defines.
fn missing_tests(page: &str) -> Vec<String> {
    let code: Vec<String> = repo_files()
        .into_iter()
        .filter(|f| (f.starts_with("tests/") || f.starts_with("src/")) && f.ends_with(".rs"))
        .map(|f| read(&f))
        .collect();
    let text = read(page);
    let names: BTreeSet<&str> = text
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.matches('_').count() >= 3)
        .filter(|s| {
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    names
        .into_iter()
        .filter(|n| !code.iter().any(|t| declares_fn(t, n)))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_tests_the_decisions_cite_exist() {
    let missing = missing_tests("docs/decisions.md");
    assert!(
        missing.is_empty(),
        "docs/decisions.md cites tests that do not exist: {missing:?}. Correct the name after a \
         rename."
    );
}
