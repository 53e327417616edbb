//! etcd's `Watch` service: one bidirectional stream carries many watchers.
//!
//! Watchers pull from the replicated history rather than being pushed to:
//! after each apply the node bumps its applied revision, and every stream's
//! task reads the events from each of its watchers' next revision on. So
//! events come in revision order, with no gap and no duplicate, every event
//! of one revision (one txn) in one response; a slow client only slows its
//! own stream (the bounded channel to it fills up), never apply; and a
//! watcher that falls behind a compaction is canceled with the compact
//! revision, as etcd does. Every node serves watches from its applied state.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::context::{receiver_stream, ApiContext, Caller};
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::Event;
use crate::raft::state_store::read_state;
use crate::runtime;
use crate::state::{Access, KeyRange, KvState};

/// Responses buffered for a client before its stream stops reading history.
const STREAM_BUFFER: usize = 64;
/// A response gathers whole revisions until it holds at least this many events.
pub const EVENTS_PER_RESPONSE: usize = 1000;
/// etcd's error for a watch id already used on the stream.
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// etcd's cancel reason for a watch on keys the user may not read (the
/// text of its gRPC error, as etcd sends it).
const PERMISSION_DENIED: &str = "rpc error: code = PermissionDenied desc = etcdserver: permission denied";

/// The Watch service of one node.
pub struct WatchService {
    ctx: Arc<ApiContext>,
    /// How often a `progress_notify` watcher with nothing to report hears the revision.
    progress_interval: Duration,
}

impl WatchService {
    /// The service; `progress_interval` is etcd's 10 minutes by default.
    pub fn new(ctx: Arc<ApiContext>, progress_interval: Duration) -> Self {
        Self { ctx, progress_interval }
    }
}

/// One watcher of a stream: what it wants and how far it has read. Pure:
/// it reads a [`KvState`] and nothing else (the fuzz target
/// `client_requests` drives it with any create request).
#[derive(Debug, Clone)]
pub struct Watcher {
    range: KeyRange,
    /// The next revision to look at: everything before it was delivered.
    next: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    /// Whether anything was sent since the last progress tick.
    sent_since_tick: bool,
}

/// What a watcher reads next from the history.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Nothing new for it up to the current revision.
    UpToDate,
    /// Events of whole revisions, in order, and the revision the response's
    /// header carries (the last one read when the batch is full).
    Events { events: Vec<Event>, header_revision: i64 },
    /// Its next revision is behind the compaction: it must be canceled.
    Compacted { compact_revision: i64 },
}

impl Watcher {
    /// The watcher a create request asks for, on a store at revision `current`.
    pub fn new(create: &WatchCreateRequest, current: i64) -> Self {
        let filters: Vec<Option<FilterType>> = create.filters.iter().map(|f| FilterType::try_from(*f).ok()).collect();
        Self {
            range: KeyRange::new(&create.key, &create.range_end),
            next: if create.start_revision > 0 { create.start_revision } else { current + 1 },
            no_put: filters.contains(&Some(FilterType::Noput)),
            no_delete: filters.contains(&Some(FilterType::Nodelete)),
            prev_kv: create.prev_kv,
            progress_notify: create.progress_notify,
            sent_since_tick: false,
        }
    }

    /// Whether `event` is one this watcher reports.
    pub fn wants(&self, event: &Event) -> bool {
        let is_put = event.r#type == EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return false;
        }
        event.kv.as_ref().is_some_and(|kv| self.range.contains(&kv.key))
    }

    /// Reads what `state` holds for this watcher and moves it past what it
    /// read: whole revisions until at least [`EVENTS_PER_RESPONSE`] events,
    /// else everything up to the current revision.
    pub fn read(&mut self, state: &KvState) -> Next {
        let current = state.revision();
        if self.next > current {
            return Next::UpToDate;
        }
        let Ok(events) = state.events_from(self.next) else {
            crate::runtime::coverage::reached("watch-canceled-by-compaction");
            return Next::Compacted { compact_revision: state.compact_revision() };
        };
        let mut selected = Vec::new();
        let mut last = self.next - 1;
        for (revision, revision_events) in events {
            selected.extend(revision_events.iter().filter(|e| self.wants(e)).map(|e| {
                let mut e = e.clone();
                if !self.prev_kv {
                    e.prev_kv = None;
                }
                e
            }));
            last = *revision;
            if selected.len() >= EVENTS_PER_RESPONSE {
                break;
            }
        }
        let full = selected.len() >= EVENTS_PER_RESPONSE;
        // Revisions without a kept event (none for this range, or no write)
        // are passed over up to the current one.
        self.next = if full { last + 1 } else { current + 1 };
        if selected.is_empty() {
            return Next::UpToDate;
        }
        self.sent_since_tick = true;
        Next::Events { events: selected, header_revision: if full { last } else { current } }
    }

    /// The next revision it will read.
    pub fn next_revision(&self) -> i64 {
        self.next
    }
}

/// The state of one watch stream.
struct WatchStream {
    ctx: Arc<ApiContext>,
    watchers: BTreeMap<i64, Watcher>,
    /// The next id to hand out when the client names none.
    next_auto_id: i64,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    /// Who opened the stream: each watch it creates needs read access.
    caller: Caller,
}

