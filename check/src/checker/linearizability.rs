//! Linearizability of a history, per key, against a register model
//! (Wing & Gong's search with Lowe's memoization of (linearized set, state)).
//!
//! An operation with an `Unknown` outcome may have taken effect at any point
//! after its invocation, or never: it has no completion event, and any output
//! is acceptable. `Failed` operations did not happen and are left out, as are
//! serializable reads (checked elsewhere: they may be stale).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::history::{Call, Op, Outcome};

/// The register a key is.
type State = Option<String>;

/// Applies `op` to `state`; `None` if the observed outcome is impossible there.
fn step(state: &State, op: &Op) -> Option<State> {
    let unknown = op.outcome == Outcome::Unknown;
    match (&op.call, &op.outcome) {
        (Call::Put(v), _) => Some(Some(v.clone())),
        (Call::Get, Outcome::Read(seen)) => (seen == state).then(|| state.clone()),
        (Call::Get, _) => Some(state.clone()),
        (Call::Delete, Outcome::Deleted(n)) => (*n == i64::from(state.is_some())).then_some(None),
        (Call::Delete, _) => Some(None),
        (Call::Cas { expected, new }, outcome) => {
            let holds = state.as_deref() == Some(expected.as_str());
            match outcome {
                Outcome::Swapped(swapped) if *swapped != holds => None,
                _ if holds => Some(Some(new.clone())),
                _ => {
                    debug_assert!(unknown || matches!(outcome, Outcome::Swapped(false)));
                    Some(state.clone())
                }
            }
        }
        (Call::GetSerializable, _) => Some(state.clone()),
    }
}

/// A failure: the key and the smallest part of its history that shows it.
#[derive(Debug)]
pub struct Violation {
    /// The key whose history is not linearizable.
    pub key: String,
    /// The operation that could not be linearized and those concurrent with it.
    pub ops: Vec<Op>,
    /// The search ran out of its step budget: not proven wrong, not proven right.
    pub inconclusive: bool,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.inconclusive {
            writeln!(
                f,
                "linearizability of key {:?} is inconclusive: search exceeded {STEP_BUDGET} steps near:",
                self.key
            )?;
        } else {
            writeln!(f, "history of key {:?} is not linearizable; no order explains the first op below:", self.key)?;
        }
        for op in &self.ops {
            writeln!(f, "  {op}")?;
        }
        Ok(())
    }
}

/// Checks every key's history; returns one violation per failing key.
pub fn check(history: &[Op]) -> Vec<Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        if op.outcome != Outcome::Failed && op.call != Call::GetSerializable {
            by_key.entry(op.key.as_str()).or_default().push(op);
        }
    }
    if std::env::var_os("PLACEMENT_SIM_DEBUG").is_some() {
        for (key, ops) in &by_key {
            let unknown = ops.iter().filter(|op| op.outcome == Outcome::Unknown).count();
            eprintln!("key {key}: {} ops, {unknown} unknown", ops.len());
        }
    }
    by_key.into_iter().filter_map(|(key, ops)| check_key(key, &ops)).collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Call,
    Return,
}

/// How many search steps one key may take before the check gives up (and
/// reports it: an inconclusive check is a failure, never a pass).
pub const STEP_BUDGET: u64 = 2_000_000;

/// One level of the depth-first search: the ops that could be linearized next
/// and which of them is being tried.
struct Frame {
    candidates: Vec<usize>,
    next: usize,
    /// The op chosen at this level and the state before it.
    chosen: Option<(usize, State)>,
}

