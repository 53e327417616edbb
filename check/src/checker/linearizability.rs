//! Linearizability of a history, per key, against a register model
//! (Wing & Gong's search with Lowe's memoization of (linearized set, state)).
//!
//! An operation with an `Unknown` outcome may have taken effect at any point
//! after its invocation, or never: it has no completion event, and any output
//! is acceptable. `Failed` operations did not happen and are left out, as are
//! serializable reads (checked elsewhere: they may be stale).
//!
//! Lost answers are what make the search long (a crash of every member
//! leaves dozens on one key), so the search never tries an order that
//! leaving such an op out would explain as well: a lost op that changes
//! nothing, or one followed by a blind write; it treats written values no op
//! compares with as one; and its memo counts a point reached with fewer lost
//! ops as at least as good. A test checks it against trying every order.

use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// Whether the op linearized just before this level had an unknown outcome.
    after_unknown: bool,
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
    let model = unobserved_as_one(ops);

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let is_set = |set: &[u64], i: usize| set[i / 64] & (1 << (i % 64)) != 0;
    let mut done_known = 0usize;
    let mut state: State = None;
    let mut unknown_ops = vec![0u64; words];
    for (i, op) in ops.iter().enumerate() {
        if op.outcome == Outcome::Unknown {
            unknown_ops[i / 64] |= 1 << (i % 64);
        }
    }
    // Lowe's memo, with the ops of unknown outcome apart: a point of the
    // search (linearized ops, state) is no better than one already reached
    // with the same known ops and state and fewer unknown ones (those can
    // still take effect later, or never). Per (known ops, state), the sets
    // of unknown ops it was reached with, none a subset of another.
    // A point reached by an op of unknown outcome is kept apart from one
    // reached by a known op: the search goes on from it with fewer choices
    // (see below), so neither stands for the other.
    let mut cache: HashMap<(Vec<u64>, State, bool), Vec<Vec<u64>>> = HashMap::new();
    let mut visit = |set: &[u64], state: &State, by_unknown: bool| -> bool {
        let known: Vec<u64> = set.iter().zip(&unknown_ops).map(|(s, u)| s & !u).collect();
        let unknown: Vec<u64> = set.iter().zip(&unknown_ops).map(|(s, u)| s & u).collect();
        let subset = |a: &[u64], b: &[u64]| a.iter().zip(b).all(|(a, b)| a & !b == 0);
        let reached = cache.entry((known, state.clone(), by_unknown)).or_default();
        if reached.iter().any(|r| subset(r, &unknown)) {
            return false;
        }
        reached.retain(|r| !subset(&unknown, r));
        reached.push(unknown);
        true
    };
    visit(&linearized, &state, false);
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
        let after_unknown =
            stack.last().and_then(|f| f.chosen.as_ref()).is_some_and(|(j, _)| ops[*j].outcome == Outcome::Unknown);
        stack.push(Frame { candidates: cands, next: 0, chosen: None, after_unknown });
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
            let after_unknown = frame.after_unknown;
            while frame.next < frame.candidates.len() {
                let i = frame.candidates[frame.next];
                frame.next += 1;
                let Some(after) = step(&state, &model[i]) else { continue };
                // An op with a lost answer may also never take effect, so an
                // order that applies one is only worth trying if leaving it
                // out could not do as well. Leaving it out is as good when it
                // changes nothing, and when the op right after it is a blind
                // write (a put, or a delete with a lost answer), which
                // overwrites what it did and whose own outcome does not
                // depend on it. Leaving ops with lost answers out never makes
                // another op's turn come later (they block nothing), so any
                // history some order explains is explained by an order with
                // neither; skipping both keeps the search from trying every
                // subset of a run of lost writes.
                let unknown = model[i].outcome == Outcome::Unknown;
                let blind = matches!(model[i].call, Call::Put(_)) || (unknown && model[i].call == Call::Delete);
                if (unknown && after == state) || (blind && after_unknown) {
                    continue;
                }
                let mut set = linearized.clone();
                set[i / 64] |= 1 << (i % 64);
                if !visit(&set, &after, ops[i].outcome == Outcome::Unknown) {
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

/// Stands for every value no op compares with.
const UNOBSERVED: &str = "\u{0}unobserved";

/// `ops` with every written value that no read returned and no CAS expected
/// replaced by one [`UNOBSERVED`]: such values differ from every value an
/// op compares with, so which of them the register holds changes no
/// outcome, and the search need not tell them apart.
fn unobserved_as_one(ops: &[&Op]) -> Vec<Op> {
    let mut observed = HashSet::new();
    for op in ops {
        match (&op.call, &op.outcome) {
            (_, Outcome::Read(Some(v))) => {
                observed.insert(v.clone());
            }
            (Call::Cas { expected, .. }, _) => {
                observed.insert(expected.clone());
            }
            _ => {}
        }
    }
    let canonical = |v: &String| if observed.contains(v) { v.clone() } else { UNOBSERVED.to_string() };
    ops.iter()
        .map(|op| {
            let call = match &op.call {
                Call::Put(v) => Call::Put(canonical(v)),
                Call::Cas { expected, new } => Call::Cas { expected: expected.clone(), new: canonical(new) },
                other => other.clone(),
            };
            Op { call, ..(*op).clone() }
        })
        .collect()
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

#[cfg(test)]
mod many_unknowns {
    use super::*;

    /// A history made by running a register: every op takes effect at one
    /// instant inside its call (or, for a lost answer, after its invocation
    /// or never), so it is linearizable by construction.
    fn outage_history(seed: u64, ops: usize, unknown_every: u64) -> Vec<Op> {
        let mut rng = seed;
        let mut next = |n: u64| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let mut state: Option<String> = None;
        let mut history = Vec::new();
        for i in 0..ops as u64 {
            let at = i * 10;
            let invoked = Duration::from_millis(at.saturating_sub(next(60)));
            let completed = Duration::from_millis(at + next(60));
            let lost = next(unknown_every) == 0;
            let takes_effect = !lost || next(2) == 0;
            let (call, outcome) = match next(4) {
                0 | 1 => {
                    let v = format!("v{i}");
                    if takes_effect {
                        state = Some(v.clone());
                    }
                    (Call::Put(v), Outcome::Written)
                }
                2 => {
                    let n = i64::from(state.is_some());
                    if takes_effect {
                        state = None;
                    }
                    (Call::Delete, Outcome::Deleted(n))
                }
                _ if lost => {
                    let expected = format!("v{}", i.saturating_sub(1 + next(4)));
                    let holds = state.as_deref() == Some(expected.as_str());
                    if takes_effect && holds {
                        state = Some(format!("v{i}"));
                    }
                    (Call::Cas { expected, new: format!("v{i}") }, Outcome::Swapped(holds))
                }
                _ => (Call::Get, Outcome::Read(state.clone())),
            };
            let outcome = if lost { Outcome::Unknown } else { outcome };
            let completed = if lost { invoked + Duration::from_secs(2) } else { completed };
            history.push(Op { client: (i % 8) as u32, key: "k".into(), call, invoked, completed, outcome });
        }
        history
    }

    #[test]
    fn a_history_with_many_lost_answers_is_decided() {
        for seed in 0..8 {
            let history = outage_history(seed, 200, 3);
            let unknown = history.iter().filter(|op| op.outcome == Outcome::Unknown).count();
            assert!(unknown > 45, "seed {seed}: {unknown} unknown");
            let violations = check(&history);
            assert!(violations.is_empty(), "seed {seed}, {unknown} unknown: {}", violations[0]);
        }
    }
}

#[cfg(test)]
mod against_brute_force {
    use super::*;

    /// Whether some order explains `ops`, trying every one (small histories).
    fn brute_force(ops: &[Op], done: &mut Vec<bool>, state: &State) -> bool {
        let pending_known = |done: &[bool], i: usize| !done[i] && ops[i].outcome != Outcome::Unknown;
        if !(0..ops.len()).any(|i| pending_known(done, i)) {
            return true;
        }
        for i in 0..ops.len() {
            // i may go next if no pending known op returned before i began.
            if done[i] || (0..ops.len()).any(|j| j != i && pending_known(done, j) && ops[j].completed < ops[i].invoked)
            {
                continue;
            }
            if let Some(after) = step(state, &ops[i]) {
                done[i] = true;
                let explained = brute_force(ops, done, &after);
                done[i] = false;
                if explained {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn the_search_agrees_with_trying_every_order() {
        let mut rng = 7u64;
        let mut next = |n: u64| {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        // Reads and compares see a, b or c; d and e are only written.
        let values = ["a", "b", "c", "d", "e"];
        let (mut linearizable, mut not) = (0, 0);
        for round in 0..20000 {
            let n = 3 + next(6) as usize;
            let mut history = Vec::new();
            for i in 0..n {
                let invoked = next(100);
                let completed = invoked + next(40);
                let value = |r: u64| values[r as usize].to_string();
                let (call, outcome) = match next(5) {
                    0 => (Call::Put(value(next(5))), Outcome::Written),
                    1 => {
                        let seen = next(4);
                        (Call::Get, Outcome::Read((seen < 3).then(|| value(seen))))
                    }
                    2 => (Call::Delete, Outcome::Deleted(next(2) as i64)),
                    _ => (Call::Cas { expected: value(next(3)), new: value(next(5)) }, Outcome::Swapped(next(2) == 0)),
                };
                let outcome = if !matches!(call, Call::Get) && next(3) == 0 { Outcome::Unknown } else { outcome };
                history.push(Op {
                    client: i as u32,
                    key: "k".into(),
                    call,
                    invoked: Duration::from_millis(invoked),
                    completed: Duration::from_millis(completed),
                    outcome,
                });
            }
            let expected = brute_force(&history, &mut vec![false; n], &None);
            let found = check(&history).is_empty();
            assert_eq!(found, expected, "round {round}: {history:#?}");
            if expected {
                linearizable += 1;
            } else {
                not += 1;
            }
        }
        assert!(linearizable > 2000 && not > 2000, "{linearizable} linearizable, {not} not");
    }
}