type WatchResponseStream = super::context::ResponseStream<WatchResponse>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchResponseStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        self.ctx
            .observe("Watch/Watch", async move {
                let caller = self.ctx.caller(&req).await?;
                let (out, rx) = mpsc::channel(STREAM_BUFFER);
                let stream =
                    WatchStream { ctx: self.ctx.clone(), watchers: BTreeMap::new(), next_auto_id: 0, out, caller };
                runtime::spawn_detached("watch-stream", stream.run(req.into_inner(), self.progress_interval));
                let stream: Self::WatchStream = Box::pin(receiver_stream(rx));
                Ok(Response::new(stream))
            })
            .await
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let open = self.watchers.len() as u64;
        self.ctx.node.metrics().watchers.dec_by(open as i64);
    }
}

impl WatchStream {
    /// Forgets watcher `id`; whether it existed.
    fn remove(&mut self, id: i64) -> bool {
        let existed = self.watchers.remove(&id).is_some();
        if existed {
            self.ctx.node.metrics().watchers.dec();
        }
        existed
    }

    async fn run(mut self, mut requests: Streaming<WatchRequest>, progress_interval: Duration) {
        let mut applied = self.ctx.node.applied_revision();
        let mut next_tick = runtime::now() + progress_interval;
        let mut shutdown = self.ctx.shutdown.clone();
        // A client that closed its sending side (etcd's grpc-gateway does,
        // after the one create request of a `curl -d`) still gets its
        // events, as from etcd: the stream ends when the client hangs up.
        let mut sending = true;
        loop {
            let tick = runtime::sleep(next_tick.saturating_duration_since(runtime::now()));
            tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                req = requests.next(), if sending => match req {
                    Some(Ok(req)) => {
                        if self.handle(req).await.is_err() {
                            return;
                        }
                    }
                    None => sending = false,
                    // The connection broke.
                    Some(Err(_)) => return,
                },
                changed = applied.changed() => {
                    if changed.is_err() {
                        return; // the node is gone
                    }
                    if self.deliver().await.is_err() {
                        return;
                    }
                }
                _ = tick => {
                    next_tick = runtime::now() + progress_interval;
                    if self.notify_progress().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), ()> {
        self.out.send(Ok(resp)).await.map_err(|_| ())
    }

    fn applied_revision(&self) -> i64 {
        read_state(self.ctx.node.state()).revision()
    }

    async fn handle(&mut self, req: WatchRequest) -> Result<(), ()> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                if self.remove(cancel.watch_id) {
                    let header = Some(self.ctx.header(self.applied_revision()));
                    self.send(WatchResponse {
                        header,
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Bring every watcher up to date first: the revision in the
                // progress response promises nothing older is still to come.
                self.deliver().await?;
                let header = Some(self.ctx.header(self.applied_revision()));
                self.send(WatchResponse { header, watch_id: -1, ..Default::default() }).await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, create: WatchCreateRequest) -> Result<(), ()> {
        let current = self.applied_revision();
        let header = Some(self.ctx.header(current));
        let id = if create.watch_id != 0 {
            create.watch_id
        } else {
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            self.next_auto_id
        };
        let permitted = read_state(self.ctx.node.state())
            .auth()
            .check(self.caller.user(), Access::Read, &create.key, &create.range_end)
            .is_ok();
        let refusal = if !permitted {
            Some(PERMISSION_DENIED)
        } else if self.watchers.contains_key(&id) {
            Some(DUPLICATE_ID)
        } else {
            None
        };
        if let Some(reason) = refusal {
            let refused = WatchResponse {
                header,
                watch_id: id,
                created: true,
                canceled: true,
                cancel_reason: reason.to_string(),
                ..Default::default()
            };
            return self.send(refused).await;
        }
        self.watchers.insert(id, Watcher::new(&create, current));
        self.ctx.node.metrics().watchers.inc();
        self.send(WatchResponse { header, watch_id: id, created: true, ..Default::default() }).await?;
        // A start revision in the past has events to replay right away.
        self.deliver().await
    }

    /// Sends every watcher what happened since its next revision.
    async fn deliver(&mut self) -> Result<(), ()> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            while let Some(batch) = self.next_batch(id) {
                self.send(batch).await?;
            }
        }
        Ok(())
    }

    /// The next response for watcher `id`, reading the history; `None` when
    /// it is up to date. A watcher behind the compaction is canceled here.
    fn next_batch(&mut self, id: i64) -> Option<WatchResponse> {
        let ctx = self.ctx.clone();
        let state = read_state(ctx.node.state());
        let current = state.revision();
        let next = self.watchers.get_mut(&id)?.read(&state);
        drop(state);
        match next {
            Next::UpToDate => None,
            Next::Events { events, header_revision } => Some(WatchResponse {
                header: Some(ctx.header(header_revision)),
                watch_id: id,
                events,
                ..Default::default()
            }),
            Next::Compacted { compact_revision } => {
                self.remove(id);
                Some(WatchResponse {
                    header: Some(ctx.header(current)),
                    watch_id: id,
                    canceled: true,
                    compact_revision,
                    ..Default::default()
                })
            }
        }
    }

    /// Tells each `progress_notify` watcher that heard nothing lately the revision.
    async fn notify_progress(&mut self) -> Result<(), ()> {
        self.deliver().await?;
        let header = Some(self.ctx.header(self.applied_revision()));
        let quiet: Vec<i64> = self
            .watchers
            .iter_mut()
            .filter_map(|(id, w)| {
                let quiet = w.progress_notify && !w.sent_since_tick;
                w.sent_since_tick = false;
                quiet.then_some(*id)
            })
            .collect();
        for watch_id in quiet {
            self.send(WatchResponse { header, watch_id, ..Default::default() }).await?;
        }
        Ok(())
    }
}
