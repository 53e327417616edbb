//! Broker registrations (the placement API) as brokers and a node watcher
//! saw them:
//!
//! - every acknowledged registration of a broker has a higher epoch than the
//!   broker's previous one;
//! - a heartbeat with an epoch is never acknowledged once a newer
//!   registration of that broker was acknowledged (a replaced zombie cannot
//!   keep itself alive), and it is refused as stale or not registered;
//! - a broker whose heartbeats were acknowledged in time is never missing
//!   from ListNodes, unless the leader changed or a clock was skewed
//!   meanwhile (the lease deadlines are the leader's, by its clock);
//! - the node watcher reports every acknowledged registration it could have
//!   seen, in revision order without duplicates;
//! - after heal, with every broker silent, every registration is gone from
//!   ListNodes and the watcher reported each broker's last one leaving.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Answer {
    /// Acknowledged.
    Ok,
    /// Refused with this gRPC code (as its number) and message.
    Refused(i32, String),
    /// Timed out or failed in transit: it may or may not have happened.
    Unknown,
}

/// What a broker did, with virtual invocation and completion times.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    /// RegisterNode; the epoch when acknowledged.
    Register(Option<i64>),
    /// Heartbeat with this epoch.
    Heartbeat(i64),
    /// UnregisterNode of this epoch.
    Unregister(i64),
    /// ListNodes (linearizable): the epoch listed for this broker, if any.
    List(Option<i64>),
}

/// One call of one broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerOp {
    /// The broker (its node id).
    pub broker: u64,
    /// What it called.
    pub call: Call,
    /// When it was invoked, since the start.
    pub invoked: Duration,
    /// When it completed.
    pub completed: Duration,
    /// How it ended.
    pub answer: Answer,
}

impl fmt::Display for BrokerOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "broker {} {:?} [{:.3}s..{:.3}s] -> {:?}",
            self.broker,
            self.call,
            self.invoked.as_secs_f64(),
            self.completed.as_secs_f64(),
            self.answer
        )
    }
}

/// One node event as the watcher saw it: (kind, broker, epoch, revision).
pub type Seen = (String, u64, i64, i64);

/// What the node watcher saw, per stream (a compacted start ends one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Observed {
    /// Per stream: the revision it started from and its events in order.
    pub streams: Vec<(i64, Vec<Seen>)>,
}

/// A broker check that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerViolation(pub String);

impl fmt::Display for BrokerViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "brokers: {}", self.0)
    }
}

/// Slack for message delays and whole-second lease rounding.
const SLACK: Duration = Duration::from_secs(1);
/// How long after its invocation a write whose outcome is unknown may
/// still be applied (well above the servers' request timeout).
const LATE_WRITE: Duration = Duration::from_secs(10);
/// gRPC codes the refusals may carry.
const NOT_FOUND: i32 = 5;
const FAILED_PRECONDITION: i32 = 9;

/// Checks the brokers' history; `expiry` is the registrations' TTL and
/// `excused` the windows in which a registration may end early.
pub fn check(
    ops: &[BrokerOp],
    observed: &Observed,
    expiry: Duration,
    excused: &[(Duration, Duration)],
) -> Vec<BrokerViolation> {
    let mut violations = Vec::new();
    let mut by_broker: BTreeMap<u64, Vec<&BrokerOp>> = BTreeMap::new();
    for op in ops {
        by_broker.entry(op.broker).or_default().push(op);
    }
    for (broker, ops) in &by_broker {
        check_epochs(*broker, ops, &mut violations);
        check_stale_heartbeats(ops, &mut violations);
        check_liveness(ops, expiry, excused, &mut violations);
    }
    check_observed(ops, observed, &mut violations);
    violations
}

fn acked_registrations<'a>(ops: &[&'a BrokerOp]) -> Vec<(&'a BrokerOp, i64)> {
    ops.iter()
        .filter_map(|op| match (&op.call, &op.answer) {
            (Call::Register(Some(epoch)), Answer::Ok) => Some((*op, *epoch)),
            _ => None,
        })
        .collect()
}

fn check_epochs(broker: u64, ops: &[&BrokerOp], violations: &mut Vec<BrokerViolation>) {
    let mut last: Option<(&BrokerOp, i64)> = None;
    for (op, epoch) in acked_registrations(ops) {
        if let Some((before, previous)) = last {
            if epoch <= previous {
                violations.push(BrokerViolation(format!(
                    "broker {broker} registered again with epoch {epoch}, not above its previous {previous}:\n  {before}\n  {op}"
                )));
            }
        }
        last = Some((op, epoch));
    }
}

