//! What every client-facing service shares: the node, the request size
//! limit, response headers and the path of a write through Raft.

use std::future::Future;
use std::sync::Arc;

use prost::Message;
use rand::Rng;

use super::tokens::Tokens;
use super::ApiError;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::response_op::Response as Op;
use crate::proto::etcdserverpb::{AlarmRequest, AlarmType};
use crate::proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeResponse,
    PutResponse, ResponseHeader, TxnResponse,
};
use crate::proto::raft::v1::command_result::Response as Applied;
use crate::proto::raft::v1::{command, Command, CommandResult};
use crate::raft::state_store::read_state;
use crate::raft::RaftNode;
use crate::runtime::Shutdown;
use crate::state::{Access, KvState, StateError};

/// A server-streaming response, as the generated service traits want it.
pub type ResponseStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send>>;

/// Shared by the services of one node.
pub struct ApiContext {
    /// The Raft node requests go through.
    pub node: Arc<RaftNode>,
    /// Requests larger than this are refused (etcd's --max-request-bytes).
    pub max_request_bytes: usize,
    /// Ends long-lived streams (watch, keepalive) when the node shuts down:
    /// the gRPC server waits for open streams before it stops.
    pub shutdown: Shutdown,
    /// Issues and verifies auth tokens.
    pub tokens: Tokens,
    /// With auth on, a client certificate's common name is the user of a
    /// request that carries no token (etcd's `--client-cert-auth`).
    pub client_cert_auth: bool,
    /// The space quota (etcd's `--quota-backend-bytes`).
    quota: Quota,
}

/// The space quota: writes that would grow the state machine's size on disk
/// (the Raft log aside) past `bytes`, or take the data dir's device below
/// [`DISK_RESERVE_BYTES`] free, raise the NOSPACE alarm instead (etcd's rule
/// for the quota; a full device would fail the log write on every member at
/// about the same time). Both are read from the engine at most every
/// [`Quota::REFRESH`].
struct Quota {
    bytes: u64,
    /// When the sizes were last read: (then, state bytes, device bytes free).
    known: std::sync::Mutex<Option<(crate::runtime::Instant, u64, Option<u64>)>>,
}

/// Bytes a member keeps free on its data dir's device: below it, it raises
/// NOSPACE and refuses writes that grow the store, so the writes already in
/// flight, RocksDB's flushes and compactions, and the deletes, compactions
/// and defragmentation that free space still have room. A write that meets
/// a full device instead stops that member's Raft (RocksDB turns read-only).
pub const DISK_RESERVE_BYTES: u64 = 64 * 1024 * 1024;

/// How often every member checks the free space of its device, also while
/// it takes no writes itself (a follower's device fills with the leader's).
pub const DISK_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Why this member is short of space for `cost` more bytes, if it is.
fn short_of_space(quota: u64, state_bytes: u64, free: Option<u64>, cost: u64) -> Option<String> {
    if state_bytes.saturating_add(cost) > quota {
        return Some(format!("space quota of {quota} bytes exceeded"));
    }
    match free {
        Some(free) if free < DISK_RESERVE_BYTES.saturating_add(cost) => {
            Some(format!("{free} bytes free on the data dir's device, below the {DISK_RESERVE_BYTES} kept free"))
        }
        _ => None,
    }
}

impl Quota {
    const REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

    /// Why `cost` more bytes would not fit, if they would not, by sizes
    /// read at most [`Self::REFRESH`] ago.
    fn exceeded_by(&self, node: &RaftNode, cost: u64) -> Option<String> {
        self.exceeded_as_of(node, cost, Self::REFRESH)
    }

    /// The same, by sizes read now.
    fn exceeded_now(&self, node: &RaftNode, cost: u64) -> Option<String> {
        self.exceeded_as_of(node, cost, std::time::Duration::ZERO)
    }

    fn exceeded_as_of(&self, node: &RaftNode, cost: u64, age: std::time::Duration) -> Option<String> {
        let now = crate::runtime::now();
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let (size, free) = match *known {
            Some((at, size, free)) if now - at < age => (size, free),
            _ => {
                // Unknown size (an engine error): let the write try the disk.
                let size = node.state_bytes().unwrap_or(0);
                let free = node.available_disk_bytes();
                *known = Some((now, size, free));
                (size, free)
            }
        };
        short_of_space(self.bytes, size, free, cost)
    }
}

