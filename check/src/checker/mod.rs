//! Checkers over a recorded run. Each returns the violations it found, with
//! enough context (the operations involved) for a developer to act on.

pub mod brokers;
pub mod lease;
pub mod linearizability;
pub mod offsets;
pub mod raft_invariants;
pub mod shards;
pub mod watch;

use std::collections::BTreeMap;

use crate::history::{Call, Op, Outcome};

/// Serializable reads may be stale but never invent a value: every value read
/// must have been written by a put or CAS on that key invoked before the read
/// completed.
pub fn check_serializable_reads(history: &[Op]) -> Vec<String> {
    let mut writes: BTreeMap<(&str, &str), &Op> = BTreeMap::new();
    for op in history {
        match &op.call {
            // A retried put records the same value twice: keep the earliest.
            Call::Put(v) | Call::Cas { new: v, .. } => {
                let earliest = writes.entry((op.key.as_str(), v.as_str())).or_insert(op);
                if op.invoked < earliest.invoked {
                    *earliest = op;
                }
            }
            _ => {}
        }
    }
    let mut violations = Vec::new();
    for op in history {
        if let (Call::GetSerializable, Outcome::Read(Some(v))) = (&op.call, &op.outcome) {
            match writes.get(&(op.key.as_str(), v.as_str())) {
                Some(w) if w.invoked <= op.completed => {}
                Some(w) => {
                    violations.push(format!("serializable read saw a value before it was written:\n  {op}\n  {w}"))
                }
                None => violations.push(format!("serializable read saw a value nobody wrote:\n  {op}")),
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn op(call: Call, outcome: Outcome, t: (u64, u64)) -> Op {
        Op {
            client: 0,
            key: "k".into(),
            call,
            invoked: Duration::from_millis(t.0),
            completed: Duration::from_millis(t.1),
            outcome,
        }
    }

    #[test]
    fn stale_serializable_reads_pass_invented_ones_fail() {
        let ok = vec![
            op(Call::Put("a".into()), Outcome::Written, (0, 10)),
            op(Call::Put("b".into()), Outcome::Written, (20, 30)),
            op(Call::GetSerializable, Outcome::Read(Some("a".into())), (40, 50)),
        ];
        assert!(check_serializable_reads(&ok).is_empty());
        let invented = vec![op(Call::GetSerializable, Outcome::Read(Some("zzz".into())), (40, 50))];
        assert_eq!(check_serializable_reads(&invented).len(), 1);
        let retried = vec![
            op(Call::Put("a".into()), Outcome::Unknown, (0, 10)),
            op(Call::GetSerializable, Outcome::Read(Some("a".into())), (12, 14)),
            op(Call::Put("a".into()), Outcome::Written, (15, 20)),
        ];
        assert!(check_serializable_reads(&retried).is_empty(), "the first attempt of a retried put wrote it");
        let from_future = vec![
            op(Call::GetSerializable, Outcome::Read(Some("a".into())), (0, 5)),
            op(Call::Put("a".into()), Outcome::Written, (10, 20)),
        ];
        assert_eq!(check_serializable_reads(&from_future).len(), 1);
    }
}
