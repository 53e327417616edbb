//! Watcher and lease clients on their own simulated nodes, through the real
//! etcd Watch and Lease gRPC APIs, recording what they saw for the checkers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use placement_center::api::context::receiver_stream;
use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::lease_client::LeaseClient;
use placement_center::proto::etcdserverpb::watch_client::WatchClient;
use placement_center::proto::etcdserverpb::watch_request::RequestUnion;
use placement_center::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest, WatchCreateRequest, WatchProgressRequest,
    WatchRequest, WatchResponse,
};
use placement_center::proto::mvccpb::event::EventType;
use placement_center::proto::mvccpb::Event;
use placement_center::runtime::{self, Instant};
use rand::Rng;

use crate::checker::lease::LeaseEpisode;
use crate::checker::watch::{Session, WatchEvent};

/// The workload's keys: what watchers watch (`[k, l)`).
pub const WATCHED: (&[u8], &[u8]) = (b"k", b"l");
/// Lease TTL the lease clients ask for, seconds.
pub const LEASE_TTL: i64 = 3;
/// Keys attached to leases start with this (outside the watched range).
pub const LEASE_KEY_PREFIX: &str = "lease-";

/// The event as the checker compares it.
pub fn watch_event(e: &Event) -> WatchEvent {
    let kv = e.kv.clone().unwrap_or_default();
    WatchEvent {
        revision: kv.mod_revision,
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        put: e.r#type == EventType::Put as i32,
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        prev: e.prev_kv.as_ref().map(|p| String::from_utf8_lossy(&p.value).into_owned()),
    }
}

/// Starts `n` watchers; each records its sessions until `until`.
#[cfg(madsim)]
pub fn start_watchers(
    n: u32,
    addrs: &[String],
    until: Instant,
    sessions: &Arc<Mutex<Vec<Session>>>,
) -> Vec<madsim::task::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let node = crate::hosts::Host::Watcher(i).node(format!("watcher{i}"));
            node.spawn(watcher_loop(i, addrs.to_vec(), until, sessions.clone()))
        })
        .collect()
}

/// One watcher: sessions on random servers until `until`, resuming each
/// from where the last one ended.
pub async fn watcher_loop(id: u32, addrs: Vec<String>, until: Instant, sessions: Arc<Mutex<Vec<Session>>>) {
    let mut next = 0;
    while runtime::now() < until {
        let server = runtime::rng().gen_range(0..addrs.len());
        // Sessions end at random to exercise resuming from a revision.
        let hold = Duration::from_millis(runtime::rng().gen_range(2000..8000));
        let session = watch_session(id, server, &addrs[server], next, (runtime::now() + hold).min(until)).await;
        if let Some(resume) = session.resume_from() {
            next = resume;
        }
        sessions.lock().unwrap_or_else(|e| e.into_inner()).push(session);
        // Now and then a watcher stays away long enough for its resume
        // revision to be compacted.
        let away = if runtime::rng().gen_bool(0.15) { 4000..10_000 } else { 50..500 };
        runtime::sleep(Duration::from_millis(runtime::rng().gen_range(away))).await;
    }
}

/// One watch stream from `start` (0: now) until `end`, a compaction cancel,
/// or the server going silent.
async fn watch_session(watcher: u32, server: usize, addr: &str, start: i64, end: Instant) -> Session {
    let mut session = Session { watcher, server, requested_start: start, ..Default::default() };
    let mut client = WatchClient::new(crate::channel(addr));
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let create = WatchCreateRequest {
        key: WATCHED.0.to_vec(),
        range_end: WATCHED.1.to_vec(),
        start_revision: start,
        prev_kv: true,
        progress_notify: true,
        ..Default::default()
    };
    if tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.is_err() {
        return session;
    }
    let Ok(Ok(resp)) =
        runtime::timeout(Duration::from_secs(2), client.watch(crate::request(receiver_stream(rx)))).await
    else {
        return session;
    };
    let mut stream = resp.into_inner();
    let mut silent = 0;
    while runtime::now() < end && silent < 3 {
        match runtime::timeout(Duration::from_secs(1), stream.message()).await {
            Ok(Ok(Some(resp))) => {
                silent = 0;
                if record(&mut session, resp) {
                    break;
                }
            }
            Ok(_) => break, // the stream ended or failed
            Err(_) => {
                // Quiet or dead? A progress request tells.
                silent += 1;
                let progress =
                    WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) };
                if tx.send(progress).await.is_err() {
                    break;
                }
            }
        }
    }
    session
}