/// What a request offers to prove who sends it, taken from it at once.
struct Credentials {
    /// An auth token, without its "Bearer " prefix.
    token: Option<String>,
    /// The common name of its client certificate (with client-cert auth).
    common_name: Option<String>,
    /// Where it came from, for the log.
    from: Option<std::net::SocketAddr>,
}

/// Who makes a request, as auth sees it: no user when auth is off or the
/// request carries no credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated user.
    pub user: Option<String>,
}

impl Caller {
    /// The user's name, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// Metadata keys a token comes in: etcd's clients send `token`, its gRPC
/// gateway `authorization`.
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

impl ApiContext {
    /// The context over `node`.
    pub fn new(node: Arc<RaftNode>, config: &crate::config::Config, shutdown: Shutdown) -> Arc<Self> {
        node.metrics().quota_bytes.set(i64::try_from(config.quota_backend_bytes()).unwrap_or(i64::MAX));
        Arc::new(Self {
            node,
            max_request_bytes: config.max_request_bytes,
            shutdown,
            tokens: Tokens::new(std::time::Duration::from_secs(config.auth_token_ttl)),
            client_cert_auth: config.client_cert_auth,
            quota: Quota { bytes: config.quota_backend_bytes(), known: std::sync::Mutex::new(None) },
        })
    }

    /// Who makes `req`: the user its token names or, with client
    /// certificate auth, its certificate's common name. A token that is not
    /// valid is refused (etcd's "invalid auth token"; clients then
    /// authenticate again), on an auth store caught up with the leader's:
    /// a token issued for a user this member has not applied yet is good
    /// (see `refusing_only_caught_up`).
    pub fn caller<T>(&self, req: &tonic::Request<T>) -> impl Future<Output = Result<Caller, ApiError>> + Send + '_ {
        self.identified(req, |_, _| Ok(()))
    }

