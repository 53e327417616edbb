//! Proposal batching. Every normal log entry costs the leader one append
//! and one fsync, and each follower one more: under load that, not the
//! network, bounds writes (20,487 leader fsyncs for 20,000 puts before this
//! module). Commands that arrive while proposals are in flight wait, and the
//! next proposal carries all of them in one entry. The state machine applies
//! them in order, each with its own revision and result, exactly as if each
//! had had an entry of its own. A lone caller is proposed at once, so one
//! client's latency does not change.
//!
//! Nothing here decides what happens to a command that was not applied: an
//! error of the whole proposal goes to each of its callers, who handle it as
//! they would a `client_write` of their own (forward to the leader, retry,
//! give up).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, Fatal, RaftError};

use super::types::{ApplyResult, Raft, TypeConfig};
use crate::metrics::Metrics;
use crate::proto::raft::v1::{Command, Proposal};
use crate::runtime;

/// What a caller gets: its command's result, or why the proposal that
/// carried it was not applied.
pub(super) type Outcome = Result<ApplyResult, RaftError<TypeConfig, ClientWriteError<TypeConfig>>>;

/// Proposals in flight at once. With two, the next entry could be appended
/// while the last one replicates; but the two cores are the limit, not the
/// log's idle time, and fewer, larger proposals cost less CPU per command:
/// 100 clients put 8.6-9.0k/s with one in flight, 7.6k/s with two and
/// 7.3k/s with four (`placement-bench --clients 100 put`, 3 nodes).
const IN_FLIGHT: usize = 1;
/// Most commands in one proposal.
pub(super) const MAX_COMMANDS: usize = 512;
/// Most encoded bytes in one proposal (a single larger command still goes
/// alone): it keeps an AppendEntries message, which carries many entries,
/// well below the raft.v1 service's decoding limit.
pub(super) const MAX_BYTES: usize = 1024 * 1024;

/// Commands waiting for the next proposal.
type ProposalBatch = super::batch::Queue<Caller>;

struct Caller {
    command: Command,
    bytes: usize,
    /// The leader term the command was decided in, if it must not be
    /// proposed in another (a lease expiry: see [`Proposer::client_write_in_term`]).
    term: Option<u64>,
    reply: tokio::sync::oneshot::Sender<Outcome>,
}

/// Proposes commands on this node's Raft, batched (see the module).
pub(super) struct Proposer {
    raft: Raft,
    /// Commands waiting for the next proposal.
    waiting: Arc<ProposalBatch>,
    metrics: Arc<Metrics>,
    request_timeout: Duration,
}

impl Proposer {
    pub(super) fn new(raft: Raft, metrics: Arc<Metrics>, request_timeout: Duration) -> Self {
        Self { raft, waiting: Default::default(), metrics, request_timeout }
    }

    /// Proposes `command` on this node's Raft, together with whatever other
    /// commands wait (see the module).
    pub(super) async fn client_write(&self, command: Command) -> Outcome {
        self.queue(command, None).await
    }

    /// Proposes `command` as [`Proposer::client_write`] does, only while
    /// this node leads in `term`: otherwise it answers "not the leader"
    /// without proposing it. A lease expiry decided on one term's deadlines
    /// must not be proposed in a later term, whose deadlines started afresh
    /// and whose keepalives it would break (10,000-seed soak of 2026-12-05,
    /// seed 204267: decided in term 1, queued behind a stuck proposal, proposed
    /// and applied in term 4 after a keepalive the same node acknowledged).
    pub(super) async fn client_write_in_term(&self, command: Command, term: u64) -> Outcome {
        self.queue(command, Some(term)).await
    }

    async fn queue(&self, command: Command, term: Option<u64>) -> Outcome {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let bytes = prost::Message::encoded_len(&command);
        match self.waiting.push(Caller { command, bytes, term, reply }, IN_FLIGHT) {
            Ok(true) => {
                let task =
                    proposals(self.raft.clone(), self.waiting.clone(), self.metrics.clone(), self.request_timeout);
                runtime::spawn_detached("proposals", task);
            }
            Ok(false) => {}
            Err(_) => return Ok(Err(crate::state::StateError::TooManyRequests)),
        }
        rx.await.unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
    }
}

