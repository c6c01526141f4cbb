use super::*;

/// Read `paths` in turn (each the next in order after the one before, as `files` lists
/// them), fetching what the window says; returns the window after each read.
fn scan(scans: &mut Scans, files: &[&str], reads: &[&str], max: usize) -> Vec<usize> {
    let mut windows = Vec::new();
    for r in reads {
        if let Some(i) = scans.read(r, max, |_| true) {
            let s = &mut scans.list[i];
            let at = files.iter().position(|f| f == r).unwrap();
            s.expected = files[at + 1..]
                .iter()
                .take(s.window.max(1))
                .map(|f| f.to_string())
                .collect();
            s.fetched = s.window.min(s.expected.len());
            windows.push(s.window);
        }
    }
    windows
}

const FILES: [&str; 12] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];

#[test]
fn a_window_opens_at_the_second_neighbour_and_doubles_while_used() {
    let mut s = Scans::default();
    let w = scan(&mut s, &FILES, &FILES[..8], 4);
    assert_eq!(w, [0, 1, 2, 4, 4, 4, 4, 4]);
}

#[test]
fn a_read_elsewhere_starts_another_scan_and_keeps_the_first() {
    let mut s = Scans::default();
    scan(&mut s, &FILES, &["a", "b", "c"], 8);
    assert_eq!(scan(&mut s, &FILES, &["k"], 8), [0]);
    assert_eq!(s.list.len(), 2);
    // The first scan goes on where it was.
    assert_eq!(scan(&mut s, &FILES, &["d"], 8), [4]);
}

#[test]
fn passing_over_fetched_files_halves_the_window() {
    let mut s = Scans::default();
    scan(&mut s, &FILES, &["a", "b", "c", "d"], 8); // window 4: e f g h fetched
    assert_eq!(scan(&mut s, &FILES, &["g"], 8), [2]);
}

#[test]
fn a_fetched_body_gone_before_its_read_halves_the_window() {
    let mut s = Scans::default();
    scan(&mut s, &FILES, &["a", "b", "c", "d"], 8);
    let i = s.read("e", 8, |_| false).unwrap();
    assert_eq!(s.list[i].window, 2);
}

#[test]
fn a_second_read_of_the_last_file_moves_nothing() {
    let mut s = Scans::default();
    scan(&mut s, &FILES, &["a", "b", "c"], 8);
    assert_eq!(s.read("c", 8, |_| true), None);
    assert_eq!(scan(&mut s, &FILES, &["d"], 8), [4]);
}

#[test]
fn the_stalest_scan_gives_way() {
    let mut s = Scans::default();
    for f in FILES.iter().take(MAX_SCANS) {
        // Files two apart are no neighbours: each read starts a scan.
        s.read(&format!("{f}/x"), 8, |_| true);
    }
    assert_eq!(s.list.len(), MAX_SCANS);
    s.read("new", 8, |_| true);
    assert_eq!(s.list.len(), MAX_SCANS);
    assert!(!s.list.iter().any(|x| x.last == "a/x"));
}

#[test]
fn off_means_no_window() {
    let mut s = Scans::default();
    assert_eq!(scan(&mut s, &FILES, &FILES[..5], 0), [0, 0, 0, 0, 0]);
}