    /// The caller of `req`, refused unless auth is off or it names a user
    /// (for calls that need no permission on keys, as etcd's lease calls).
    pub fn authenticated<T>(
        &self,
        req: &tonic::Request<T>,
    ) -> impl Future<Output = Result<Caller, ApiError>> + Send + '_ {
        self.identified(req, |state, caller| {
            if caller.user.is_none() && state.auth().enabled() {
                return Err(StateError::Auth(crate::state::AuthError::UserEmpty).into());
            }
            Ok(())
        })
    }

    /// The caller of `req`, refused unless auth is off or it is root.
    pub fn admin<T>(&self, req: &tonic::Request<T>) -> impl Future<Output = Result<Caller, ApiError>> + Send + '_ {
        self.identified(req, |state, caller| Ok(state.auth().check_admin(caller.user()).map_err(StateError::from)?))
    }

    /// The caller of `req`, refused unless `allowed` holds of it; both
    /// decided on an auth store caught up with the leader's when they
    /// refuse. What the request says is taken at once: the answer does not
    /// hold on to the request (a stream's is not `Sync`).
    fn identified<T>(
        &self,
        req: &tonic::Request<T>,
        allowed: impl Fn(&KvState, &Caller) -> Result<(), ApiError> + Send + Sync + 'static,
    ) -> impl Future<Output = Result<Caller, ApiError>> + Send + '_ {
        let credentials = self.credentials(req);
        async move {
            let credentials = credentials?;
            self.refusing_only_caught_up(|state| {
                let caller = self.identify(state, &credentials)?;
                allowed(state, &caller)?;
                Ok(caller)
            })
            .await
        }
    }

    /// What `req` offers to prove who sends it. A node whose Raft stopped
    /// (a fatal storage error) refuses every request here, serializable
    /// reads too: its state is no longer kept up.
    fn credentials<T>(&self, req: &tonic::Request<T>) -> Result<Credentials, ApiError> {
        if self.node.raft_stopped() {
            // Nothing was proposed: the answer says so (clients may retry
            // elsewhere; a bare "server stopped" left writes unknown).
            return Err(ApiError::Node(crate::raft::NodeError::StoppedBeforeProposing));
        }
        let token = TOKEN_KEYS.iter().find_map(|key| req.metadata().get(*key)).and_then(|v| v.to_str().ok());
        let token = token.map(|token| token.strip_prefix("Bearer ").unwrap_or(token).to_string());
        let common_name = if self.client_cert_auth && token.is_none() {
            crate::runtime::peer_certificates(req)
                .and_then(|chain| chain.first().and_then(|der| crate::raft::peer_gate::cert_names(der)))
                .and_then(|names| names.common_name)
        } else {
            None
        };
        Ok(Credentials { token, common_name, from: req.remote_addr() })
    }

    /// Who `credentials` make the caller on the auth store of `state`.
    fn identify(&self, state: &KvState, credentials: &Credentials) -> Result<Caller, ApiError> {
        let auth = state.auth();
        if !auth.enabled() {
            return Ok(Caller::default());
        }
        if let Some(token) = &credentials.token {
            return match self.tokens.verify(auth, token) {
                Ok(user) => Ok(Caller { user: Some(user) }),
                Err(refused) => {
                    tracing::debug!(from = ?credentials.from, "refused an invalid auth token");
                    Err(StateError::from(refused).into())
                }
            };
        }
        let user = credentials.common_name.clone().filter(|cn| auth.user(cn).is_some());
        Ok(Caller { user })
    }

    /// Refuses unless auth is off or `caller` may `access` `[key, range_end)`,
    /// on an auth store caught up with the leader's (see
    /// `refusing_only_caught_up`).
    pub async fn check(&self, caller: &Caller, access: Access, key: &[u8], range_end: &[u8]) -> Result<(), ApiError> {
        self.refusing_only_caught_up(|state| {
            Ok(state.auth().check(caller.user(), access, key, range_end).map_err(StateError::from)?)
        })
        .await
    }

    /// Runs one gRPC call's `work`, counting it and its latency under `method`.
    pub async fn observe<T>(
        &self,
        method: &'static str,
        work: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        let started = crate::runtime::now();
        let result = work.await;
        let code = result.as_ref().err().map_or("OK", |s| crate::metrics::code_name(s.code()));
        self.node.metrics().request(method, code, crate::runtime::now() - started);
        result
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.node.cluster_id(),
            member_id: self.node.id,
            revision,
            raft_term: self.node.term(),
        }
    }

    /// Refuses a request above the size limit.
    pub fn check_size(&self, req: &impl Message) -> Result<(), ApiError> {
        if req.encoded_len() > self.max_request_bytes {
            return Err(ApiError::RequestTooLarge);
        }
        Ok(())
    }

    /// Checks and proposes `caller`'s write; the size limit applies to what
    /// is proposed. Its permissions are checked here, against this member's
    /// auth store, and the command carries that store's revision: if auth
    /// changed by the time it applies, it is refused there.
    pub async fn propose(&self, caller: &Caller, request: command::Request) -> Result<CommandResult, ApiError> {
        let auth_revision = self
            .refusing_only_caught_up(|state| {
                state.authorize(caller.user(), &request)?;
                Ok(state.auth().revision())
            })
            .await?;
        self.propose_checked(auth_revision, request).await
    }

    /// `decide` on this member's auth store, where a refusal stands only
    /// once the store has caught up with the leader's: a refused caller is
    /// decided again after a read barrier. A member that had not yet
    /// applied a grant the leader acknowledged refused writes the caller was
    /// allowed (the simulator's grant windows: 30 of the 100 auth seeds in
    /// 10000..10399, 41 in 60000..60399), as one that had not yet applied a
    /// new user refuses that user's token; etcd refuses writes only at
    /// apply. When the barrier fails, its error is the answer: nothing was
    /// proposed, as a write there could not have been. Decisions that pass
    /// cost nothing more.
    async fn refusing_only_caught_up<T>(
        &self,
        decide: impl Fn(&KvState) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let here = decide(&read_state(self.node.state()));
        if let Ok(allowed) = here {
            return Ok(allowed);
        }
        self.read_caught_up(decide).await?
    }

    /// Proposes a write whose callers' permissions were checked against this
    /// member's auth store at `auth_revision` (a batch made for several
    /// callers: the offset committer's): if auth changed by the time it
    /// applies, it is refused there, as [`ApiContext::propose`]'s is. The
    /// quota and the size limit apply.
    pub async fn propose_checked(
        &self,
        auth_revision: u64,
        request: command::Request,
    ) -> Result<CommandResult, ApiError> {
        self.check_quota(&request).await?;
        self.propose_command(Command {
            auth_revision: Some(auth_revision),
            alarm_disarms: None,
            request: Some(request),
        })
        .await
    }

    /// Refuses a write that grows the store past the quota (NOSPACE).
    async fn check_quota(&self, request: &command::Request) -> Result<(), ApiError> {
        if crate::state::grows(request) {
            let cost = request.encoded_len() as u64;
            // A short reading is taken again before it raises the alarm.
            if self.quota.exceeded_by(&self.node, cost).is_some()
                && self.raise_nospace_if(|| self.quota.exceeded_now(&self.node, cost)).await
            {
                return Err(StateError::NoSpace.into());
            }
        }
        Ok(())
    }

    /// Raises this member's NOSPACE alarm if `short` (a reading of the
    /// sizes, taken now) says why space is short; whether the alarm is
    /// raised (or was). Once: while it is raised, writes that grow the store
    /// are refused at apply anyway.
    async fn raise_nospace_if(&self, short: impl FnOnce() -> Option<String>) -> bool {
        // The disarm count first, the reading after it: a raise decided on
        // a reading from before a disarm is refused at apply.
        let disarms = {
            let state = read_state(self.node.state());
            if state.out_of_space() {
                return true;
            }
            state.alarm_disarms()
        };
        let Some(why) = short() else { return false };
        tracing::warn!(why, "out of space");
        self.raise(self.node.id, AlarmType::Nospace, disarms).await;
        true
    }

    /// Every [`DISK_CHECK_INTERVAL`] until `stop`: raises NOSPACE once this
    /// member's device has less than [`DISK_RESERVE_BYTES`] free.
    pub async fn watch_disk_space(self: Arc<Self>, mut stop: Shutdown) {
        loop {
            tokio::select! {
                biased;
                _ = stop.wait() => return,
                _ = crate::runtime::sleep(DISK_CHECK_INTERVAL) => {}
            }
            self.raise_nospace_if(|| short_of_space(u64::MAX, 0, self.node.available_disk_bytes(), 0)).await;
        }
    }

    /// The corruption check (see `raft::corruption`): once at startup,
    /// after `settle`, from this member; then every `interval` (zero:
    /// never) from the leader. Raises CORRUPT for each member found corrupt.
    pub async fn watch_corruption(
        self: Arc<Self>,
        settle: std::time::Duration,
        interval: std::time::Duration,
        mut stop: Shutdown,
    ) {
        let mut wait = settle;
        loop {
            tokio::select! {
                biased;
                _ = stop.wait() => return,
                _ = crate::runtime::sleep(wait) => {}
            }
            let first = wait == settle;
            if first || self.node.is_leader() {
                let disarms = read_state(self.node.state()).alarm_disarms();
                for member_id in crate::raft::corruption::check(&self.node).await {
                    self.raise(member_id, AlarmType::Corrupt, disarms).await;
                }
            }
            if interval.is_zero() {
                return;
            }
            wait = interval;
        }
    }

    /// Raises `alarm` for `member_id` unless it is raised already. The
    /// condition was read after `disarms` alarms had been disarmed: if more
    /// are by the time the raise applies, it is refused (the reading may
    /// predate the fix a disarm answered), and the next reading decides.
    async fn raise(&self, member_id: u64, alarm: AlarmType, disarms: u64) {
        if read_state(self.node.state()).alarms().iter().any(|a| a.member_id == member_id && a.alarm == alarm as i32) {
            return;
        }
        tracing::error!(member_id, alarm = alarm.as_str_name(), "raising an alarm");
        let request = AlarmRequest { action: AlarmAction::Activate as i32, member_id, alarm: alarm as i32 };
        let command = Command {
            auth_revision: None,
            alarm_disarms: Some(disarms),
            request: Some(command::Request::Alarm(request)),
        };
        if let Err(e) = self.propose_command(command).await {
            tracing::warn!(cause = %e, member_id, "the alarm was not raised");
        }
    }

    /// Proposes the server's own write (lease expiry on behalf of nobody):
    /// not checked against auth.
    pub async fn propose_as_server(&self, request: command::Request) -> Result<CommandResult, ApiError> {
        self.propose_command(Command { auth_revision: None, alarm_disarms: None, request: Some(request) }).await
    }

    async fn propose_command(&self, command: Command) -> Result<CommandResult, ApiError> {
        self.check_size(&command)?;
        // Refuse before a Raft round trip what every replica would refuse.
        KvState::validate(&command)?;
        Ok(self.node.propose(command).await?)
    }

    /// Runs `read` on this member's state once it has applied what the
    /// leader committed (a linearizable read).
    pub async fn read_caught_up<T>(&self, read: impl FnOnce(&KvState) -> T) -> Result<T, ApiError> {
        self.node.read_barrier().await?;
        Ok(read(&read_state(self.node.state())))
    }
}

