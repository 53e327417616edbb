//! Following the history of a key range for a stream: after every apply,
//! the events from the next revision on, turned into the stream's responses
//! (one per revision, in revision order, no gap, no duplicate), as the etcd
//! Watch service does. WatchNodes and WatchAssignments are built on it.

use std::sync::Arc;

use tonic::Status;

use super::context::ApiContext;
use super::ApiError;
use crate::placement::PlacementError;
use crate::proto::mvccpb::Event;
use crate::raft::state_store::read_state;

/// Turns the events of one revision inside the range into a response (None:
/// nothing for this stream).
pub(super) type Respond<R> = Box<dyn FnMut(i64, &[&Event]) -> Option<R> + Send>;

/// One stream following the history of `[start, end)`.
pub(super) struct Follow<R> {
    pub ctx: Arc<ApiContext>,
    /// The key range followed.
    pub range: (Vec<u8>, Vec<u8>),
    /// Where the responses go; a client that stopped reading holds the
    /// follower back (bounded), one that went away ends it.
    pub out: tokio::sync::mpsc::Sender<Result<R, Status>>,
    pub respond: Respond<R>,
}

impl<R: Send + 'static> Follow<R> {
    /// Follows from revision `next` (0: the next one applied) until the
    /// client goes away, shutdown, or `next`'s history is compacted (answered
    /// with the compact revision).
    pub async fn run(mut self, next: i64) {
        let mut applied = self.ctx.node.applied_revision();
        let mut shutdown = self.ctx.shutdown.clone();
        let mut next = if next > 0 { next } else { read_state(self.ctx.node.state()).revision() + 1 };
        loop {
            match self.pending(next) {
                Err(compact_revision) => {
                    let refused = ApiError::from(PlacementError::Compacted { compact_revision });
                    let _ = self.out.send(Err(refused.into())).await;
                    return;
                }
                Ok((responses, following)) => {
                    next = following;
                    for resp in responses {
                        if self.out.send(Ok(resp)).await.is_err() {
                            return; // the client went away
                        }
                    }
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                _ = self.out.closed() => return,
                changed = applied.changed() => if changed.is_err() { return },
            }
        }
    }

    /// The responses for the revisions from `next` on, and the next revision
    /// to look at after them; `Err` with the compact revision when `next`'s
    /// history is gone.
    fn pending(&mut self, next: i64) -> Result<(Vec<R>, i64), i64> {
        let state = read_state(self.ctx.node.state());
        let current = state.revision();
        if next > current {
            return Ok((Vec::new(), next));
        }
        let (start, end) = (&self.range.0, &self.range.1);
        let mut responses = Vec::new();
        for (revision, events) in state.events_from(next)? {
            let inside: Vec<&Event> =
                events.iter().filter(|e| e.kv.as_ref().is_some_and(|kv| kv.key >= *start && kv.key < *end)).collect();
            if !inside.is_empty() {
                responses.extend((self.respond)(*revision, &inside));
            }
        }
        Ok((responses, current + 1))
    }
}
