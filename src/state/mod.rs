//! The deterministic state machine: an MVCC key space with one global revision.
//!
//! Pure: no I/O, no clock, no randomness. Applying a command to a state gives a
//! result and the list of key changes the caller must persist (in the same
//! atomic batch as the applied log index — see `raft/`).
//!
//! Revision rules (etcd's): every Put bumps the store revision; a DeleteRange
//! bumps it only when it deleted something; a Txn bumps it once if any of its
//! operations wrote, and all its writes share that revision. Lease grants and
//! compactions do not bump it; a lease revoke that deletes keys does.
//!
//! History: every change is kept as an `mvccpb.Event` (with the record it
//! replaced) by revision, from the compact revision on. Range reads at an
//! older revision roll the live records back through newer events; watches
//! replay events from any kept revision.

pub mod auth;
mod history;
mod kv;
mod lease;
mod txn;

#[cfg(any(test, fuzzing))]
pub mod model;
#[cfg(test)]
mod model_tests;

use std::collections::{BTreeMap, BTreeSet};

use imbl::OrdMap;

pub use auth::{Access, AuthError, AuthState};
pub use kv::KeyRange;
pub use lease::MAX_LEASE_TTL;

use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionResponse, RangeRequest, RangeResponse,
};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};
use crate::proto::raft::v1::command_result::Response;
use crate::proto::raft::v1::{command, AuthChanged, AuthSnapshot, Command, CommandResult};

/// Largest number of operations in one txn (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// Why a command or a read was refused. Deterministic: every replica refuses
/// the same command the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A request without a key.
    #[error("key is not provided")]
    EmptyKey,
    /// A txn with more operations than [`MAX_TXN_OPS`] in one branch.
    #[error("too many operations in txn request")]
    TooManyOps,
    /// A txn that writes the same key twice in one branch.
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    /// A read at a revision newer than the store's.
    #[error("required revision is a future revision")]
    FutureRevision,
    /// A read at a revision whose history is no longer kept.
    #[error("required revision has been compacted")]
    Compacted,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("lease is provided")]
    LeaseProvided,
    /// A put naming a lease that does not exist.
    #[error("requested lease not found")]
    LeaseNotFound,
    /// A log entry with no request in it.
    #[error("empty command")]
    EmptyCommand,
    /// A lease grant for an id that exists.
    #[error("lease already exists")]
    LeaseExists,
    /// A lease grant with a TTL above [`MAX_LEASE_TTL`].
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    /// Auth refused the request (an auth command, or a permission).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The NOSPACE alarm is raised: writes that grow the store are refused.
    #[error("mvcc: database space exceeded")]
    NoSpace,
    /// An alarm request that raises no alarm (type NONE).
    #[error("alarm type is not given")]
    NoAlarm,
    /// A member's alarm raise read its condition before an alarm was
    /// disarmed: the reading may predate what the disarm answered (room
    /// freed on the disk), so it is not raised; the member reads again.
    #[error("alarm raise decided before a disarm")]
    AlarmDisarmedSince,
    /// The CORRUPT alarm is raised: a member's keys differ from the others'
    /// at the same revision, and no write applies until it is disarmed.
    #[error("corrupt cluster")]
    Corrupt,
    /// Too many requests wait already; this one was not queued (never
    /// returned by apply: the queues in front of Raft refuse it).
    #[error("too many requests")]
    TooManyRequests,
}

/// A change to persist, in the order applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A lease was granted with this TTL in seconds.
    LeaseGranted { id: i64, ttl: i64 },
    /// A lease was revoked (the deletes of its keys are key events).
    LeaseRevoked(i64),
    /// History below `below` is gone, and the events at `below` are now
    /// `boundary` (without the records they replaced); empty: unchanged.
    Compacted { below: i64, boundary: Vec<Event> },
    /// The auth store changed; this is all of it now.
    Auth(AuthSnapshot),
    /// The raised alarms changed; these are all of them now, and the count
    /// of disarms.
    Alarms { alarms: Vec<AlarmMember>, disarms: u64 },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The response, without header (the API layer fills it).
    pub result: CommandResult,
    /// Changes other than keys', in order, to persist with the applied index.
    pub changes: Vec<Change>,
    /// The command changed keys: their events are the history's at the
    /// result's revision ([`KvState::events_of`] gives them), persisted
    /// from there rather than from a copy.
    changed_keys: bool,
}