impl ApiContext {
    /// Proposes a write and answers with its response, header filled in.
    pub async fn write<T: WriteResponse>(
        &self,
        caller: &Caller,
        request: command::Request,
    ) -> Result<tonic::Response<T>, ApiError> {
        let CommandResult { revision, response } = self.propose(caller, request).await?;
        match response.map(T::pick) {
            Some(Ok(mut resp)) => {
                resp.set_header(self.header(revision));
                Ok(tonic::Response::new(resp))
            }
            Some(Err(other)) => Err(ApiError::UnexpectedResult(format!("{other:?}"))),
            None => Err(ApiError::UnexpectedResult("none".to_string())),
        }
    }
}

impl ApiContext {
    /// Grants a lease of `ttl` seconds with id `id`, or with an id picked here
    /// when `id` is 0: the proposer picks it, so every replica applies the
    /// same one, and a random pick that collides is retried with another.
    pub async fn grant_lease(
        &self,
        caller: &Caller,
        ttl: i64,
        id: i64,
    ) -> Result<tonic::Response<LeaseGrantResponse>, ApiError> {
        let attempts = if id == 0 { 3 } else { 1 };
        for attempt in 1..=attempts {
            let id = if id == 0 { crate::runtime::rng().gen_range(1..i64::MAX) } else { id };
            match self.write(caller, command::Request::LeaseGrant(LeaseGrantRequest { ttl, id })).await {
                Err(ApiError::State(StateError::LeaseExists)) if attempt < attempts => continue,
                answer => return answer,
            }
        }
        Err(ApiError::State(StateError::LeaseExists))
    }
}

