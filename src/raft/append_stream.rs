//! Replication pipelined on one gRPC stream per follower (raft.v1
//! AppendStream), both ends.
//!
//! openraft's replication hands the network a stream of AppendEntries. Sent
//! one at a time, each paid a round trip, a new HTTP/2 stream and a server
//! task, and an entry-less message that only carried the commit index held
//! the next entries back until it was answered: a single client's put
//! waited on it for about a fifth of its latency. On a stream the leader
//! sends each message as soon as openraft makes it; the follower hands them
//! to openraft in order, and answers each once its entries are durable.
//!
//! Answers come back in the order of the messages, so the leader matches
//! them to what it sent by position. A message cut to [`MAX_APPEND_BYTES`]
//! is the last of its stream: openraft then knows only part of what it
//! handed over was accepted and starts a new stream for the rest.
//!
//! A link that stops carrying answers is noticed by their deadline: every
//! message must be answered within the RPC's time-to-live of being sent or
//! of the answer before it, whichever is later; an idle stream has none.
//!
//! [`MAX_APPEND_BYTES`]: super::network::MAX_APPEND_BYTES

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tonic::Status;

use super::codec;
use super::network::entries_that_fit;
use super::types::{NodeId, Raft, TypeConfig};
use crate::proto::raft::v1 as pb;
use crate::runtime::{self, Instant};

/// A message sent on a stream and not answered yet.
struct Sent {
    at: Instant,
    /// It was cut to fit, so it is the stream's last.
    cut: bool,
}

/// Messages handed to the transport and not sent yet. The transport holds
/// only this channel, never openraft's stream: a transport that keeps a
/// failed call's body alive (tonic does, after a connection error) would
/// otherwise keep openraft's replication state locked, and the next
/// stream to that follower would never send a thing.
const QUEUED: usize = 8;

/// The leader's side of one stream: it pulls openraft's messages, hands
/// them to the transport, and reads the follower's answers.
struct Session<S> {
    /// openraft's messages; `None` once it ended, or after a cut message.
    input: Option<S>,
    /// Where messages go to the transport; dropped with `input` (the
    /// transport then ends the stream's sending half).
    outbound: Option<tokio::sync::mpsc::Sender<pb::AppendEntriesRequest>>,
    unanswered: VecDeque<Sent>,
    ttl: Duration,
    /// Time from a message to its answer.
    round_trip: crate::metrics::Latency,
}

/// The messages a stream carries, as the transport reads them.
pub(super) struct Body(tokio::sync::mpsc::Receiver<pb::AppendEntriesRequest>);

impl Stream for Body {
    type Item = pb::AppendEntriesRequest;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<pb::AppendEntriesRequest>> {
        self.0.poll_recv(cx)
    }
}

/// Opening a stream: its answers, once the follower took it.
pub(super) type Opening =
    Pin<Box<dyn std::future::Future<Output = Result<tonic::Streaming<pb::AppendEntriesResponse>, Stopped>> + Send>>;

/// Why a stream's answers stopped.
pub(super) enum Stopped {
    /// No answer came in time (see the module).
    Silent(Duration),
    /// The stream failed with this status.
    Failed(Status),
    /// The follower answered what was not asked, or what does not decode.
    BadAnswer(String),
}

/// What happened next on a session.
enum Step {
    Answer(Option<Result<Option<pb::AppendEntriesResponse>, Status>>),
    /// openraft's next message (`None`: its stream ended), with room to queue it.
    Next(Option<AppendEntriesRequest<TypeConfig>>),
}

/// The leader's side: sends `input` on a stream that `open` opens once the
/// first message is there, and yields the follower's answers, in order, as
/// openraft's results. Ends after a refusal (conflict, higher vote), after
/// the answer to a cut message, or with the first failure (opening
/// included); dropping it drops `input`.
///
/// Opening only with a message in hand keeps openraft's pace: it delays a
/// message while a follower keeps failing, and a stream that could not even
/// be opened would otherwise be retried at once, in a loop, for as long as
/// the follower is down.
pub(super) fn answers<S, O>(
    input: S,
    ttl: Duration,
    round_trip: crate::metrics::Latency,
    open: O,
) -> impl Stream<Item = Result<StreamAppendResult<TypeConfig>, Stopped>> + Send
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    O: FnOnce(Body) -> Opening + Send + 'static,
{
    let (outbound, queued) = tokio::sync::mpsc::channel(QUEUED);
    let mut session =
        Session { input: Some(input), outbound: Some(outbound), unanswered: VecDeque::new(), ttl, round_trip };
    let opening = async move {
        let first = session.next_to_send().await?;
        session.send(Some(first));
        match open(Body(queued)).await {
            Ok(inbound) => Some(Ok((session, inbound, runtime::now()))),
            Err(stopped) => Some(Err(stopped)),
        }
    };
    futures::stream::once(opening).filter_map(std::future::ready).flat_map(|opened| match opened {
        Err(stopped) => futures::stream::once(std::future::ready(Err(stopped))).left_stream(),
        Ok(state) => answers_of(state).right_stream(),
    })
}