/// A granted lease.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lease {
    /// TTL in seconds, as granted.
    pub ttl: i64,
    /// Keys whose record names this lease. Persistent, like the maps that
    /// hold the leases: a write after the state was copied (see
    /// [`KvState`]) copies a lease's map node, not every key of its leases.
    pub keys: imbl::OrdSet<Vec<u8>>,
}

/// The key space. A clone is cheap and leaves the original free to change:
/// the keys, history and leases are persistent maps whose copies share their
/// nodes until one side writes. (No derived `Default`: an empty store is at revision 1,
/// and a derived one would say 0; the state_machine fuzz target found the
/// two disagreeing.)
#[derive(Debug, Clone)]
pub struct KvState {
    /// The store revision: that of the last write. Starts at 1 like etcd's.
    revision: i64,
    /// Live keys and their records.
    keys: OrdMap<Vec<u8>, KeyValue>,
    /// History is kept for revisions >= this one (0: nothing compacted yet).
    compact_revision: i64,
    /// Every kept change by revision, in the order applied. Below
    /// `compact_revision` it may still hold events that compaction
    /// dropped: they are freed a few at a time by later writes (see
    /// [`history::DROP_PER_WRITE`]), and nothing reads them.
    history: OrdMap<i64, Vec<Event>>,
    /// Bytes of the kept history (events at or above `compact_revision`),
    /// as [`history::event_bytes`] counts them: what the byte retention of
    /// auto-compaction bounds. Derived, so not in snapshots or the hash.
    history_bytes: u64,
    /// Granted leases by id.
    leases: OrdMap<i64, Lease>,
    /// Users, roles and whether auth is on.
    auth: AuthState,
    /// Raised alarms: (member id, `AlarmType`).
    alarms: BTreeSet<(u64, i32)>,
    /// How many times a raised alarm was disarmed: a member's raise decided
    /// at a lower count is refused (see [`StateError::AlarmDisarmedSince`]).
    alarm_disarms: u64,
}

/// What [`KvState::restore`] rebuilds a state from.
#[derive(Debug, Default)]
pub struct Persisted {
    /// The store revision.
    pub revision: i64,
    /// Live records.
    pub kvs: Vec<KeyValue>,
    /// History is kept from this revision on.
    pub compact_revision: i64,
    /// Kept events, in revision order.
    pub history: Vec<Event>,
    /// Granted leases: (id, ttl).
    pub leases: Vec<(i64, i64)>,
    /// The auth store, if it was ever used.
    pub auth: Option<AuthSnapshot>,
    /// Raised alarms.
    pub alarms: Vec<AlarmMember>,
    /// How many times a raised alarm was disarmed.
    pub alarm_disarms: u64,
}

impl Default for KvState {
    fn default() -> Self {
        Self::new()
    }
}

impl KvState {
    /// An empty store at revision 1 (etcd's initial revision).
    pub fn new() -> Self {
        Self {
            revision: 1,
            keys: OrdMap::new(),
            compact_revision: 0,
            history: OrdMap::new(),
            history_bytes: 0,
            leases: OrdMap::new(),
            auth: AuthState::default(),
            alarms: BTreeSet::new(),
            alarm_disarms: 0,
        }
    }

    /// A store restored from what was persisted.
    pub fn restore(p: Persisted) -> Self {
        let mut leases: BTreeMap<i64, Lease> =
            p.leases.into_iter().map(|(id, ttl)| (id, Lease { ttl, keys: imbl::OrdSet::new() })).collect();
        for kv in &p.kvs {
            if let Some(lease) = leases.get_mut(&kv.lease) {
                lease.keys.insert(kv.key.clone());
            }
        }
        // Collected, not inserted one by one: from keys in order (as stored)
        // the map is built in one pass.
        let keys: OrdMap<Vec<u8>, KeyValue> = p.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        let mut history: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        let mut history_bytes = 0;
        for event in p.history.into_iter().filter(|e| history::event_revision(e) >= p.compact_revision) {
            history_bytes += history::event_bytes(&event);
            history.entry(history::event_revision(&event)).or_default().push(event);
        }
        let auth = p.auth.map(AuthState::from_pb).unwrap_or_default();
        let alarms = p.alarms.iter().map(|a| (a.member_id, a.alarm)).collect();
        Self {
            revision: p.revision.max(1),
            keys,
            compact_revision: p.compact_revision,
            history: history.into_iter().collect(),
            history_bytes,
            leases: leases.into_iter().collect(),
            auth,
            alarms,
            alarm_disarms: p.alarm_disarms,
        }
    }