fn check_stale_heartbeats(ops: &[&BrokerOp], violations: &mut Vec<BrokerViolation>) {
    let registrations = acked_registrations(ops);
    for op in ops {
        let Call::Heartbeat(epoch) = op.call else { continue };
        let replaced = registrations.iter().find(|(r, newer)| *newer > epoch && r.completed <= op.invoked);
        let Some((registration, _)) = replaced else { continue };
        match &op.answer {
            Answer::Ok => violations.push(BrokerViolation(format!(
                "a heartbeat with a replaced epoch was acknowledged:\n  {registration}\n  {op}"
            ))),
            Answer::Refused(code, message) if *code != FAILED_PRECONDITION && *code != NOT_FOUND => {
                violations.push(BrokerViolation(format!(
                    "a stale heartbeat was refused with code {code} ({message}), not as stale or unregistered:\n  {op}"
                )))
            }
            _ => {}
        }
    }
}

/// A list that misses the broker's current registration while its last
/// acknowledged renewal (registration or heartbeat) is younger than the
/// expiry is a live broker expired.
fn check_liveness(
    ops: &[&BrokerOp],
    expiry: Duration,
    excused: &[(Duration, Duration)],
    violations: &mut Vec<BrokerViolation>,
) {
    // The registration in force: (its op, epoch, the last renewal's invocation).
    let mut current: Option<(&BrokerOp, i64, Duration)> = None;
    // A registration whose outcome is unknown may still be applied later
    // (the server finishes it after the client gave up, within its request
    // timeout) and replace a newer one.
    let mut pending_registration: Option<Duration> = None;
    for op in ops {
        match (&op.call, &op.answer) {
            (Call::Register(_), Answer::Unknown) => {
                pending_registration = Some(op.invoked);
                current = None;
            }
            (Call::Register(Some(epoch)), Answer::Ok) => current = Some((op, *epoch, op.invoked)),
            // Whatever else changed the registration, or may have: stop judging it.
            (Call::Register(_), _) | (Call::Unregister(_), Answer::Ok | Answer::Unknown) => current = None,
            (Call::Heartbeat(epoch), Answer::Ok) => {
                if let Some((_, current_epoch, renewed)) = &mut current {
                    if *current_epoch == *epoch {
                        *renewed = op.invoked;
                    }
                }
            }
            (Call::List(found), Answer::Ok) => {
                let Some((registration, epoch, renewed)) = current else { continue };
                if *found == Some(epoch) || renewed + expiry < op.completed + SLACK {
                    continue;
                }
                let late = pending_registration.is_some_and(|at| op.invoked < at + LATE_WRITE);
                if late && found.is_some_and(|f| f > epoch) {
                    continue; // replaced by the late one
                }
                let window = (renewed, op.completed);
                if excused.iter().any(|(from, to)| *from <= window.1 && window.0 <= *to) {
                    continue;
                }
                violations.push(BrokerViolation(format!(
                    "a live broker was missing from ListNodes (found epoch {found:?}) though renewed at {:.3}s with expiry {expiry:?}:\n  {registration}\n  {op}",
                    renewed.as_secs_f64()
                )));
            }
            _ => {}
        }
    }
}

fn check_observed(ops: &[BrokerOp], observed: &Observed, violations: &mut Vec<BrokerViolation>) {
    for (from, events) in &observed.streams {
        let mut last_revision = from - 1;
        let mut seen = std::collections::BTreeSet::new();
        for event in events {
            let (kind, broker, _, revision) = event;
            if *revision < last_revision || !seen.insert(event) {
                violations.push(BrokerViolation(format!(
                    "the node watch went back or repeated itself: revision {revision} after {last_revision} ({kind} of broker {broker})"
                )));
            }
            last_revision = last_revision.max(*revision);
        }
        let seen_up_to = events.last().map_or(from - 1, |e| e.3);
        for op in ops {
            let (Call::Register(Some(epoch)), Answer::Ok) = (&op.call, &op.answer) else { continue };
            if *epoch < *from || *epoch > seen_up_to {
                continue;
            }
            let reported = events.iter().any(|(kind, broker, e, r)| {
                *broker == op.broker && *e == *epoch && *r == *epoch && (kind == "JOINED" || kind == "CHANGED")
            });
            if !reported {
                violations.push(BrokerViolation(format!(
                    "the node watch (from revision {from}, seen up to {seen_up_to}) never reported registration epoch {epoch}:\n  {op}"
                )));
            }
        }
    }
}

