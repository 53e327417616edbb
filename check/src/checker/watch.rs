//! Watch guarantees, checked against the committed history: every event a
//! watcher received is one that happened (same key, value, previous value),
//! in revision order, each revision whole and once, with no revision missing
//! between where the watch started and the last revision the server said it
//! had delivered; a watch canceled for compaction really started below it.

use std::collections::BTreeMap;
use std::fmt;

/// One event as a watcher saw it (or as it happened).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// Revision of the change.
    pub revision: i64,
    /// The key.
    pub key: String,
    /// Put (true) or delete.
    pub put: bool,
    /// The new value (empty for a delete).
    pub value: String,
    /// The value it replaced, if any.
    pub prev: Option<String>,
}

/// One watch stream's life, from create to its end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Session {
    /// Which watcher client.
    pub watcher: u32,
    /// Which server it watched through.
    pub server: usize,
    /// The start revision asked for (0: from now).
    pub requested_start: i64,
    /// Header revision of the `created` response (None: never created).
    pub created_revision: Option<i64>,
    /// Events, one inner list per response.
    pub responses: Vec<Vec<WatchEvent>>,
    /// Highest header revision of an event or progress response: the server
    /// promised every event up to it was delivered.
    pub progress: i64,
    /// Set when the server canceled the watch because history was compacted.
    pub compacted: Option<i64>,
}

impl Session {
    /// The first revision this session must deliver.
    pub fn start(&self) -> Option<i64> {
        let created = self.created_revision?;
        Some(if self.requested_start > 0 { self.requested_start } else { created + 1 })
    }

    /// Where a new session resumes so that nothing is missed or repeated.
    pub fn resume_from(&self) -> Option<i64> {
        if let Some(compact) = self.compacted {
            return Some(compact);
        }
        let last_event = self.responses.iter().flatten().map(|e| e.revision).max().unwrap_or(0);
        let done = last_event.max(self.progress);
        (done > 0).then_some(done + 1).or(self.start())
    }
}

/// What happened, by revision (all keys), collected from the replicas'
/// applied history during the run. `from` is the first revision covered.
#[derive(Debug, Default)]
pub struct Truth {
    /// Events per revision.
    pub events: BTreeMap<i64, Vec<WatchEvent>>,
    /// Revisions below this were not collected.
    pub from: i64,
    /// The highest revision history was compacted to during the run. The
    /// events at the compact revision lose the records they replaced (a
    /// read there no longer needs them), so a watch that replays from it
    /// gets them without `prev_kv`, as etcd's does when the revision before
    /// is compacted.
    pub compacted: i64,
    /// Revisions whose events were collected only from a member that held
    /// them at its compact revision: what they replaced is not known.
    pub without_prev: std::collections::BTreeSet<i64>,
}

impl WatchEvent {
    /// Whether `self`, delivered, is `happened` sent from a compact revision:
    /// the same but for the record it replaced.
    fn is_compacted_from(&self, happened: &WatchEvent) -> bool {
        self.prev.is_none() && *self == WatchEvent { prev: None, ..happened.clone() }
    }
}

/// A broken watch guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchViolation {
    /// The session.
    pub watcher: u32,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for WatchViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "watch guarantee broken for watcher {}: {}", self.watcher, self.what)
    }
}