    /// Everything [`restore`](Self::restore) needs (for snapshots).
    pub fn persisted(&self) -> Persisted {
        Persisted {
            revision: self.revision,
            kvs: self.keys.values().cloned().collect(),
            compact_revision: self.compact_revision,
            history: self.kept_history().flat_map(|(_, events)| events).cloned().collect(),
            leases: self.leases.iter().map(|(id, l)| (*id, l.ttl)).collect(),
            auth: self.auth_record(),
            alarms: self.alarms(),
            alarm_disarms: self.alarm_disarms,
        }
    }

    /// How many times a raised alarm was disarmed (see
    /// `Command::alarm_disarms`).
    pub fn alarm_disarms(&self) -> u64 {
        self.alarm_disarms
    }

    /// The raised alarms, by member.
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.alarms.iter().map(|(member_id, alarm)| AlarmMember { member_id: *member_id, alarm: *alarm }).collect()
    }

    /// Whether writes that grow the store are refused (NOSPACE is raised).
    pub fn out_of_space(&self) -> bool {
        self.alarms.iter().any(|(_, alarm)| *alarm == AlarmType::Nospace as i32)
    }

    /// Whether writes are refused (CORRUPT is raised).
    pub fn corrupt(&self) -> bool {
        self.alarms.iter().any(|(_, alarm)| *alarm == AlarmType::Corrupt as i32)
    }

    /// The CRC-32 of every record as of `revision` (0: now), in key order
    /// (etcd's HashKV): equal on members that kept the same keys, for any
    /// revision they both keep.
    pub fn hash_kv(&self, revision: i64) -> Result<u32, StateError> {
        let at = if revision <= 0 { self.revision } else { revision };
        let all = RangeRequest { key: vec![0], range_end: vec![0], revision: at, ..Default::default() };
        let mut hasher = crc32fast::Hasher::new();
        for kv in &self.range(&all)?.kvs {
            hasher.update(&prost::Message::encode_to_vec(kv));
        }
        Ok(hasher.finalize())
    }

    /// The auth store, as permission checks read it.
    pub fn auth(&self) -> &AuthState {
        &self.auth
    }

    /// The auth store's record, unless auth was never used.
    pub fn auth_record(&self) -> Option<AuthSnapshot> {
        (!self.auth.is_pristine()).then(|| self.auth.to_pb())
    }

    /// Checks that `user` may make `request` (auth off: anyone may). A
    /// lease revoke needs write access to every key of the lease.
    pub fn authorize(&self, user: Option<&str>, request: &command::Request) -> Result<(), StateError> {
        self.auth.check_request(user, request)?;
        if let (true, command::Request::LeaseRevoke(revoke)) = (self.auth.enabled(), request) {
            for key in self.leases.get(&revoke.id).map(|l| &l.keys).into_iter().flatten() {
                self.auth.check(user, Access::Write, key, &[])?;
            }
        }
        Ok(())
    }

    /// History is kept for revisions at or above this one.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// The granted leases.
    pub fn leases(&self) -> &OrdMap<i64, Lease> {
        &self.leases
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// How many live keys there are.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Every live record, in key order.
    pub fn records(&self) -> impl Iterator<Item = &KeyValue> {
        self.keys.values()
    }

    /// Bytes of live keys and values and of the kept history.
    pub fn size_bytes(&self) -> u64 {
        let live: u64 = self.keys.values().map(|kv| (kv.key.len() + kv.value.len()) as u64).sum();
        live + self.history_bytes
    }

    /// Bytes of the kept history (see `history::event_bytes`).
    pub fn history_bytes(&self) -> u64 {
        self.history_bytes
    }

    /// The lowest revision to compact to so that the kept history holds at
    /// most `budget` bytes, oldest revisions dropped first; `None` if it
    /// already does. Never above the current revision: the newest
    /// revision's events are kept even when they alone pass the budget.
    pub fn compaction_to_fit(&self, budget: u64) -> Option<i64> {
        history::compaction_to_fit(self, budget)
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A digest of the whole state (revision and every record), equal on every
    /// replica that applied the same log. FNV-1a: stable across platforms.
    pub fn hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        let mut feed_kv = |kv: &KeyValue| {
            feed(&(kv.key.len() as u64).to_be_bytes());
            feed(&kv.key);
            feed(&(kv.value.len() as u64).to_be_bytes());
            feed(&kv.value);
            for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
                feed(&n.to_be_bytes());
            }
        };
        for kv in self.keys.values() {
            feed_kv(kv);
        }
        for event in self.kept_history().flat_map(|(_, events)| events) {
            feed_kv(&KeyValue { version: i64::from(event.r#type), ..Default::default() });
            event.kv.iter().chain(&event.prev_kv).for_each(&mut feed_kv);
        }
        for (id, lease) in &self.leases {
            feed_kv(&KeyValue { create_revision: *id, mod_revision: lease.ttl, ..Default::default() });
        }
        if let Some(auth) = self.auth_record() {
            use prost::Message;
            feed_kv(&KeyValue { value: auth.encode_to_vec(), ..Default::default() });
        }
        for (member, alarm) in &self.alarms {
            feed_kv(&KeyValue { lease: *member as i64, version: i64::from(*alarm), ..Default::default() });
        }
        if self.alarm_disarms != 0 {
            feed_kv(&KeyValue { version: self.alarm_disarms as i64, ..Default::default() });
        }
        feed_kv(&KeyValue {
            mod_revision: self.revision,
            create_revision: self.compact_revision,
            ..Default::default()
        });
        h
    }

    /// Checks a command without applying it: what would make every replica
    /// refuse it. The API layer calls this before proposing.
    pub fn validate(command: &Command) -> Result<(), StateError> {
        match &command.request {
            None => Err(StateError::EmptyCommand),
            Some(command::Request::Put(put)) => kv::validate_put(put),
            Some(command::Request::DeleteRange(del)) => kv::validate_delete(del),
            Some(command::Request::Txn(txn)) => txn::validate(txn),
            Some(command::Request::Compaction(_)) => Ok(()),
            Some(command::Request::LeaseGrant(grant)) => lease::validate_grant(grant),
            Some(command::Request::LeaseRevoke(_)) => Ok(()),
            Some(_) => Ok(()),
        }
    }

    /// Applies a committed command. On error the state is unchanged.
    pub fn apply(&mut self, command: &Command) -> Result<Applied, StateError> {
        Self::validate(command)?;
        if let Some(checked_at) = command.auth_revision {
            // Checked by the proposer against an older auth store: a grant
            // or revoke came in between, so its check no longer holds.
            if self.auth.enabled() && checked_at < self.auth.revision() {
                return Err(AuthError::OldRevision.into());
            }
        }
        if let (Some(decided_at), Some(command::Request::Alarm(alarm))) = (command.alarm_disarms, &command.request) {
            if alarm.action == AlarmAction::Activate as i32 && decided_at < self.alarm_disarms {
                return Err(StateError::AlarmDisarmedSince);
            }
        }
        if self.corrupt() && command.request.as_ref().is_some_and(writes_data) {
            return Err(StateError::Corrupt);
        }
        if self.out_of_space() && command.request.as_ref().is_some_and(grows) {
            return Err(StateError::NoSpace);
        }
        let mut write = Write::new(self.revision + 1);
        let response = match &command.request {
            None => return Err(StateError::EmptyCommand),
            Some(command::Request::Put(put)) => Response::Put(kv::put(self, &mut write, put)?),
            Some(command::Request::DeleteRange(del)) => Response::DeleteRange(kv::delete(self, &mut write, del)),
            Some(command::Request::Txn(req)) => match txn::apply(self, &mut write, req) {
                Ok(resp) => Response::Txn(resp),
                Err(refused) => {
                    // A txn either applies whole or, on error, not at all: undo
                    // what it changed (the revision is only set below).
                    self.undo(&mut write);
                    return Err(refused);
                }
            },
            Some(command::Request::Compaction(req)) => {
                history::compact(self, &mut write, req.revision)?;
                Response::Compaction(CompactionResponse { header: None })
            }
            Some(command::Request::LeaseGrant(req)) => Response::LeaseGrant(lease::grant(self, &mut write, req)?),
            Some(command::Request::LeaseRevoke(req)) => Response::LeaseRevoke(lease::revoke(self, &mut write, req)?),
            Some(command::Request::Alarm(req)) => Response::Alarm(self.alarm(&mut write, req)?),
            Some(auth) => {
                let before = self.auth.revision();
                let auth_revision = self.auth.apply(auth)?;
                if auth_revision != before {
                    write.other.push(Change::Auth(self.auth.to_pb()));
                }
                Response::Auth(AuthChanged { auth_revision })
            }
        };
        let changed_keys = !write.events.is_empty();
        if changed_keys {
            self.revision = write.revision;
            self.history_bytes += write.events.iter().map(history::event_bytes).sum::<u64>();
            self.history.insert(write.revision, write.events);
        }
        // Only revisions below the compact revision go, never this one.
        history::drop_compacted(self);
        let result = CommandResult { revision: self.revision, response: Some(response) };
        Ok(Applied { result, changes: write.other, changed_keys })
    }

    /// Sets `key`'s record (None: deletes it) as part of `write`, keeping the
    /// lease index and recording the event. Returns the old record.
    fn set(&mut self, write: &mut Write, key: &[u8], record: Option<KeyValue>) -> Option<KeyValue> {
        let event = match &record {
            Some(kv) => Event { r#type: EventType::Put as i32, kv: Some(kv.clone()), prev_kv: None },
            None => Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue { key: key.to_vec(), mod_revision: write.revision, ..Default::default() }),
                prev_kv: None,
            },
        };
        let prev = self.replace(key, record);
        write.events.push(Event { prev_kv: prev.clone(), ..event });
        prev
    }

    /// Sets `key`'s record without recording anything; keeps the lease index.
    fn replace(&mut self, key: &[u8], record: Option<KeyValue>) -> Option<KeyValue> {
        let new_lease = record.as_ref().map(|kv| kv.lease);
        if let Some(lease) = new_lease.and_then(|id| self.leases.get_mut(&id)) {
            lease.keys.insert(key.to_vec());
        }
        let prev = match record {
            Some(kv) => self.keys.insert(key.to_vec(), kv),
            None => self.keys.remove(key),
        };
        if let Some(old) = &prev {
            if new_lease != Some(old.lease) {
                if let Some(lease) = self.leases.get_mut(&old.lease) {
                    lease.keys.remove(key);
                }
            }
        }
        prev
    }

    /// Restores the state to how it was before `write` (a refused txn).
    fn undo(&mut self, write: &mut Write) {
        for event in write.events.drain(..).rev() {
            let key = event.kv.map(|kv| kv.key).unwrap_or_default();
            self.replace(&key, event.prev_kv);
        }
        write.other.clear();
    }

    /// Serves a read at the current state or, with `revision`, at a kept one.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StateError> {
        kv::validate_range(req)?;
        self.range_with_pending(req, &[])
    }

    /// A read at the current or a kept revision; `pending` are writes already
    /// applied to the live records but not yet in the history (a txn's own).
    fn range_with_pending(&self, req: &RangeRequest, pending: &[Event]) -> Result<RangeResponse, StateError> {
        if req.revision <= 0 || req.revision == self.revision {
            return Ok(kv::range(&self.keys, req));
        }
        let past = history::records_at(self, &KeyRange::new(&req.key, &req.range_end), req.revision, pending)?;
        Ok(kv::range(&past, req))
    }

    /// The kept events from revision `from` on, by revision; `Err` carries the
    /// compact revision when `from` is below it.
    pub fn events_from(&self, from: i64) -> Result<impl Iterator<Item = (&i64, &Vec<Event>)>, i64> {
        history::events_from(self, from)
    }

    /// The key events of the command `applied` is the outcome of, in the
    /// order it made them: the history's at its revision, where `apply` put
    /// them (it drops only revisions below the compact revision). Called
    /// right after that `apply`.
    pub fn events_of(&self, applied: &Applied) -> &[Event] {
        if !applied.changed_keys {
            return &[];
        }
        let events = self.history.get(&applied.result.revision).map_or(&[][..], Vec::as_slice);
        debug_assert!(!events.is_empty(), "the events of revision {} are not kept", applied.result.revision);
        events
    }

    /// All kept history, by revision: everything after the compact revision.
    pub fn kept_history(&self) -> impl Iterator<Item = (&i64, &Vec<Event>)> {
        self.history.range(self.compact_revision..)
    }
}