/// After heal: `listed` is what ListNodes returned once every broker had
/// been silent for longer than the expiry; every broker's last acknowledged
/// registration must be gone and reported gone by the watcher (whose last
/// stream must have run through the silence).
pub fn check_gone(ops: &[BrokerOp], observed: &Observed, listed: &[(u64, i64)]) -> Vec<BrokerViolation> {
    let mut violations = Vec::new();
    if !listed.is_empty() {
        violations.push(BrokerViolation(format!(
            "after heal and silence longer than the expiry, ListNodes still lists (broker, epoch) {listed:?}"
        )));
    }
    let mut last: BTreeMap<u64, i64> = BTreeMap::new();
    for op in ops {
        if let (Call::Register(Some(epoch)), Answer::Ok) = (&op.call, &op.answer) {
            last.insert(op.broker, *epoch);
        }
    }
    let Some((from, events)) = observed.streams.last() else {
        violations.push(BrokerViolation("the node watcher never ran".to_string()));
        return violations;
    };
    for (broker, epoch) in last {
        if epoch < *from {
            continue;
        }
        let left = events.iter().any(|(kind, b, e, _)| kind == "LEFT" && *b == broker && *e == epoch);
        let replaced = events.iter().any(|(_, b, e, _)| *b == broker && *e > epoch);
        if !left && !replaced {
            violations.push(BrokerViolation(format!(
                "the node watch never reported broker {broker}'s last registration (epoch {epoch}) leaving"
            )));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn op(call: Call, t: (f64, f64), answer: Answer) -> BrokerOp {
        BrokerOp { broker: 1, call, invoked: s(t.0), completed: s(t.1), answer }
    }

    const EXPIRY: Duration = Duration::from_secs(3);

    #[test]
    fn epochs_must_grow_and_replaced_epochs_must_be_refused() {
        let ops = vec![
            op(Call::Register(Some(10)), (0.0, 0.1), Answer::Ok),
            op(Call::Register(Some(8)), (1.0, 1.1), Answer::Ok),
        ];
        assert_eq!(check(&ops, &Observed::default(), EXPIRY, &[]).len(), 1, "epoch went down");
        let zombie = vec![
            op(Call::Register(Some(10)), (0.0, 0.1), Answer::Ok),
            op(Call::Register(Some(12)), (1.0, 1.1), Answer::Ok),
            op(Call::Heartbeat(10), (0.5, 1.5), Answer::Ok), // concurrent: fine
            op(Call::Heartbeat(10), (1.2, 1.3), Answer::Ok),
            op(Call::Heartbeat(10), (1.4, 1.5), Answer::Refused(FAILED_PRECONDITION, "stale".into())),
            op(Call::Heartbeat(10), (1.6, 1.7), Answer::Refused(3, "bad".into())),
        ];
        let found = check(&zombie, &Observed::default(), EXPIRY, &[]);
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn a_broker_missing_while_renewed_in_time_is_a_violation_unless_excused() {
        let ops = vec![
            op(Call::Register(Some(10)), (0.0, 0.1), Answer::Ok),
            op(Call::Heartbeat(10), (1.0, 1.1), Answer::Ok),
            op(Call::List(None), (2.0, 2.1), Answer::Ok),
            op(Call::List(None), (6.0, 6.1), Answer::Ok), // expired by then: fine
        ];
        assert_eq!(check(&ops, &Observed::default(), EXPIRY, &[]).len(), 1);
        assert!(check(&ops, &Observed::default(), EXPIRY, &[(s(1.5), s(1.6))]).is_empty());
        let replaced_by_a_late_registration = vec![
            op(Call::Register(None), (0.0, 2.0), Answer::Unknown),
            op(Call::Register(Some(10)), (2.1, 2.2), Answer::Ok),
            op(Call::List(Some(11)), (2.5, 2.6), Answer::Ok),
        ];
        assert!(check(&replaced_by_a_late_registration, &Observed::default(), EXPIRY, &[]).is_empty());
        let from_nowhere = vec![
            op(Call::Register(Some(10)), (2.1, 2.2), Answer::Ok),
            op(Call::List(Some(11)), (2.5, 2.6), Answer::Ok),
        ];
        assert_eq!(check(&from_nowhere, &Observed::default(), EXPIRY, &[]).len(), 1);
    }

    #[test]
    fn the_watch_must_report_registrations_it_spans_and_leaving_ones_after_heal() {
        let ops = vec![op(Call::Register(Some(10)), (0.0, 0.1), Answer::Ok)];
        let missed = Observed { streams: vec![(5, vec![("JOINED".into(), 2, 11, 11)])] };
        assert_eq!(check(&ops, &missed, EXPIRY, &[]).len(), 1);
        let seen = Observed { streams: vec![(5, vec![("JOINED".into(), 1, 10, 10), ("LEFT".into(), 1, 10, 14)])] };
        assert!(check(&ops, &seen, EXPIRY, &[]).is_empty());
        assert!(check_gone(&ops, &seen, &[]).is_empty());
        let not_left = Observed { streams: vec![(5, vec![("JOINED".into(), 1, 10, 10)])] };
        assert_eq!(check_gone(&ops, &not_left, &[(1, 10)]).len(), 2);
    }
}
