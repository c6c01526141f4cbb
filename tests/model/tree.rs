//! Comparing the whole tree.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;

use crate::model::Model;
use crate::on_mount::Target;

/// Files (with their bytes and stat size) and directories seen through the mount.
pub(crate) type Tree = (BTreeMap<String, (Vec<u8>, u64)>, BTreeSet<String>);

pub(crate) fn walk(root: PathBuf) -> io::Result<Tree> {
    let mut files = BTreeMap::new();
    let mut dirs = BTreeSet::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| io::Error::other(format!("non-UTF-8 name {n:?}")))?;
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.insert(path.clone());
                stack.push(path);
            } else if kind.is_file() {
                let body = std::fs::read(root.join(&path))?;
                let size = std::fs::metadata(root.join(&path))?.len();
                files.insert(path, (body, size));
            } else {
                return Err(io::Error::other(format!("{path}: neither file nor dir")));
            }
        }
    }
    Ok((files, dirs))
}

pub(crate) fn check_tree(target: &dyn Target, model: &Model) -> Result<(), String> {
    let (files, dirs) = target.tree()?;
    let mut problems = Vec::new();
    let want_dirs = model.dirs();
    if dirs != want_dirs {
        problems.push(format!(
            "directories: the mount shows {dirs:?}, the model {want_dirs:?}"
        ));
    }
    let seen: BTreeSet<&String> = files.keys().collect();
    let want: BTreeSet<&String> = model.media.keys().collect();
    if seen != want {
        problems.push(format!(
            "files: the mount shows {seen:?}, the model {want:?}"
        ));
    }
    for (name, (body, size)) in &files {
        if let Some(w) = model.media.get(name) {
            if body != w {
                problems.push(format!("{name}: {}", differ(body, w)));
            }
            if *size != w.len() as u64 {
                problems.push(format!("{name}: stat says {size} bytes, want {}", w.len()));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

pub(crate) fn check_store(target: &dyn Target, model: &Model) -> Result<(), String> {
    let store = target.store();
    let names = store.names();
    let want: Vec<&String> = model.media.keys().collect();
    if names.iter().collect::<Vec<_>>() != want {
        return Err(format!("the store holds {names:?}, the model {want:?}"));
    }
    for (name, body) in &model.media {
        match store.get(name) {
            Ok(s) if s.body[..] == body[..] => {}
            Ok(s) => return Err(format!("stored {name}: {}", differ(&s.body, body))),
            Err(e) => return Err(format!("stored {name}: {e:?}")),
        }
    }
    Ok(())
}

pub(crate) fn differ(got: &[u8], want: &[u8]) -> String {
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    format!(
        "{} bytes, want {} (first difference at {first:?})",
        got.len(),
        want.len()
    )
}
