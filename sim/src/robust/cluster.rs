//! The members of a robustness run: real processes, each in its network
//! namespace with its own data dir, started, supervised (restarted when they
//! exit on their own), asked how they are, and the run's log.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use placement_center::proto::etcdserverpb::alarm_request::AlarmAction;
use placement_center::proto::etcdserverpb::cluster_client::ClusterClient;
use placement_center::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use placement_center::proto::etcdserverpb::{AlarmRequest, AlarmType, MemberListRequest, StatusRequest};
use placement_center::runtime::{self, Instant};
use tonic::transport::Channel;

use super::faults::Throttle;
use super::{Fault, Options};
use crate::history::{Call, Outcome};
use crate::{watchers, workload};

pub(super) const CLIENT_PORT: u16 = 2379;
pub(super) const PEER_PORT: u16 = 2380;
pub(super) const ELECTION_TIMEOUT_MS: u64 = 1000;
pub(super) const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// The member whose data dir is a small tmpfs (disk-full) and the one whose
/// clock libfaketime moves (clock): the last and the first.
pub(super) fn disk_member(n: usize) -> usize {
    n
}
pub(super) const CLOCK_MEMBER: usize = 1;
/// The member whose data dir is on a loop device that slow-disk throttles.
pub(super) const SLOW_DISK_MEMBER: usize = 2;

/// One member slot: a namespace, an address, a data dir, maybe a process.
pub(super) struct Member {
    pub(super) ns: String,
    pub(super) ip: String,
    pub(super) dir: PathBuf,
    pub(super) log: PathBuf,
    pub(super) child: Option<Child>,
    /// Its member id (a new one after a rejoin).
    pub(super) id: u64,
    /// Joined with `--join` (restarts without the initial cluster).
    pub(super) joined: bool,
    /// Being stopped on purpose (SIGTERM of a rolling restart): the
    /// supervisor leaves it alone.
    pub(super) stopping: bool,
    /// Started under libfaketime, reading its offset from this file.
    pub(super) clock_file: Option<PathBuf>,
}

/// The members and the fault log.
pub struct Cluster {
    pub(super) bin: PathBuf,
    /// The members' config file.
    pub(super) config: PathBuf,
    /// How far the clock member's clocks have been moved ahead, seconds
    /// (they never go back).
    pub(super) clock_ahead: Mutex<u64>,
    /// The slow-disk member's throttle, when slow-disk is drawn from.
    pub(super) throttle: Option<Throttle>,
    pub(super) members: Vec<Mutex<Member>>,
    pub(super) start: Instant,
    pub(super) log: Mutex<Vec<String>>,
    pub(super) counts: Mutex<BTreeMap<&'static str, u32>>,
    pub(super) sigkills: Mutex<u32>,
    /// Times during which brokers' registrations may end early (a leader
    /// killed, paused, cut off, or its clock moved): (from, to) since the start.
    pub(super) excused: Mutex<Vec<(Duration, Duration)>>,
    /// Times during which leases may end early: the clock member's clock
    /// was moved (nothing else excuses a lease: see checker::lease).
    pub(super) skewed: Mutex<Vec<(Duration, Duration)>>,
    /// Faults that could not be injected or undone (a broken harness must
    /// not pass as a clean run).
    pub(super) harness_errors: Mutex<Vec<String>>,
}

pub(super) fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

pub(super) fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    sh("ip", &all)
}

/// A channel whose every call gives up after 3 s (a paused member answers nothing).
pub(super) fn channel(addr: &str) -> Channel {
    crate::endpoint(addr).timeout(Duration::from_secs(3)).connect_lazy()
}

