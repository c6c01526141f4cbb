use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A sender that records every turn and answers from a script (by key: the outcomes of its
/// turns in order, then `Stored`), taking `busy` per turn.
struct Script {
    busy: Duration,
    outcomes: Mutex<HashMap<u64, VecDeque<Outcome>>>,
    turns: Mutex<Vec<(u64, Instant)>>,
    now: AtomicUsize,
    peak: AtomicUsize,
    /// Keys being sent now (a key twice at once is a failure of the test).
    sending: Mutex<HashSet<u64>>,
    overlap: AtomicUsize,
}

impl Script {
    fn new(busy: Duration) -> Arc<Script> {
        Arc::new(Script {
            busy,
            outcomes: Mutex::new(HashMap::new()),
            turns: Mutex::new(Vec::new()),
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            sending: Mutex::new(HashSet::new()),
            overlap: AtomicUsize::new(0),
        })
    }

    fn turns_of(&self, key: u64) -> Vec<Instant> {
        let turns = self.turns.lock();
        turns
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, t)| *t)
            .collect()
    }
}

impl Upload for Script {
    fn upload_staged(&self, key: u64) -> Outcome {
        if !self.sending.lock().insert(key) {
            self.overlap.fetch_add(1, Ordering::SeqCst);
        }
        self.turns.lock().push((key, Instant::now()));
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(self.busy);
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.sending.lock().remove(&key);
        let mut outcomes = self.outcomes.lock();
        outcomes
            .get_mut(&key)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Outcome::Stored)
    }
}

fn weak(s: &Arc<Script>) -> Weak<dyn Upload> {
    let s: Arc<dyn Upload> = s.clone();
    Arc::downgrade(&s)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

#[test]
fn files_go_eight_at_a_time_in_the_order_queued() {
    let script = Script::new(Duration::from_millis(50));
    let up = Uploader::default();
    for key in 0..20 {
        up.queue(key, &weak(&script));
    }
    assert_eq!(up.drain(soon()), 0);
    assert_eq!(script.peak.load(Ordering::SeqCst), PARALLEL);
    let turns = script.turns.lock().clone();
    assert_eq!(turns.len(), 20, "each file once");
    // The first eight queued are the first eight sent.
    let mut first: Vec<u64> = turns[..PARALLEL].iter().map(|(k, _)| *k).collect();
    first.sort();
    assert_eq!(first, (0..PARALLEL as u64).collect::<Vec<_>>());
    assert!(!up.failing());
}

#[test]
fn a_file_queued_while_it_is_sent_is_sent_once_more_after_never_at_once() {
    let script = Script::new(Duration::from_millis(100));
    let up = Uploader::default();
    up.queue(1, &weak(&script));
    std::thread::sleep(Duration::from_millis(30));
    assert!(up.is_pending(1));
    up.queue(1, &weak(&script));
    up.queue(1, &weak(&script));
    assert_eq!(up.drain(soon()), 0);
    assert_eq!(script.turns_of(1).len(), 2);
    assert_eq!(script.overlap.load(Ordering::SeqCst), 0);
}

#[test]
fn a_newer_version_replaces_a_queued_one() {
    let script = Script::new(Duration::from_millis(100));
    let up = Uploader::default();
    // Eight files take every thread; file 9 waits, and is queued three times meanwhile.
    for key in 0..8 {
        up.queue(key, &weak(&script));
    }
    for _ in 0..3 {
        up.queue(9, &weak(&script));
    }
    assert_eq!(up.drain(soon()), 0);
    assert_eq!(script.turns_of(9).len(), 1);
}

#[test]
fn a_transient_failure_is_tried_again_after_a_growing_backoff() {
    let script = Script::new(Duration::ZERO);
    script
        .outcomes
        .lock()
        .insert(5, VecDeque::from([Outcome::Again, Outcome::Again]));
    let up = Uploader::default();
    up.queue(5, &weak(&script));
    std::thread::sleep(Duration::from_millis(100));
    assert!(up.failing(), "a failed try says uploads are failing");
    up.went_through();
    assert!(!up.failing(), "an upload made elsewhere says they are not");
    std::thread::sleep(backoff(1) + Duration::from_millis(100));
    assert!(up.failing(), "the second failed try says so again");
    assert_eq!(up.drain(soon()), 0);
    assert!(!up.failing(), "a success says they are not");
    let t = script.turns_of(5);
    assert_eq!(t.len(), 3);
    assert!(t[1] - t[0] >= backoff(1), "{:?}", t[1] - t[0]);
    assert!(t[2] - t[1] >= backoff(2), "{:?}", t[2] - t[1]);
    assert!(backoff(2) > backoff(1));
    assert_eq!(backoff(40), MAX_BACKOFF);
}

#[test]
fn a_new_version_of_a_failing_file_goes_at_once() {
    let script = Script::new(Duration::ZERO);
    script.outcomes.lock().insert(
        5,
        VecDeque::from([Outcome::Again, Outcome::Again, Outcome::Again]),
    );
    let up = Uploader::default();
    for _ in 0..4 {
        up.queue(5, &weak(&script));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Four versions in 200 ms: each went at once, never waiting out a backoff.
    assert_eq!(up.drain(soon()), 0);
    let t = script.turns_of(5);
    assert_eq!(t.len(), 4);
    assert!(t[3] - t[0] < backoff(1) * 2, "{:?}", t[3] - t[0]);
}

#[test]
fn a_failure_for_good_leaves_the_queue_and_a_drain_says_what_is_left() {
    let script = Script::new(Duration::ZERO);
    script
        .outcomes
        .lock()
        .insert(1, VecDeque::from([Outcome::Failed]));
    script
        .outcomes
        .lock()
        .insert(2, VecDeque::from([Outcome::Again; 100]));
    let up = Uploader::default();
    up.queue(1, &weak(&script));
    up.queue(2, &weak(&script));
    up.queue(3, &weak(&script));
    let left = up.drain(Instant::now() + Duration::from_millis(700));
    assert_eq!(left, 1, "file 2 keeps failing");
    assert_eq!(
        script.turns_of(1).len(),
        1,
        "a failure for good is not tried again"
    );
    assert_eq!(script.turns_of(3).len(), 1);
    assert!(up.is_pending(2) && !up.is_pending(1));
    up.stop();
}

#[test]
fn threads_end_with_the_sender() {
    let script = Script::new(Duration::ZERO);
    script
        .outcomes
        .lock()
        .insert(1, VecDeque::from([Outcome::Again; 100]));
    let up = Uploader::default();
    up.queue(1, &weak(&script));
    std::thread::sleep(Duration::from_millis(50));
    drop(script);
    let t0 = Instant::now();
    while up.inner.st.lock().threads > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "a thread outlived its sender"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