/// The answers of a stream that is open (see [`answers`]).
fn answers_of<S>(
    state: (Session<S>, tonic::Streaming<pb::AppendEntriesResponse>, Instant),
) -> impl Stream<Item = Result<StreamAppendResult<TypeConfig>, Stopped>> + Send
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    futures::stream::unfold(Some(state), |state| async move {
        let (mut session, mut inbound, mut last_answer) = state?;
        loop {
            let oldest = session.unanswered.front().map(|sent| sent.at.max(last_answer));
            let wait = oldest.map_or(session.ttl, |since| session.ttl.saturating_sub(runtime::now() - since));
            let step = tokio::select! {
                biased;
                answer = runtime::timeout(wait, inbound.message()) => Step::Answer(answer.ok()),
                next = session.next_to_send(), if session.input.is_some() => Step::Next(next),
            };
            let answer = match step {
                Step::Next(next) => {
                    session.send(next);
                    continue;
                }
                Step::Answer(None) => match oldest {
                    Some(since) if runtime::now() - since >= session.ttl => {
                        return Some((Err(Stopped::Silent(session.ttl)), None));
                    }
                    _ => continue,
                },
                Step::Answer(Some(Err(status))) => return Some((Err(Stopped::Failed(status)), None)),
                Step::Answer(Some(Ok(None))) => return None,
                Step::Answer(Some(Ok(Some(answer)))) => answer,
            };
            last_answer = runtime::now();
            let Some(sent) = session.unanswered.pop_front() else {
                return Some((Err(Stopped::BadAnswer("an answer to no message".into())), None));
            };
            session.round_trip.observe(last_answer - sent.at);
            return match codec::stream_result_from_pb(&answer) {
                Err(e) => Some((Err(Stopped::BadAnswer(e.to_string())), None)),
                Ok(result) => {
                    let more = result.is_ok() && !sent.cut;
                    Some((Ok(result), more.then_some((session, inbound, last_answer))))
                }
            };
        }
    })
}

impl<S> Session<S>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
{
    /// Waits for room in the transport's queue, then for openraft's next
    /// message. Cancel-safe: the room is only reserved again, and openraft's
    /// stream keeps a message it is making.
    async fn next_to_send(&mut self) -> Option<AppendEntriesRequest<TypeConfig>> {
        let (Some(input), Some(outbound)) = (self.input.as_mut(), self.outbound.as_ref()) else {
            return None;
        };
        // A closed queue means the transport gave up: the answers say why.
        outbound.reserve().await.ok()?;
        input.next().await
    }

    /// Queues `next` for the transport, or ends the sending half.
    fn send(&mut self, next: Option<AppendEntriesRequest<TypeConfig>>) {
        let (Some(rpc), Some(outbound)) = (next, self.outbound.as_ref()) else {
            (self.input, self.outbound) = (None, None);
            return;
        };
        let mut req = codec::append_req_to_pb(&rpc);
        let cut = entries_that_fit(&req).map(|fitting| req.entries.truncate(fitting as usize)).is_some()
            || runtime::buggify::buggify("append-stream-end");
        // `next_to_send` saw room, and only this session sends: there still is.
        if outbound.try_send(req).is_err() {
            (self.input, self.outbound) = (None, None);
            return;
        }
        self.unanswered.push_back(Sent { at: runtime::now(), cut });
        if cut {
            (self.input, self.outbound) = (None, None);
        }
    }
}

/// What a follower sends back on a stream.
pub type Answers = Pin<Box<dyn Stream<Item = Result<pb::AppendEntriesResponse, Status>> + Send>>;

/// The follower's side: hands the leader's messages to openraft in order and
/// answers each. A message that does not name `leader` (whom the peer gate
/// admitted) as its vote's leader, or does not decode, ends the stream with
/// its refusal, after the answers to the messages before it; `stop` ends
/// it after the answers to the messages before it. `contact` runs on each
/// answer other than "higher vote": the leader reached this node.
pub fn serve(
    raft: &Raft,
    leader: NodeId,
    inbound: tonic::Streaming<pb::AppendEntriesRequest>,
    stop: runtime::Shutdown,
    contact: impl Fn() + Send + 'static,
) -> Answers {
    let refusal = Arc::new(Mutex::new(None::<Status>));
    let refuse = refusal.clone();
    let requests = futures::stream::unfold(Some((inbound, stop)), move |state| {
        let refuse = refuse.clone();
        async move {
            let (mut inbound, mut stop) = state?;
            // A failed inbound stream (the leader went away) just ends it.
            let req = tokio::select! {
                biased;
                _ = stop.wait() => return None,
                req = inbound.message() => req.ok()??,
            };
            let refused = match req.vote.as_ref().map(|v| v.node_id) {
                None => Some(Status::invalid_argument("replication without a vote")),
                Some(named) if named != leader => Some(Status::permission_denied(format!(
                    "replication from node {leader} for leader {named}: only the leader replicates"
                ))),
                Some(_) => None,
            };
            let decoded = match refused {
                Some(status) => Err(status),
                None => codec::append_req_from_pb(req).map_err(|e| Status::invalid_argument(e.to_string())),
            };
            match decoded {
                Ok(rpc) => Some((rpc, Some((inbound, stop)))),
                Err(status) => {
                    *refuse.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                    None
                }
            }
        }
    });
    let answers = raft.stream_append(requests).map(move |answer| match answer {
        Ok(result) => {
            if !matches!(result, Err(openraft::raft::StreamAppendError::HigherVote(_))) {
                contact();
            }
            Ok(codec::stream_result_to_pb(&result))
        }
        Err(fatal) => Err(Status::internal(fatal.to_string())),
    });
    let refused = futures::stream::once(async move { refusal.lock().unwrap_or_else(|e| e.into_inner()).take() })
        .filter_map(|refused| std::future::ready(refused.map(Err)));
    Box::pin(answers.chain(refused))
}