/// Adds one response to the session; true when the watch was canceled.
fn record(session: &mut Session, resp: WatchResponse) -> bool {
    let revision = resp.header.map_or(0, |h| h.revision);
    if resp.created {
        session.created_revision = Some(revision);
    }
    if resp.compact_revision > 0 {
        session.compacted = Some(resp.compact_revision);
    }
    if resp.canceled {
        return true;
    }
    if !resp.events.is_empty() {
        session.responses.push(resp.events.iter().map(watch_event).collect());
    }
    if !resp.created && session.created_revision.is_some() {
        session.progress = session.progress.max(revision);
    }
    false
}

/// Starts `n` lease clients; each records its lease episodes until `until`.
#[cfg(madsim)]
pub fn start_lease_clients(
    n: u32,
    addrs: &[String],
    start: Instant,
    until: Instant,
    episodes: &Arc<Mutex<Vec<LeaseEpisode>>>,
) -> Vec<madsim::task::JoinHandle<()>> {
    (0..n)
        .map(|i| {
            let node = crate::hosts::Host::LeaseClient(i).node(format!("leaser{i}"));
            node.spawn(lease_loop(i, addrs.to_vec(), start, until, episodes.clone()))
        })
        .collect()
}

/// One lease holder: lease episodes on random servers until `until`.
pub async fn lease_loop(
    client: u32,
    addrs: Vec<String>,
    start: Instant,
    until: Instant,
    episodes: Arc<Mutex<Vec<LeaseEpisode>>>,
) {
    let mut n = 0;
    while runtime::now() < until {
        n += 1;
        let server = runtime::rng().gen_range(0..addrs.len());
        let hold = Duration::from_millis(runtime::rng().gen_range(3000..8000));
        if let Some(episode) = lease_episode(client, n, &addrs, server, start, (runtime::now() + hold).min(until)).await
        {
            episodes.lock().unwrap_or_else(|e| e.into_inner()).push(episode);
        }
        runtime::sleep(Duration::from_millis(runtime::rng().gen_range(100..1000))).await;
    }
}

/// Grants a lease, attaches a key, keeps it alive until `end` while reading
/// the key, then lets it go.
async fn lease_episode(
    client: u32,
    n: u32,
    addrs: &[String],
    server: usize,
    start: Instant,
    end: Instant,
) -> Option<LeaseEpisode> {
    let mut leases = LeaseClient::new(crate::channel(&addrs[server]));
    let mut kv = KvClient::new(crate::channel(&addrs[server]));
    let grant = LeaseGrantRequest { ttl: LEASE_TTL, id: 0 };
    let granted = runtime::timeout(Duration::from_secs(2), leases.lease_grant(crate::request(grant)))
        .await
        .ok()?
        .ok()?
        .into_inner();
    let mut episode = LeaseEpisode { client, id: granted.id, ttl: granted.ttl, ..Default::default() };
    let key = format!("{LEASE_KEY_PREFIX}{client}-{n}");
    let put =
        PutRequest { key: key.clone().into_bytes(), value: b"alive".to_vec(), lease: granted.id, ..Default::default() };
    episode.key_written =
        matches!(runtime::timeout(Duration::from_secs(2), kv.put(crate::request(put))).await, Ok(Ok(_)));
    while runtime::now() < end {
        let sent = runtime::now() - start;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let _ = tx.send(LeaseKeepAliveRequest { id: granted.id }).await;
        let renewed = async {
            let mut stream = leases.lease_keep_alive(crate::request(receiver_stream(rx))).await.ok()?.into_inner();
            stream.message().await.ok()?
        };
        // A keepalive the caller gives up on early promises nothing.
        if let Ok(Some(resp)) = runtime::timeout(crate::caller_deadline(Duration::from_secs(1)), renewed).await {
            if resp.ttl > 0 {
                episode.acks.push(sent);
            }
        }
        let invoked = runtime::now() - start;
        let read = RangeRequest { key: key.clone().into_bytes(), ..Default::default() };
        if let Ok(Ok(resp)) = runtime::timeout(Duration::from_secs(2), kv.range(crate::request(read))).await {
            episode.reads.push((invoked, runtime::now() - start, !resp.into_inner().kvs.is_empty()));
        }
        runtime::sleep(Duration::from_millis(500)).await;
    }
    Some(episode)
}