impl Cluster {
    /// Members for `opts.namespaces`, not started.
    pub fn new(opts: &Options) -> Result<Self, String> {
        let n = opts.namespaces.len();
        let mut members = Vec::new();
        let mut throttle = None;
        for (i, ns) in opts.namespaces.iter().enumerate() {
            let slot = i + 1;
            let dir = opts.work.join(format!("m{slot}"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if slot == disk_member(n) && opts.faults.contains(&Fault::DiskFull) {
                let d = dir.to_string_lossy().into_owned();
                sh("mount", &["-t", "tmpfs", "-o", "size=256m", "robust-disk", &d])?;
            }
            if slot == SLOW_DISK_MEMBER && opts.faults.contains(&Fault::SlowDisk) {
                throttle = Some(Throttle::new(&opts.work, &dir)?);
            }
            let clock_file = (slot == CLOCK_MEMBER && opts.faults.contains(&Fault::Clock)).then(|| {
                let file = opts.work.join(format!("clock{slot}"));
                std::fs::write(&file, "+0\n").expect("clock file");
                file
            });
            members.push(Mutex::new(Member {
                ns: ns.clone(),
                ip: format!("198.18.0.{}", 10 + slot),
                dir,
                log: opts.work.join(format!("m{slot}.log")),
                child: None,
                id: slot as u64,
                joined: false,
                stopping: false,
                clock_file,
            }));
        }
        // The checks read every member's whole history at the end (a soak
        // writes far more than the default 10,000 revisions): keep it.
        let config = opts.work.join("member.toml");
        std::fs::write(&config, "auto_compaction_retention_revisions = 0\n")
            .map_err(|e| format!("{}: {e}", config.display()))?;
        Ok(Self {
            bin: opts.bin.clone(),
            config,
            clock_ahead: Mutex::new(0),
            throttle,
            members,
            start: runtime::now(),
            log: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            sigkills: Mutex::new(0),
            excused: Mutex::new(Vec::new()),
            skewed: Mutex::new(Vec::new()),
            harness_errors: Mutex::new(Vec::new()),
        })
    }

    pub(super) fn member(&self, slot: usize) -> std::sync::MutexGuard<'_, Member> {
        self.members[slot - 1].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every member's client address.
    pub fn addrs(&self) -> Vec<String> {
        (1..=self.members.len()).map(|s| format!("{}:{CLIENT_PORT}", self.member(s).ip)).collect()
    }

    pub(super) fn since_start(&self) -> Duration {
        runtime::now() - self.start
    }

    /// Logs one line, with the time since the start.
    pub fn note(&self, line: impl fmt::Display) {
        let line = format!("[{:>8.3}s] {line}", self.since_start().as_secs_f64());
        println!("{line}");
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    /// Logs a fault that could not be injected; the run then fails.
    pub(super) fn harness_error(&self, what: String) {
        self.note(format!("HARNESS ERROR: {what}"));
        self.harness_errors.lock().unwrap_or_else(|e| e.into_inner()).push(what);
    }

    /// A registration may end early until a TTL after the fault (plus slack).
    pub(super) fn excuse(&self, from: Duration) {
        let to = self.since_start() + Duration::from_secs(watchers::LEASE_TTL as u64 + 2);
        self.excused.lock().unwrap_or_else(|e| e.into_inner()).push((from, to));
    }

    /// A lease may end early until a TTL after a clock moved (plus slack);
    /// the clock member keeps deadlines it set while its clock ran fast.
    pub(super) fn excuse_skew(&self, from: Duration) {
        let to = self.since_start() + Duration::from_secs(watchers::LEASE_TTL as u64 + 2);
        self.skewed.lock().unwrap_or_else(|e| e.into_inner()).push((from, to));
    }

    /// Starts member `slot`'s process.
    pub fn start_member(&self, slot: usize) -> Result<(), String> {
        self.start_with(slot, None)
    }

    /// Starts member `slot`'s process; with `join`, on an empty data dir as
    /// a new member joining through those client addresses.
    pub(super) fn start_with(&self, slot: usize, join: Option<&str>) -> Result<(), String> {
        let mut m = self.member(slot);
        let client = format!("http://{}:{CLIENT_PORT}", m.ip);
        let peer = format!("http://{}:{PEER_PORT}", m.ip);
        let initial: Vec<String> =
            (1..=self.members.len()).map(|s| format!("{s}=198.18.0.{}:{PEER_PORT}", 10 + s)).collect();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &m.ns]);
        if let Some(file) = &m.clock_file {
            cmd.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", file)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_RESET", "1")
                .env("FAKETIME_XRESET", "1");
        }
        cmd.arg(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(["--name", &format!("m{slot}"), "--data-dir"])
            .arg(&m.dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--listen-metrics-urls", &format!("http://{}:2381", m.ip)])
            .args(["--election-timeout-ms", &ELECTION_TIMEOUT_MS.to_string(), "--heartbeat-interval-ms", "100"]);
        if let Some(join) = join {
            cmd.args(["--join", join]);
        } else if m.joined {
            cmd.args(["--node-id", &m.id.to_string()]);
        } else if m.id == slot as u64 {
            cmd.args(["--node-id", &slot.to_string(), "--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-token", "robust"]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(|e| format!("{}: {e}", m.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child =
            cmd.stdin(Stdio::null()).stdout(log).stderr(err).spawn().map_err(|e| format!("ip netns exec: {e}"))?;
        if let (true, Some(throttle)) = (slot == SLOW_DISK_MEMBER, &self.throttle) {
            // `ip netns exec` execs the member: the pid is the member's.
            if let Err(e) = throttle.admit(child.id()) {
                self.harness_error(format!("slow-disk: m{slot} not in its cgroup: {e}"));
            }
        }
        m.child = Some(child);
        Ok(())
    }

    pub(super) fn signal(&self, slot: usize, signal: &str) {
        let m = self.member(slot);
        if let Some(child) = &m.child {
            let _ = sh("kill", &[signal, &child.id().to_string()]);
        }
    }

    /// SIGKILLs member `slot` and reaps it.
    pub(super) fn kill(&self, slot: usize) {
        let mut m = self.member(slot);
        if let Some(mut child) = m.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            *self.sigkills.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        }
    }

    /// Restarts, as a service manager would, every member that exited on
    /// its own (not killed by a fault), until `until`.
    pub(super) async fn supervise(&self, until: Instant) {
        while runtime::now() < until {
            for slot in 1..=self.members.len() {
                let status = {
                    let mut m = self.member(slot);
                    let stopping = m.stopping;
                    match m.child.as_mut().filter(|_| !stopping).map(|c| c.try_wait()) {
                        Some(Ok(Some(status))) => {
                            m.child = None;
                            Some(status)
                        }
                        _ => None,
                    }
                };
                if let Some(status) = status {
                    self.note(format!("supervisor: m{slot} exited on its own ({status}); restarted"));
                    self.restart(slot);
                }
            }
            runtime::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Whether member `slot`'s process has exited (it is then reaped).
    pub(super) fn exited(&self, slot: usize) -> bool {
        let mut m = self.member(slot);
        match m.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | None => {
                m.child = None;
                true
            }
            _ => false,
        }
    }

    pub(super) async fn status(&self, slot: usize) -> Option<placement_center::proto::etcdserverpb::StatusResponse> {
        let addr = format!("{}:{CLIENT_PORT}", self.member(slot).ip);
        let mut client = MaintenanceClient::new(channel(&addr));
        let resp = runtime::timeout(Duration::from_secs(2), client.status(StatusRequest {})).await;
        resp.ok()?.ok().map(|r| r.into_inner())
    }

    /// The slot of the member that the others follow, if any.
    pub(super) async fn leader(&self) -> Option<usize> {
        for slot in 1..=self.members.len() {
            if let Some(status) = self.status(slot).await {
                if status.leader != 0 {
                    return (1..=self.members.len()).find(|s| self.member(*s).id == status.leader);
                }
            }
        }
        None
    }

    /// Whether member `slot` serves a linearizable read (what `/health` asks).
    pub(super) async fn serves(&self, slot: usize) -> bool {
        let history = Arc::new(Mutex::new(Vec::new()));
        let addr = format!("{}:{CLIENT_PORT}", self.member(slot).ip);
        let mut client = workload::Client::new(u32::MAX, &[addr], runtime::now(), history);
        matches!(client.run(0, "health", Call::Get).await, Outcome::Read(_))
    }

    /// Why member `slot` is unhealthy, if it is: its gRPC health check is
    /// not SERVING, or an alarm is raised (after heal, none may be: the
    /// disk-full fault disarms its NOSPACE).
    pub(super) async fn unhealthy(&self, slot: usize) -> Option<String> {
        use placement_center::proto::grpc::health::v1::health_check_response::ServingStatus;
        use placement_center::proto::grpc::health::v1::health_client::HealthClient;
        use placement_center::proto::grpc::health::v1::HealthCheckRequest;
        let addr = format!("{}:{CLIENT_PORT}", self.member(slot).ip);
        let check = HealthClient::new(channel(&addr)).check(HealthCheckRequest { service: String::new() }).await;
        match check.map(|r| r.into_inner().status) {
            Ok(status) if status == ServingStatus::Serving as i32 => {}
            other => return Some(format!("m{slot}'s health check answered {other:?}")),
        }
        let get = AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: AlarmType::None as i32 };
        match MaintenanceClient::new(channel(&addr)).alarm(get).await {
            Ok(resp) if resp.get_ref().alarms.is_empty() => None,
            Ok(resp) => Some(format!("m{slot} lists alarms {:?}", resp.into_inner().alarms)),
            Err(e) => Some(format!("m{slot}'s alarm list: {e}")),
        }
    }

    pub(super) async fn wait_serving(&self, slots: impl IntoIterator<Item = usize> + Clone, limit: Duration) -> bool {
        let deadline = runtime::now() + limit;
        while runtime::now() < deadline {
            let mut all = true;
            for slot in slots.clone() {
                all &= self.serves(slot).await;
            }
            if all {
                return true;
            }
            runtime::sleep(Duration::from_millis(300)).await;
        }
        false
    }

    /// Starts every member and waits until each serves.
    pub async fn start_all(&self) -> Result<(), String> {
        for slot in 1..=self.members.len() {
            self.start_member(slot)?;
        }
        if self.wait_serving(1..=self.members.len(), Duration::from_secs(60)).await {
            Ok(())
        } else {
            Err("the cluster did not start serving within 60 s".into())
        }
    }

    pub(super) fn count(&self, fault: Fault) {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()).entry(fault.name()).or_default() += 1;
    }

    pub(super) fn restart(&self, slot: usize) {
        if let Err(e) = self.start_member(slot) {
            self.note(format!("restart of m{slot} failed: {e}"));
        }
    }

    /// A linearizable member list from the first member that answers.
    pub(super) async fn member_list(&self) -> Option<Vec<placement_center::proto::etcdserverpb::Member>> {
        for addr in self.addrs() {
            let mut client = ClusterClient::new(channel(&addr));
            let list =
                runtime::timeout(Duration::from_secs(2), client.member_list(MemberListRequest { linearizable: true }));
            if let Ok(Ok(resp)) = list.await {
                return Some(resp.into_inner().members);
            }
        }
        None
    }

    /// The member ids of a member list, if a member answers.
    pub(super) async fn member_ids(&self) -> Option<Vec<u64>> {
        Some(self.member_list().await?.iter().map(|m| m.id).collect())
    }

    pub(super) async fn is_voter(&self, id: u64) -> bool {
        self.member_list().await.is_some_and(|members| members.iter().any(|m| m.id == id && !m.is_learner))
    }

    /// SIGKILLs every member (the end of a run).
    pub fn stop(&self) {
        for slot in 1..=self.members.len() {
            let mut m = self.member(slot);
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(throttle) = &self.throttle {
            throttle.remove();
        }
    }

    /// The fault log.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