impl KvState {
    /// Raises or clears an alarm (GET changes nothing).
    fn alarm(&mut self, write: &mut Write, req: &AlarmRequest) -> Result<AlarmResponse, StateError> {
        let action = AlarmAction::try_from(req.action).unwrap_or(AlarmAction::Get);
        let member = AlarmMember { member_id: req.member_id, alarm: req.alarm };
        let changed = match action {
            AlarmAction::Get => return Ok(AlarmResponse { header: None, alarms: self.alarms() }),
            _ if req.alarm == AlarmType::None as i32 || AlarmType::try_from(req.alarm).is_err() => {
                return Err(StateError::NoAlarm)
            }
            AlarmAction::Activate => self.alarms.insert((req.member_id, req.alarm)),
            AlarmAction::Deactivate => {
                let removed = self.alarms.remove(&(req.member_id, req.alarm));
                self.alarm_disarms += u64::from(removed);
                removed
            }
        };
        if changed {
            write.other.push(Change::Alarms { alarms: self.alarms(), disarms: self.alarm_disarms });
        }
        Ok(AlarmResponse { header: None, alarms: if changed { vec![member] } else { Vec::new() } })
    }
}

/// Whether `request` changes keys, history or leases (etcd refuses these
/// while CORRUPT is raised); alarm and auth changes still apply.
pub fn writes_data(request: &command::Request) -> bool {
    matches!(
        request,
        command::Request::Put(_)
            | command::Request::DeleteRange(_)
            | command::Request::Txn(_)
            | command::Request::Compaction(_)
            | command::Request::LeaseGrant(_)
            | command::Request::LeaseRevoke(_)
    )
}