/// Makes proposals while commands wait; each takes the oldest ones, up to
/// the limits.
///
/// A proposal waits for openraft at most `request_timeout`. openraft 0.9 can
/// leave a `client_write` unanswered for good: a deposed leader's entry that
/// a snapshot replaced, rather than a conflicting entry, keeps its responder
/// until that log index is applied again. Waiting for it stopped every later
/// proposal of the node (simulator seed 1415). By the time it elapses every
/// caller of the proposal has given up, since each waits at most
/// `request_timeout` from before it queued; their outcome stays unknown, as
/// a timeout's should.
async fn proposals(raft: Raft, batch: Arc<ProposalBatch>, metrics: Arc<Metrics>, request_timeout: Duration) {
    while let Some(callers) = batch.next_batch(take_batch) {
        let callers = in_their_term(&raft, still_wanted(callers));
        if callers.is_empty() {
            continue;
        }
        let mut replies = Vec::with_capacity(callers.len());
        let mut commands = Vec::with_capacity(callers.len());
        for caller in callers {
            commands.push(caller.command);
            replies.push(caller.reply);
        }
        let count = commands.len() as u64;
        let Ok(written) = runtime::timeout(request_timeout, raft.client_write(Proposal { commands }.into())).await
        else {
            tracing::warn!(commands = count, "proposal unanswered after {request_timeout:?}; going on with the next");
            continue;
        };
        match written {
            Ok(response) => {
                metrics.proposals.inc();
                metrics.proposed_commands.inc_by(count);
                let mut results = response.data.into_iter();
                for reply in replies {
                    // The state machine answers every command of a proposal;
                    // a missing answer would be a bug, reported as a stop.
                    let _ = reply.send(results.next().ok_or(RaftError::Fatal(Fatal::Panicked)));
                }
            }
            Err(e) => {
                if replies.len() > 1 {
                    runtime::coverage::reached("proposal-batch-cut");
                }
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The callers whose command may be proposed now: those bound to a term
/// (see [`Proposer::client_write_in_term`]) only while this node leads in
/// it; the others are answered "not the leader". A command checked here is
/// handed to openraft at once, and openraft takes it in the term it leads
/// in then or refuses it: a new term needs an election, which a queued
/// write does not outwait.
fn in_their_term(raft: &Raft, callers: Vec<Caller>) -> Vec<Caller> {
    use openraft::async_runtime::WatchReceiver as _;
    if callers.iter().all(|c| c.term.is_none()) {
        return callers;
    }
    let leading_in = {
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        (m.current_leader == Some(m.id) && m.state.is_leader()).then_some(m.current_term)
    };
    in_term(leading_in, callers)
}

/// [`in_their_term`] for a node that leads in `leading_in` (`None`: it
/// does not lead).
fn in_term(leading_in: Option<u64>, callers: Vec<Caller>) -> Vec<Caller> {
    callers
        .into_iter()
        .filter_map(|caller| match caller.term {
            Some(term) if leading_in != Some(term) => {
                runtime::coverage::reached_in_scenario("proposal-refused-in-a-later-term");
                let not_leader = openraft::error::ForwardToLeader::empty();
                let _ = caller.reply.send(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(not_leader))));
                None
            }
            _ => Some(caller),
        })
        .collect()
}

/// The callers still waiting for their answer: a command whose caller gave
/// up (its deadline passed, or it hung up) is never proposed. Its outcome
/// was unknown to the caller, and is now "did not happen".
fn still_wanted(callers: Vec<Caller>) -> Vec<Caller> {
    callers.into_iter().filter(|c| !c.reply.is_closed()).collect()
}

/// The oldest waiting callers that fit in one proposal (at least one).
fn take_batch(callers: &mut VecDeque<Caller>) -> Vec<Caller> {
    let most = if runtime::buggify::buggify("proposal-batch-small") { 2 } else { MAX_COMMANDS };
    super::batch::take_fitting(callers, most, MAX_BYTES, |c| c.bytes, |_| true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::PutRequest;
    use crate::proto::raft::v1::command::Request;

    fn caller(value_len: usize) -> Caller {
        let command = Command {
            auth_revision: None,
            alarm_disarms: None,
            request: Some(Request::Put(PutRequest {
                key: b"k".to_vec(),
                value: vec![0; value_len],
                ..Default::default()
            })),
        };
        let bytes = prost::Message::encoded_len(&command);
        Caller { command, bytes, term: None, reply: tokio::sync::oneshot::channel().0 }
    }

    #[test]
    fn a_batch_takes_the_oldest_callers_up_to_the_command_limit() {
        let mut callers: VecDeque<_> = (0..MAX_COMMANDS + 3).map(|_| caller(8)).collect();
        assert_eq!(take_batch(&mut callers).len(), MAX_COMMANDS);
        assert_eq!(take_batch(&mut callers).len(), 3);
        assert!(take_batch(&mut callers).is_empty());
    }

    #[test]
    fn a_batch_stays_under_the_byte_limit_but_a_large_command_goes_alone() {
        let mut callers: VecDeque<_> = [MAX_BYTES / 2, MAX_BYTES / 2, 2 * MAX_BYTES, 10].map(caller).into();
        assert_eq!(take_batch(&mut callers).len(), 1, "two halves plus their keys exceed the limit");
        assert_eq!(take_batch(&mut callers).len(), 1);
        assert_eq!(take_batch(&mut callers).len(), 1, "a command over the limit is proposed alone");
        assert_eq!(take_batch(&mut callers).len(), 1);
    }

    /// Soak seeds 203590, 203653 and 204267: a lease expiry decided in term
    /// 1 waited in the queue and was proposed in term 4, after the same
    /// node, leading again with fresh deadlines, had acknowledged a
    /// keepalive. A command bound to a term goes only in that term; the
    /// others are answered "not the leader" at once.
    #[test]
    fn a_command_bound_to_a_term_is_proposed_only_while_leading_in_it() {
        let bound = |term| {
            let (reply, answer) = tokio::sync::oneshot::channel();
            (Caller { term: Some(term), reply, ..caller(1) }, answer)
        };
        let (decided_in_1, mut answer_1) = bound(1);
        let (decided_in_4, mut answer_4) = bound(4);
        let (free, _answer) = tokio::sync::oneshot::channel();
        let unbound = Caller { reply: free, ..caller(2) };
        let left = in_term(Some(4), vec![decided_in_1, decided_in_4, unbound]);
        assert_eq!(left.iter().map(|c| c.term).collect::<Vec<_>>(), [Some(4), None]);
        assert!(
            matches!(answer_1.try_recv(), Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))))),
            "the command of term 1 was not answered \"not the leader\""
        );
        assert!(answer_4.try_recv().is_err(), "the command of the current term was answered");
        let (decided_in_4, _) = bound(4);
        assert!(in_term(None, vec![decided_in_4]).is_empty(), "a node that does not lead proposed it");
    }

    #[test]
    fn a_command_whose_caller_gave_up_is_not_proposed() {
        let (gone, kept) = (caller(1), caller(2));
        let (reply, _waiting) = tokio::sync::oneshot::channel();
        let kept = Caller { reply, ..kept };
        let left = still_wanted(vec![gone, kept]);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].bytes, caller(2).bytes);
    }
}