/// A response to a write, as carried in the apply result.
pub trait WriteResponse: Sized {
    /// This kind of response out of an apply result (or the result back).
    fn pick(applied: Applied) -> Result<Self, Applied>;
    /// Sets the header (and those of nested responses, as etcd does).
    fn set_header(&mut self, header: ResponseHeader);
}

macro_rules! write_response {
    ($($variant:ident => $ty:ty),* $(,)?) => {$(
        impl WriteResponse for $ty {
            fn pick(applied: Applied) -> Result<Self, Applied> {
                match applied {
                    Applied::$variant(resp) => Ok(resp),
                    other => Err(other),
                }
            }
            fn set_header(&mut self, header: ResponseHeader) {
                self.header = Some(header);
            }
        }
    )*};
}

write_response!(
    Put => PutResponse,
    DeleteRange => DeleteRangeResponse,
    Compaction => CompactionResponse,
    LeaseGrant => LeaseGrantResponse,
    LeaseRevoke => LeaseRevokeResponse,
    Alarm => AlarmResponse,
);

impl WriteResponse for TxnResponse {
    fn pick(applied: Applied) -> Result<Self, Applied> {
        match applied {
            Applied::Txn(resp) => Ok(resp),
            other => Err(other),
        }
    }

    fn set_header(&mut self, header: ResponseHeader) {
        self.header = Some(header);
        for op in &mut self.responses {
            match &mut op.response {
                Some(Op::ResponseRange(r)) => r.header = Some(header),
                Some(Op::ResponsePut(r)) => r.header = Some(header),
                Some(Op::ResponseDeleteRange(r)) => r.header = Some(header),
                Some(Op::ResponseTxn(t)) => t.set_header(header),
                None => {}
            }
        }
    }
}

/// The items of `rx` as a stream (a gRPC streaming response).
pub fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_short_of_space_past_the_quota_or_into_the_device_reserve() {
        const MIB: u64 = 1024 * 1024;
        let reserve = DISK_RESERVE_BYTES;
        // (quota, state bytes, free on the device, cost, short?)
        let cases = [
            (100 * MIB, 10 * MIB, None, MIB, false),
            (100 * MIB, 99 * MIB, None, MIB, false),
            (100 * MIB, 99 * MIB, None, MIB + 1, true),
            (100 * MIB, 10 * MIB, Some(reserve + MIB), MIB, false),
            (100 * MIB, 10 * MIB, Some(reserve + MIB), MIB + 1, true),
            (100 * MIB, 10 * MIB, Some(0), 0, true),
            (100 * MIB, u64::MAX, Some(u64::MAX), 1, true),
        ];
        for (quota, state, free, cost, short) in cases {
            assert_eq!(short_of_space(quota, state, free, cost).is_some(), short, "{quota} {state} {free:?} {cost}");
        }
    }
}