/// Wing–Gong–Lowe on one key's operations, as a depth-first search. At each
/// level the candidates are the ops not yet linearized whose invocation comes
/// before the first pending completion; ops with a known outcome are tried
/// before ops with an unknown one (which rarely need to take effect), which
/// keeps the search short without dropping any candidate.
fn check_key(key: &str, ops: &[&Op]) -> Option<Violation> {
    // Events in time order; at equal times calls come first (no precedence).
    let mut events: Vec<(Duration, Kind, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoked, Kind::Call, i));
        if op.outcome != Outcome::Unknown {
            events.push((op.completed, Kind::Return, i));
        }
    }
    events.sort_by_key(|(t, kind, i)| (*t, *kind == Kind::Return, *i));
    let must_linearize = ops.iter().filter(|op| op.outcome != Outcome::Unknown).count();

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let is_set = |set: &[u64], i: usize| set[i / 64] & (1 << (i % 64)) != 0;
    let mut done_known = 0usize;
    let mut state: State = None;
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut steps: u64 = 0;
    // The pending completion the search could not get past, furthest in time.
    let mut stuck: Option<usize> = None;

    let candidates = |linearized: &[u64]| -> (Vec<usize>, Option<usize>) {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        let mut blocking = None;
        for (_, kind, i) in &events {
            if is_set(linearized, *i) {
                continue;
            }
            match kind {
                Kind::Call if ops[*i].outcome == Outcome::Unknown => unknown.push(*i),
                Kind::Call => known.push(*i),
                Kind::Return => {
                    blocking = Some(*i);
                    break;
                }
            }
        }
        known.extend(unknown);
        (known, blocking)
    };

    'descend: loop {
        if done_known == must_linearize {
            return None;
        }
        let (cands, blocking) = candidates(&linearized);
        if let Some(b) = blocking {
            if stuck.is_none_or(|s| ops[b].completed > ops[s].completed) {
                stuck = Some(b);
            }
        }
        stack.push(Frame { candidates: cands, next: 0, chosen: None });
        loop {
            steps += 1;
            if steps > STEP_BUDGET {
                let mut v = violation(key, ops, stuck.unwrap_or(0));
                v.inconclusive = true;
                return Some(v);
            }
            let Some(frame) = stack.last_mut() else {
                return Some(violation(key, ops, stuck.unwrap_or(0)));
            };
            // Undo what this level tried last.
            if let Some((i, previous)) = frame.chosen.take() {
                linearized[i / 64] &= !(1 << (i % 64));
                if ops[i].outcome != Outcome::Unknown {
                    done_known -= 1;
                }
                state = previous;
            }
            while frame.next < frame.candidates.len() {
                let i = frame.candidates[frame.next];
                frame.next += 1;
                let Some(after) = step(&state, ops[i]) else { continue };
                let mut set = linearized.clone();
                set[i / 64] |= 1 << (i % 64);
                if !cache.insert((set.clone(), after.clone())) {
                    continue;
                }
                frame.chosen = Some((i, std::mem::replace(&mut state, after)));
                linearized = set;
                if ops[i].outcome != Outcome::Unknown {
                    done_known += 1;
                }
                continue 'descend;
            }
            // Nothing left to try at this level: back up one.
            stack.pop();
        }
    }
}