/// Whether `request` may grow the store (etcd's rule while NOSPACE is
/// raised): puts, txns with a put in either branch, lease grants. Deletes,
/// compactions, lease revokes and alarm changes still apply.
pub fn grows(request: &command::Request) -> bool {
    fn txn_puts(txn: &crate::proto::etcdserverpb::TxnRequest) -> bool {
        use crate::proto::etcdserverpb::request_op::Request as Op;
        txn.success.iter().chain(&txn.failure).any(|op| match &op.request {
            Some(Op::RequestPut(_)) => true,
            Some(Op::RequestTxn(t)) => txn_puts(t),
            _ => false,
        })
    }
    match request {
        command::Request::Put(_) | command::Request::LeaseGrant(_) => true,
        command::Request::Txn(txn) => txn_puts(txn),
        _ => false,
    }
}

/// Refuses a snapshot (from a peer or a backup file) that decodes but holds
/// what no state machine makes: a lease TTL outside `1..=MAX_LEASE_TTL`
/// (the leader would compute its deadline from it), or a compact revision
/// above the revision.
pub fn check_snapshot(snapshot: &crate::proto::raft::v1::StateSnapshot) -> Result<(), String> {
    if let Some(lease) = snapshot.leases.iter().find(|l| l.ttl <= 0 || l.ttl > MAX_LEASE_TTL) {
        return Err(format!("lease {} has TTL {}, outside 1..={MAX_LEASE_TTL}", lease.id, lease.ttl));
    }
    if snapshot.compact_revision > snapshot.revision.max(1) {
        return Err(format!(
            "compact revision {} is above the revision {}",
            snapshot.compact_revision, snapshot.revision
        ));
    }
    Ok(())
}

/// Equal states hold the same keys, leases and kept history, whatever
/// compacted events each has yet to free.
impl PartialEq for KvState {
    fn eq(&self, other: &Self) -> bool {
        self.revision == other.revision
            && self.compact_revision == other.compact_revision
            && self.keys == other.keys
            && self.leases == other.leases
            && self.auth == other.auth
            && self.alarms == other.alarms
            && self.kept_history().eq(other.kept_history())
    }
}

/// The writes of one command: they all get `revision`.
struct Write {
    revision: i64,
    /// Key changes in order; each keeps the record it replaced, so a txn
    /// failing midway can be undone without copying the key space.
    events: Vec<Event>,
    /// Lease and compaction changes.
    other: Vec<Change>,
}

impl Write {
    fn new(revision: i64) -> Self {
        Self { revision, events: Vec::new(), other: Vec::new() }
    }
}