/// Checks every session; `watched` says which keys the watches covered.
pub fn check(sessions: &[Session], truth: &Truth, watched: impl Fn(&str) -> bool) -> Vec<WatchViolation> {
    let mut violations = Vec::new();
    for s in sessions {
        let mut bad = |what: String| violations.push(WatchViolation { watcher: s.watcher, what });
        let Some(start) = s.start() else { continue };
        if let Some(compact) = s.compacted {
            if start >= compact {
                bad(format!("canceled as compacted at {compact} though it started at {start}"));
            }
        }
        // Order and wholeness: revisions rise strictly from one response to the next.
        let mut delivered: BTreeMap<i64, Vec<WatchEvent>> = BTreeMap::new();
        // Revisions that opened a response: only there can a watcher have
        // read from the compact revision.
        let mut opened = std::collections::BTreeSet::new();
        let mut last = start - 1;
        for (i, resp) in s.responses.iter().enumerate() {
            opened.extend(resp.first().map(|e| e.revision));
            let mut prev_in_resp = None;
            for e in resp {
                if prev_in_resp.is_some_and(|p| e.revision < p) {
                    bad(format!("response {i} goes back from revision {:?} to {}", prev_in_resp, e.revision));
                }
                if prev_in_resp != Some(e.revision) && e.revision <= last {
                    bad(format!("revision {} delivered again or out of order (after {last})", e.revision));
                }
                prev_in_resp = Some(e.revision);
                delivered.entry(e.revision).or_default().push(e.clone());
            }
            if let Some(p) = prev_in_resp {
                last = last.max(p);
            }
        }
        if let Some(first) = delivered.keys().next() {
            if *first < start {
                bad(format!("event of revision {first} before the start revision {start}"));
            }
        }
        // Every delivered revision is exactly what happened to the watched keys.
        for (revision, events) in &delivered {
            let Some(happened) = truth.events.get(revision) else { continue };
            let want: Vec<&WatchEvent> = happened.iter().filter(|e| watched(&e.key)).collect();
            let got: Vec<&WatchEvent> = events.iter().collect();
            let from_compact_revision = *revision <= truth.compacted
                && opened.contains(revision)
                && got.len() == want.len()
                && got.iter().zip(&want).all(|(g, w)| g.is_compacted_from(w));
            let prev_unknown = truth.without_prev.contains(revision)
                && got.len() == want.len()
                && got.iter().zip(&want).all(|(g, w)| w.is_compacted_from(g));
            if got != want && !from_compact_revision && !prev_unknown {
                bad(format!("at revision {revision} got {got:?} but {want:?} happened"));
            }
        }
        // No gap: every revision with a watched event, from the start up to the
        // promised progress, was delivered.
        let promised = last.max(s.progress);
        let from = start.max(truth.from);
        if from > promised {
            continue;
        }
        for (revision, happened) in truth.events.range(from..=promised) {
            if happened.iter().any(|e| watched(&e.key)) && !delivered.contains_key(revision) {
                bad(format!("revision {revision} missing (watch from {start}, promised up to {promised})"));
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(revision: i64, key: &str, value: &str) -> WatchEvent {
        WatchEvent { revision, key: key.into(), put: true, value: value.into(), prev: None }
    }

    fn truth() -> Truth {
        let mut events = BTreeMap::new();
        events.insert(2, vec![ev(2, "k1", "a")]);
        events.insert(3, vec![ev(3, "k1", "b"), ev(3, "k2", "c")]);
        events.insert(4, vec![ev(4, "other", "x")]);
        events.insert(5, vec![ev(5, "k2", "d")]);
        Truth { events, from: 1, compacted: 0, without_prev: Default::default() }
    }

    fn watched(key: &str) -> bool {
        key.starts_with('k')
    }

    fn session(responses: Vec<Vec<WatchEvent>>, progress: i64) -> Session {
        Session { requested_start: 2, created_revision: Some(1), responses, progress, ..Default::default() }
    }

    #[test]
    fn a_complete_ordered_watch_passes() {
        let s =
            session(vec![vec![ev(2, "k1", "a")], vec![ev(3, "k1", "b"), ev(3, "k2", "c")], vec![ev(5, "k2", "d")]], 5);
        assert_eq!(check(&[s], &truth(), watched), vec![]);
    }

    #[test]
    fn a_gap_a_duplicate_a_split_txn_and_an_invented_event_are_caught() {
        let gap = session(vec![vec![ev(2, "k1", "a")], vec![ev(5, "k2", "d")]], 5);
        let dup = session(vec![vec![ev(2, "k1", "a")], vec![ev(2, "k1", "a")]], 2);
        let split = session(vec![vec![ev(2, "k1", "a")], vec![ev(3, "k1", "b")], vec![ev(3, "k2", "c")]], 3);
        let invented = session(vec![vec![ev(2, "k1", "zzz")]], 2);
        for s in [gap, dup, split, invented] {
            assert!(!check(std::slice::from_ref(&s), &truth(), watched).is_empty(), "{s:?}");
        }
    }

    #[test]
    fn a_compaction_cancel_must_be_below_the_compact_revision() {
        let mut s = session(vec![], 0);
        s.compacted = Some(4);
        assert_eq!(check(std::slice::from_ref(&s), &truth(), watched), vec![]);
        s.compacted = Some(2);
        assert_eq!(check(&[s], &truth(), watched).len(), 1);
    }

    #[test]
    fn only_a_response_opening_at_a_compacted_revision_may_lack_the_replaced_records() {
        let with_prev = |mut e: WatchEvent, prev: &str| {
            e.prev = Some(prev.into());
            e
        };
        let mut truth = truth();
        truth.events.insert(3, vec![with_prev(ev(3, "k1", "b"), "a"), ev(3, "k2", "c")]);
        let stripped = || vec![ev(3, "k1", "b"), ev(3, "k2", "c")];
        let mut from_3 = session(vec![stripped(), vec![ev(5, "k2", "d")]], 5);
        from_3.requested_start = 3;
        // Never compacted to 3: the record it replaced was lost.
        assert_eq!(check(std::slice::from_ref(&from_3), &truth, watched).len(), 1);
        truth.compacted = 3;
        assert_eq!(check(std::slice::from_ref(&from_3), &truth, watched), vec![]);
        // Within a response, revision 3 was read live, not from the compact revision.
        let mid = session(vec![vec![ev(2, "k1", "a"), ev(3, "k1", "b"), ev(3, "k2", "c")]], 3);
        assert_eq!(check(&[mid], &truth, watched).len(), 1);
    }

    #[test]
    fn a_replaced_record_is_unchecked_only_where_truth_came_from_a_compact_revision() {
        let mut got = ev(2, "k1", "a");
        got.prev = Some("zz".into());
        let s = session(vec![vec![got]], 2);
        let mut truth = truth();
        assert_eq!(check(std::slice::from_ref(&s), &truth, watched).len(), 1, "an invented prev_kv");
        truth.without_prev.insert(2);
        assert_eq!(check(&[s], &truth, watched), vec![]);
    }

    #[test]
    fn a_session_resumes_after_what_it_was_promised() {
        let s = session(vec![vec![ev(3, "k1", "b"), ev(3, "k2", "c")]], 4);
        assert_eq!(s.resume_from(), Some(5));
        let fresh = Session { created_revision: Some(7), ..Default::default() };
        assert_eq!(fresh.resume_from(), Some(8));
    }
}