/// The op whose completion could not be reached, and every op overlapping it.
fn violation(key: &str, ops: &[&Op], stuck_at: usize) -> Violation {
    let stuck = ops[stuck_at];
    let mut involved: Vec<Op> = vec![stuck.clone()];
    for op in ops {
        let overlaps =
            op.invoked <= stuck.completed && (op.outcome == Outcome::Unknown || op.completed >= stuck.invoked);
        if overlaps && *op != stuck {
            involved.push((*op).clone());
        }
    }
    involved[1..].sort_by_key(|op| op.invoked);
    Violation { key: key.to_string(), ops: involved, inconclusive: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, call: Call, outcome: Outcome, t: (u64, u64)) -> Op {
        Op {
            client,
            key: "k".into(),
            call,
            invoked: Duration::from_millis(t.0),
            completed: Duration::from_millis(t.1),
            outcome,
        }
    }
    fn put(c: u32, v: &str, t: (u64, u64)) -> Op {
        op(c, Call::Put(v.into()), Outcome::Written, t)
    }
    fn get(c: u32, v: Option<&str>, t: (u64, u64)) -> Op {
        op(c, Call::Get, Outcome::Read(v.map(String::from)), t)
    }
    fn cas(c: u32, e: &str, n: &str, ok: bool, t: (u64, u64)) -> Op {
        op(c, Call::Cas { expected: e.into(), new: n.into() }, Outcome::Swapped(ok), t)
    }

    #[test]
    fn linearizable_histories_are_accepted() {
        let cases: Vec<(&str, Vec<Op>)> = vec![
            (
                "sequential",
                vec![
                    put(1, "a", (0, 10)),
                    get(2, Some("a"), (20, 30)),
                    put(1, "b", (40, 50)),
                    get(2, Some("b"), (60, 70)),
                ],
            ),
            (
                "concurrent read may see old or new",
                vec![put(1, "a", (0, 10)), put(1, "b", (20, 50)), get(2, Some("a"), (25, 30))],
            ),
            (
                "concurrent read may see new",
                vec![put(1, "a", (0, 10)), put(1, "b", (20, 50)), get(2, Some("b"), (25, 30))],
            ),
            ("empty read before any write", vec![get(1, None, (0, 5)), put(2, "a", (10, 20))]),
            (
                "delete then read none",
                vec![put(1, "a", (0, 10)), op(1, Call::Delete, Outcome::Deleted(1), (20, 30)), get(2, None, (40, 50))],
            ),
            (
                "cas succeeds once",
                vec![put(1, "a", (0, 10)), cas(1, "a", "b", true, (20, 30)), cas(2, "a", "c", false, (40, 50))],
            ),
            (
                "unknown write that took effect",
                vec![op(1, Call::Put("a".into()), Outcome::Unknown, (0, 10)), get(2, Some("a"), (100, 110))],
            ),
            (
                "unknown write that never took effect",
                vec![op(1, Call::Put("a".into()), Outcome::Unknown, (0, 10)), get(2, None, (100, 110))],
            ),
            (
                "failed write did not happen",
                vec![op(1, Call::Put("a".into()), Outcome::Failed, (0, 10)), get(2, None, (100, 110))],
            ),
        ];
        for (name, history) in cases {
            assert!(check(&history).is_empty(), "{name} should be linearizable");
        }
    }

    #[test]
    fn non_linearizable_histories_are_rejected() {
        let cases: Vec<(&str, Vec<Op>)> = vec![
            (
                "stale read after a completed write",
                vec![put(1, "a", (0, 10)), put(1, "b", (20, 30)), get(2, Some("a"), (40, 50))],
            ),
            ("lost acknowledged write", vec![put(1, "a", (0, 10)), get(2, None, (20, 30))]),
            ("read of a value never written", vec![put(1, "a", (0, 10)), get(2, Some("x"), (20, 30))]),
            (
                "reads go back in time",
                vec![
                    put(1, "a", (0, 10)),
                    put(1, "b", (20, 100)),
                    get(2, Some("b"), (30, 40)),
                    get(3, Some("a"), (50, 60)),
                ],
            ),
            (
                "two cas succeed on one value",
                vec![put(1, "a", (0, 10)), cas(1, "a", "b", true, (20, 30)), cas(2, "a", "c", true, (40, 50))],
            ),
            ("delete counted a missing key", vec![op(1, Call::Delete, Outcome::Deleted(1), (0, 10))]),
            (
                "unknown write seen then unseen",
                vec![
                    op(1, Call::Put("a".into()), Outcome::Unknown, (0, 10)),
                    get(2, Some("a"), (20, 30)),
                    get(2, None, (40, 50)),
                ],
            ),
        ];
        for (name, history) in cases {
            let violations = check(&history);
            assert_eq!(violations.len(), 1, "{name} should be rejected");
            assert!(!violations[0].ops.is_empty());
        }
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut other = put(1, "x", (0, 10));
        other.key = "other".into();
        let history = vec![put(1, "a", (0, 10)), other, get(2, Some("a"), (20, 30))];
        assert!(check(&history).is_empty());
    }

    #[test]
    fn a_long_concurrent_history_is_checked_quickly() {
        // 8 clients, 200 ops, heavy overlap: memoization keeps this fast.
        let mut history = Vec::new();
        let mut last = None;
        for i in 0..200u64 {
            let t = i * 5;
            if i % 3 == 0 {
                let v = format!("v{i}");
                history.push(put((i % 8) as u32, &v, (t, t + 40)));
                last = Some(v);
            } else {
                history.push(get((i % 8) as u32, last.as_deref(), (t + 39, t + 45)));
            }
        }
        assert!(check(&history).is_empty());
    }
}
