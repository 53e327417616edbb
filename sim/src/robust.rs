//! The robustness suite: real `placement-center` processes (real RocksDB,
//! fsync, sockets, signals and clocks), each in a network namespace of its
//! own, under real faults drawn from a seed. The simulator's clients record
//! the history and `placement-check` judges it, as in the simulator.
//!
//! `ci/robustness.sh` makes the namespaces (tests/netns/lib.sh) and runs this
//! inside the client's; members are reached by their namespaces' addresses
//! (198.18.0.11..) and every rule a fault adds lives inside a member's
//! namespace. Faults come one at a time, each undone before the next.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use placement_center::proto::etcdserverpb::alarm_request::AlarmAction;
use placement_center::proto::etcdserverpb::cluster_client::ClusterClient;
use placement_center::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use placement_center::proto::etcdserverpb::watch_client::WatchClient;
use placement_center::proto::etcdserverpb::watch_request::RequestUnion;
use placement_center::proto::etcdserverpb::{
    AlarmRequest, AlarmType, HashKvRequest, MemberListRequest, MemberRemoveRequest, StatusRequest, WatchCreateRequest,
    WatchRequest,
};
use placement_center::runtime::{self, Instant};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::checker::{self, watch::Truth};
use crate::history::{Call, Outcome};
use crate::{brokers, watchers, workload};

/// Brokers registering through the placement API during a run.
const BROKERS: u64 = 3;

/// The faults, each a function below with its own log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL one member, restart it.
    Kill,
    /// SIGKILL the leader, restart it.
    KillLeader,
    /// SIGKILL every member at once, restart them.
    KillAll,
    /// SIGSTOP a member (the leader half the time) past the election
    /// timeout, then SIGCONT.
    Pause,
    /// A member cut off from the others both ways (nftables).
    Partition,
    /// A member that hears nothing from the others but still sends.
    OneWay,
    /// A member losing 20% of its packets to and from the others.
    Loss,
    /// A member's link throttled to 256 kbit/s (tc tbf: queueing latency).
    SlowLink,
    /// The disk of the member whose data dir is a small tmpfs filled up.
    DiskFull,
    /// The disk of the member whose data dir is an ext4 image on a loop
    /// device throttled to 10 writes and 1 MiB a second (blkio cgroup).
    SlowDisk,
    /// The clock of the member started under libfaketime jumps forward
    /// (for good: a monotonic clock never goes back), or runs fast (1.2-3x)
    /// for a while.
    Clock,
    /// A member removed, its data dir wiped, added back with `--join`.
    Rejoin,
    /// Every member restarted in turn (SIGTERM), each back before the next.
    Rolling,
}

impl Fault {
    /// Every fault kind.
    pub const ALL: [Fault; 13] = [
        Fault::Kill,
        Fault::KillLeader,
        Fault::KillAll,
        Fault::Pause,
        Fault::Partition,
        Fault::OneWay,
        Fault::Loss,
        Fault::SlowLink,
        Fault::DiskFull,
        Fault::SlowDisk,
        Fault::Clock,
        Fault::Rejoin,
        Fault::Rolling,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::KillLeader => "kill-leader",
            Fault::KillAll => "kill-all",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::OneWay => "one-way",
            Fault::Loss => "loss",
            Fault::SlowLink => "slow-link",
            Fault::DiskFull => "disk-full",
            Fault::SlowDisk => "slow-disk",
            Fault::Clock => "clock",
            Fault::Rejoin => "rejoin",
            Fault::Rolling => "rolling-restart",
        }
    }

    /// Parses a comma-separated list, `all` or `none`.
    pub fn parse_list(list: &str) -> Result<Vec<Fault>, String> {
        match list {
            "all" => Ok(Self::ALL.to_vec()),
            "none" | "" => Ok(Vec::new()),
            _ => list
                .split(',')
                .map(|name| {
                    Self::ALL.into_iter().find(|f| f.name() == name.trim()).ok_or_else(|| {
                        let known: Vec<_> = Self::ALL.iter().map(|f| f.name()).collect();
                        format!("unknown fault {name:?}; known: {}", known.join(","))
                    })
                })
                .collect(),
        }
    }
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `placement-center` binary.
    pub bin: PathBuf,
    /// Where data dirs and logs go.
    pub work: PathBuf,
    /// The members' network namespaces, member 1 first.
    pub namespaces: Vec<String>,
    /// Seconds of workload under faults.
    pub duration: u64,
    /// Seed of the fault schedule and the workload's choices of target.
    pub seed: u64,
    /// The faults to draw from.
    pub faults: Vec<Fault>,
    /// Concurrent KV clients.
    pub clients: u32,
    /// Distinct keys per generation.
    pub keys: u32,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Operations recorded (final reads included).
    pub ops: usize,
    /// Writes whose outcome is unknown.
    pub unknown: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u32>,
    /// SIGKILLs sent (every member of a kill-all counts).
    pub sigkills: u32,
    /// Watch events seen, sessions; lease episodes, keepalive acks.
    pub watch_events: usize,
    /// Watch sessions.
    pub watch_sessions: usize,
    /// Lease episodes.
    pub leases: usize,
    /// Keepalives acknowledged.
    pub lease_acks: usize,
    /// Broker registrations and heartbeats acknowledged.
    pub broker_acks: (usize, usize),
    /// Every broken guarantee.
    pub violations: Vec<String>,
    /// How long the checkers took.
    pub check_time: Duration,
    /// Wall time of the whole run.
    pub wall: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k}={n}")).collect();
        writeln!(
            f,
            "robustness {}: ops={} unknown={} watch={}/{} leases={}/{} brokers={}/{} sigkills={} faults: {} wall={:.0}s check={:.1}s",
            if self.violations.is_empty() { "ok" } else { "FAIL" },
            self.ops,
            self.unknown,
            self.watch_events,
            self.watch_sessions,
            self.leases,
            self.lease_acks,
            self.broker_acks.0,
            self.broker_acks.1,
            self.sigkills,
            faults.join(" "),
            self.wall.as_secs_f64(),
            self.check_time.as_secs_f64()
        )?;
        for v in &self.violations {
            writeln!(f, "  violation: {v}")?;
        }
        Ok(())
    }
}

const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
const ELECTION_TIMEOUT_MS: u64 = 1000;
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
/// The member whose data dir is a small tmpfs (disk-full) and the one whose
/// clock libfaketime moves (clock): the last and the first.
fn disk_member(n: usize) -> usize {
    n
}
const CLOCK_MEMBER: usize = 1;
/// The member whose data dir is on a loop device that slow-disk throttles.
const SLOW_DISK_MEMBER: usize = 2;

/// The slow-disk member's throttle: a blkio cgroup (v1) of its own and the
/// loop device under its data dir.
struct Throttle {
    /// The cgroup's directory (the runner mounts the blkio hierarchy:
    /// `ip netns exec` hides the machine's /sys/fs/cgroup).
    cgroup: PathBuf,
    /// The loop device, as major:minor.
    device: String,
}

impl Throttle {
    /// An ext4 image mounted on `dir` through a loop device, and a cgroup
    /// for the member's process.
    fn new(work: &std::path::Path, dir: &std::path::Path) -> Result<Self, String> {
        let image = work.join("slow-disk.img");
        let image_path = image.to_string_lossy().into_owned();
        let dir = dir.to_string_lossy().into_owned();
        sh("truncate", &["-s", "1G", &image_path])?;
        sh("mkfs.ext4", &["-q", "-F", &image_path])?;
        // -o loop: the loop device goes when the runner's mount namespace does.
        sh("mount", &["-o", "loop", &image_path, &dir])?;
        let source = sh("findmnt", &["-n", "-o", "SOURCE", &dir])?;
        let loop_name = source.trim().trim_start_matches("/dev/").to_string();
        let device = std::fs::read_to_string(format!("/sys/block/{loop_name}/dev"))
            .map_err(|e| format!("{loop_name}: {e}"))?
            .trim()
            .to_string();
        let hierarchy = work.join("blkio");
        std::fs::create_dir_all(&hierarchy).map_err(|e| e.to_string())?;
        sh("mount", &["-t", "cgroup", "-o", "blkio", "robust-blkio", &hierarchy.to_string_lossy()])?;
        let cgroup = hierarchy.join(format!("robust-{}", std::process::id()));
        std::fs::create_dir_all(&cgroup).map_err(|e| format!("{}: {e}", cgroup.display()))?;
        Ok(Self { cgroup, device })
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.cgroup.join(file);
        std::fs::write(&path, value).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Moves process `pid` into the cgroup.
    fn admit(&self, pid: u32) -> Result<(), String> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// Writes limited to `iops` and `bps` a second (0, 0: unlimited).
    fn limit(&self, iops: u64, bps: u64) -> Result<(), String> {
        self.write("blkio.throttle.write_iops_device", &format!("{} {iops}", self.device))?;
        self.write("blkio.throttle.write_bps_device", &format!("{} {bps}", self.device))
    }

    /// Writes the member's processes made to the device through the cgroup.
    fn writes(&self) -> u64 {
        let served = std::fs::read_to_string(self.cgroup.join("blkio.throttle.io_serviced")).unwrap_or_default();
        let prefix = format!("{} Write ", self.device);
        served.lines().find_map(|l| l.strip_prefix(&prefix).and_then(|n| n.trim().parse().ok())).unwrap_or(0)
    }

    /// Removes the cgroup (its processes gone) and unmounts the hierarchy.
    fn remove(&self) {
        let _ = std::fs::remove_dir(&self.cgroup);
        if let Some(hierarchy) = self.cgroup.parent() {
            let _ = sh("umount", &[&hierarchy.to_string_lossy()]);
        }
    }
}

/// One member slot: a namespace, an address, a data dir, maybe a process.
struct Member {
    ns: String,
    ip: String,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Its member id (a new one after a rejoin).
    id: u64,
    /// Joined with `--join` (restarts without the initial cluster).
    joined: bool,
    /// Being stopped on purpose (SIGTERM of a rolling restart): the
    /// supervisor leaves it alone.
    stopping: bool,
    /// Started under libfaketime, reading its offset from this file.
    clock_file: Option<PathBuf>,
}

/// The members and the fault log.
pub struct Cluster {
    bin: PathBuf,
    /// The members' config file.
    config: PathBuf,
    /// How far the clock member's clocks have been moved ahead, seconds
    /// (they never go back).
    clock_ahead: Mutex<u64>,
    /// The slow-disk member's throttle, when slow-disk is drawn from.
    throttle: Option<Throttle>,
    members: Vec<Mutex<Member>>,
    start: Instant,
    log: Mutex<Vec<String>>,
    counts: Mutex<BTreeMap<&'static str, u32>>,
    sigkills: Mutex<u32>,
    /// Times during which leases may end early (a leader killed, paused,
    /// cut off, or its clock moved): (from, to) since the start.
    excused: Mutex<Vec<(Duration, Duration)>>,
    /// Faults that could not be injected or undone (a broken harness must
    /// not pass as a clean run).
    harness_errors: Mutex<Vec<String>>,
}

fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    sh("ip", &all)
}

/// A channel whose every call gives up after 3 s (a paused member answers nothing).
fn channel(addr: &str) -> Channel {
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
            harness_errors: Mutex::new(Vec::new()),
        })
    }

    fn member(&self, slot: usize) -> std::sync::MutexGuard<'_, Member> {
        self.members[slot - 1].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every member's client address.
    pub fn addrs(&self) -> Vec<String> {
        (1..=self.members.len()).map(|s| format!("{}:{CLIENT_PORT}", self.member(s).ip)).collect()
    }

    fn since_start(&self) -> Duration {
        runtime::now() - self.start
    }

    /// Logs one line, with the time since the start.
    pub fn note(&self, line: impl fmt::Display) {
        let line = format!("[{:>8.3}s] {line}", self.since_start().as_secs_f64());
        println!("{line}");
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    /// Logs a fault that could not be injected; the run then fails.
    fn harness_error(&self, what: String) {
        self.note(format!("HARNESS ERROR: {what}"));
        self.harness_errors.lock().unwrap_or_else(|e| e.into_inner()).push(what);
    }

    fn excuse(&self, from: Duration) {
        // A lease may end early until a TTL after the fault (plus slack).
        let to = self.since_start() + Duration::from_secs(watchers::LEASE_TTL as u64 + 2);
        self.excused.lock().unwrap_or_else(|e| e.into_inner()).push((from, to));
    }

    /// Starts member `slot`'s process.
    pub fn start_member(&self, slot: usize) -> Result<(), String> {
        self.start_with(slot, None)
    }

    /// Starts member `slot`'s process; with `join`, on an empty data dir as
    /// a new member joining through those client addresses.
    fn start_with(&self, slot: usize, join: Option<&str>) -> Result<(), String> {
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

    fn signal(&self, slot: usize, signal: &str) {
        let m = self.member(slot);
        if let Some(child) = &m.child {
            let _ = sh("kill", &[signal, &child.id().to_string()]);
        }
    }

    /// SIGKILLs member `slot` and reaps it.
    fn kill(&self, slot: usize) {
        let mut m = self.member(slot);
        if let Some(mut child) = m.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            *self.sigkills.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        }
    }

    /// Restarts, as a service manager would, every member that exited on
    /// its own (not killed by a fault), until `until`.
    async fn supervise(&self, until: Instant) {
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
    fn exited(&self, slot: usize) -> bool {
        let mut m = self.member(slot);
        match m.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | None => {
                m.child = None;
                true
            }
            _ => false,
        }
    }

    async fn status(&self, slot: usize) -> Option<placement_center::proto::etcdserverpb::StatusResponse> {
        let addr = format!("{}:{CLIENT_PORT}", self.member(slot).ip);
        let mut client = MaintenanceClient::new(channel(&addr));
        let resp = runtime::timeout(Duration::from_secs(2), client.status(StatusRequest {})).await;
        resp.ok()?.ok().map(|r| r.into_inner())
    }

    /// The slot of the member that the others follow, if any.
    async fn leader(&self) -> Option<usize> {
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
    async fn serves(&self, slot: usize) -> bool {
        let history = Arc::new(Mutex::new(Vec::new()));
        let addr = format!("{}:{CLIENT_PORT}", self.member(slot).ip);
        let mut client = workload::Client::new(u32::MAX, &[addr], runtime::now(), history);
        matches!(client.run(0, "health", Call::Get).await, Outcome::Read(_))
    }

    /// Why member `slot` is unhealthy, if it is: its gRPC health check is
    /// not SERVING, or an alarm is raised (after heal, none may be: the
    /// disk-full fault disarms its NOSPACE).
    async fn unhealthy(&self, slot: usize) -> Option<String> {
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

    async fn wait_serving(&self, slots: impl IntoIterator<Item = usize> + Clone, limit: Duration) -> bool {
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

    fn count(&self, fault: Fault) {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()).entry(fault.name()).or_default() += 1;
    }

    fn restart(&self, slot: usize) {
        if let Err(e) = self.start_member(slot) {
            self.note(format!("restart of m{slot} failed: {e}"));
        }
    }

    /// Injects `fault` and undoes it.
    pub async fn inject(&self, fault: Fault, rng: &mut SmallRng) {
        let n = self.members.len();
        let slot = rng.gen_range(1..=n);
        let hold = Duration::from_millis(rng.gen_range(2000..6000));
        let began = self.since_start();
        self.count(fault);
        match fault {
            Fault::Kill | Fault::KillLeader => {
                let slot = if fault == Fault::KillLeader { self.leader().await.unwrap_or(slot) } else { slot };
                let down = Duration::from_millis(rng.gen_range(300..3000));
                self.note(format!("{}: SIGKILL m{slot}, restart after {down:?}", fault.name()));
                self.kill(slot);
                runtime::sleep(down).await;
                self.restart(slot);
            }
            Fault::KillAll => {
                let down = Duration::from_millis(rng.gen_range(300..2000));
                self.note(format!("kill-all: SIGKILL every member, restart after {down:?}"));
                for s in 1..=n {
                    self.kill(s);
                }
                runtime::sleep(down).await;
                for s in 1..=n {
                    self.restart(s);
                }
            }
            Fault::Pause => {
                let slot = if rng.gen_bool(0.5) { self.leader().await.unwrap_or(slot) } else { slot };
                self.note(format!("pause: SIGSTOP m{slot} for {hold:?}"));
                self.signal(slot, "-STOP");
                runtime::sleep(hold).await;
                self.signal(slot, "-CONT");
                self.note(format!("pause: SIGCONT m{slot}"));
            }
            Fault::Partition | Fault::OneWay | Fault::Loss => {
                let ns = self.member(slot).ns.clone();
                let peers: Vec<String> = (1..=n).filter(|s| *s != slot).map(|s| self.member(s).ip.clone()).collect();
                let set = format!("{{ {} }}", peers.join(", "));
                let (what, rules) = match fault {
                    Fault::Partition => {
                        ("cut off both ways", vec![format!("ip saddr {set} drop"), format!("ip daddr {set} drop")])
                    }
                    Fault::OneWay => ("hears nothing from its peers", vec![format!("ip saddr {set} drop")]),
                    _ => (
                        "loses 20% of its packets with its peers",
                        vec![
                            format!("ip saddr {set} numgen random mod 100 < 20 drop"),
                            format!("ip daddr {set} numgen random mod 100 < 20 drop"),
                        ],
                    ),
                };
                self.note(format!("{}: m{slot} {what} for {hold:?}", fault.name()));
                if let Err(e) = nft_rules(&ns, &rules) {
                    self.harness_error(format!("{}: {e}", fault.name()));
                }
                runtime::sleep(hold).await;
                let _ = in_ns(&ns, &["nft", "delete", "table", "inet", "robust"]);
                self.note(format!("{}: healed m{slot}", fault.name()));
            }
            Fault::SlowLink => {
                let ns = self.member(slot).ns.clone();
                self.note(format!("slow-link: m{slot} at 256 kbit/s for {hold:?}"));
                let added = in_ns(
                    &ns,
                    &[
                        "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "256kbit", "burst", "16kb",
                        "latency", "500ms",
                    ],
                );
                if let Err(e) = added {
                    self.harness_error(format!("slow-link: {e}"));
                }
                runtime::sleep(hold).await;
                let _ = in_ns(&ns, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
                self.note(format!("slow-link: healed m{slot}"));
            }
            Fault::DiskFull => self.disk_full(hold).await,
            Fault::SlowDisk => match &self.throttle {
                Some(throttle) => {
                    self.note(format!(
                        "slow-disk: m{SLOW_DISK_MEMBER}'s disk at 10 writes and 1 MiB a second for {hold:?}"
                    ));
                    let before = throttle.writes();
                    if let Err(e) = throttle.limit(10, 1 << 20) {
                        self.harness_error(format!("slow-disk: {e}"));
                    }
                    runtime::sleep(hold).await;
                    if let Err(e) = throttle.limit(0, 0) {
                        self.harness_error(format!("slow-disk: {e}"));
                    }
                    let writes = throttle.writes() - before;
                    self.note(format!(
                        "slow-disk: m{SLOW_DISK_MEMBER}'s disk at full speed ({writes} writes throttled)"
                    ));
                }
                None => self.harness_error("slow-disk: no throttled member".into()),
            },
            Fault::Clock => {
                // libfaketime reads the file every second and moves the
                // member's wall and monotonic clocks together, so they only
                // ever go forward: a monotonic clock never goes back (one
                // that did would hold every timer the process set while
                // ahead, for as long as the jump; the CI run found a member
                // so stalled). An offset makes them jump; a rate makes them
                // run fast (FAKETIME_XRESET: from when it is set, without a
                // jump, and keeping what they gained when it returns to 1).
                let Some(file) = self.member(CLOCK_MEMBER).clock_file.clone() else {
                    self.harness_error(format!("clock: m{CLOCK_MEMBER} was not started under libfaketime"));
                    return;
                };
                let (ahead, setting) = {
                    let mut ahead = self.clock_ahead.lock().unwrap_or_else(|e| e.into_inner());
                    if rng.gen_bool(0.5) {
                        let jump = rng.gen_range(5..60);
                        *ahead += jump;
                        self.note(format!("clock: m{CLOCK_MEMBER}'s clock jumps {jump} s ahead, for good"));
                        (*ahead, format!("+{}s x1.0", *ahead))
                    } else {
                        let rate = rng.gen_range(12..30) as f64 / 10.0;
                        self.note(format!("clock: m{CLOCK_MEMBER}'s clock runs {rate}x fast for {hold:?}"));
                        (*ahead, format!("+{}s x{rate:.1}", *ahead))
                    }
                };
                let _ = std::fs::write(&file, format!("{setting}\n"));
                runtime::sleep(hold).await;
                let _ = std::fs::write(&file, format!("+{ahead}s x1.0\n"));
                self.note(format!("clock: m{CLOCK_MEMBER}'s clock at normal speed, {ahead} s ahead and more"));
            }
            Fault::Rejoin => self.rejoin(slot).await,
            Fault::Rolling => {
                self.note("rolling-restart: every member in turn (SIGTERM, restart, serving again)");
                for s in 1..=n {
                    self.member(s).stopping = true;
                    self.signal(s, "-TERM");
                    let deadline = runtime::now() + Duration::from_secs(15);
                    while !self.exited(s) && runtime::now() < deadline {
                        runtime::sleep(Duration::from_millis(100)).await;
                    }
                    if !self.exited(s) {
                        self.note(format!("rolling-restart: m{s} still running 15 s after SIGTERM; SIGKILL"));
                        self.kill(s);
                    }
                    self.restart(s);
                    self.member(s).stopping = false;
                    if !self.wait_serving([s], Duration::from_secs(30)).await {
                        self.note(format!("rolling-restart: m{s} not serving 30 s after its restart"));
                    }
                }
            }
        }
        // Any fault may have moved or stopped the leader.
        self.excuse(began);
    }

    async fn disk_full(&self, hold: Duration) {
        let slot = disk_member(self.members.len());
        let dir = self.member(slot).dir.clone();
        let ballast = dir.join("robust-ballast");
        let free = sh("df", &["--output=avail", "-B1", &dir.to_string_lossy()])
            .ok()
            .and_then(|out| out.lines().nth(1).and_then(|l| l.trim().parse::<u64>().ok()))
            .unwrap_or(0);
        let size = free.saturating_sub(64 * 1024);
        self.note(format!("disk-full: m{slot}'s disk full but 64 KiB for {hold:?}"));
        if let Err(e) = sh("fallocate", &["-l", &size.to_string(), &ballast.to_string_lossy()]) {
            self.harness_error(format!("disk-full: {e}"));
        }
        runtime::sleep(hold).await;
        let _ = std::fs::remove_file(&ballast);
        self.note(format!("disk-full: room again on m{slot}"));
        self.disarm_nospace().await;
    }

    /// Clears NOSPACE alarms (etcd's `alarm disarm`), retried for 20 s,
    /// until none has been listed for 3 s: a write that found the disk full
    /// just before the room came back may raise one after (the CI run's
    /// short pass found one raised the moment a first clean list returned).
    async fn disarm_nospace(&self) {
        let deadline = runtime::now() + Duration::from_secs(20);
        let mut clean_since: Option<Instant> = None;
        while runtime::now() < deadline {
            for addr in self.addrs() {
                let mut client = MaintenanceClient::new(channel(&addr));
                let get = AlarmRequest { action: AlarmAction::Get as i32, member_id: 0, alarm: AlarmType::None as i32 };
                let Ok(Ok(resp)) = runtime::timeout(Duration::from_secs(2), client.alarm(get)).await else { continue };
                let raised: Vec<_> =
                    resp.into_inner().alarms.into_iter().filter(|a| a.alarm == AlarmType::Nospace as i32).collect();
                if raised.is_empty() {
                    let since = *clean_since.get_or_insert_with(runtime::now);
                    if runtime::now() - since >= Duration::from_secs(3) {
                        return;
                    }
                    break;
                }
                clean_since = None;
                for alarm in raised {
                    let off = AlarmRequest {
                        action: AlarmAction::Deactivate as i32,
                        member_id: alarm.member_id,
                        alarm: AlarmType::Nospace as i32,
                    };
                    let _ = runtime::timeout(Duration::from_secs(2), client.alarm(off)).await;
                }
            }
            runtime::sleep(Duration::from_millis(500)).await;
        }
        self.harness_error("disk-full: a NOSPACE alarm could not be disarmed in 20 s".into());
    }

    /// Removes member `slot`, wipes its data dir and adds it back with `--join`.
    async fn rejoin(&self, slot: usize) {
        let id = self.member(slot).id;
        self.note(format!("rejoin: remove m{slot} (member {id:x}), wipe its data dir, join again"));
        let others: Vec<String> = (1..=self.members.len())
            .filter(|s| *s != slot)
            .map(|s| format!("{}:{CLIENT_PORT}", self.member(s).ip))
            .collect();
        // A removal is refused while the remaining voters lack a quorum of
        // started members (a member still restarting from the last fault).
        if !self.wait_serving(1..=self.members.len(), Duration::from_secs(30)).await {
            self.note("rejoin: not every member serves 30 s after the last fault; removing anyway");
        }
        let mut removed = false;
        let mut refusal = String::new();
        for _ in 0..40 {
            for addr in &others {
                let mut client = ClusterClient::new(channel(addr));
                let remove = runtime::timeout(Duration::from_secs(3), client.member_remove(MemberRemoveRequest { id }));
                match remove.await {
                    Ok(Ok(_)) => {
                        removed = true;
                        break;
                    }
                    Ok(Err(status)) => refusal = format!("{:?}: {}", status.code(), status.message()),
                    Err(_) => refusal = "timed out".into(),
                }
            }
            // A removal whose answer was lost may have been applied.
            if removed || self.member_ids().await.is_some_and(|ids| !ids.contains(&id)) {
                removed = true;
                break;
            }
            runtime::sleep(Duration::from_millis(500)).await;
        }
        if !removed {
            self.harness_error(format!("rejoin: m{slot} could not be removed in 20 s: {refusal}"));
            return;
        }
        self.kill(slot);
        {
            let m = self.member(slot);
            let _ = std::fs::remove_dir_all(&m.dir);
            let _ = std::fs::create_dir_all(&m.dir);
        }
        // Started with --join through the others; it gets a new member id.
        if let Err(e) = self.start_with(slot, Some(&others.join(","))) {
            self.harness_error(format!("rejoin: m{slot} could not be started: {e}"));
            return;
        }
        self.member(slot).joined = true;
        // Its new id, once it serves as a voter.
        let deadline = runtime::now() + Duration::from_secs(60);
        while runtime::now() < deadline {
            if let Some(status) = self.status(slot).await {
                let new_id = status.header.map_or(0, |h| h.member_id);
                if new_id != 0 && self.is_voter(new_id).await {
                    self.member(slot).id = new_id;
                    self.note(format!("rejoin: m{slot} is back as member {new_id:x}, a voter"));
                    return;
                }
            }
            runtime::sleep(Duration::from_millis(500)).await;
        }
        self.harness_error(format!("rejoin: m{slot} not a voter 60 s after joining"));
    }

    /// A linearizable member list from the first member that answers.
    async fn member_list(&self) -> Option<Vec<placement_center::proto::etcdserverpb::Member>> {
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
    async fn member_ids(&self) -> Option<Vec<u64>> {
        Some(self.member_list().await?.iter().map(|m| m.id).collect())
    }

    async fn is_voter(&self, id: u64) -> bool {
        self.member_list().await.is_some_and(|members| members.iter().any(|m| m.id == id && !m.is_learner))
    }

    /// Undoes whatever a fault may have left: rules removed, clocks back,
    /// stopped members continued, dead ones restarted.
    pub async fn heal(&self) {
        for slot in 1..=self.members.len() {
            let ns = self.member(slot).ns.clone();
            let _ = in_ns(&ns, &["nft", "delete", "table", "inet", "robust"]);
            let _ = in_ns(&ns, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
            if let Some(file) = self.member(slot).clock_file.clone() {
                let ahead = *self.clock_ahead.lock().unwrap_or_else(|e| e.into_inner());
                let _ = std::fs::write(file, format!("+{ahead}s x1.0\n"));
            }
            self.signal(slot, "-CONT");
            if let (true, Some(throttle)) = (slot == SLOW_DISK_MEMBER, &self.throttle) {
                let _ = throttle.limit(0, 0);
            }
            if self.exited(slot) {
                self.note(format!("heal: m{slot} had exited; restarted"));
                self.restart(slot);
            }
        }
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

fn nft_rules(ns: &str, rules: &[String]) -> Result<(), String> {
    let mut script = String::from("table inet robust {\n chain input { type filter hook input priority 0; }\n");
    script.push_str(" chain output { type filter hook output priority 0; }\n}\n");
    for rule in rules {
        let chain = if rule.starts_with("ip saddr") { "input" } else { "output" };
        script.push_str(&format!("add rule inet robust {chain} {rule}\n"));
    }
    let file = std::env::temp_dir().join(format!("robust-nft-{}-{ns}", std::process::id()));
    std::fs::write(&file, script).map_err(|e| e.to_string())?;
    let result = in_ns(ns, &["nft", "-f", &file.to_string_lossy()]).map(|_| ());
    let _ = std::fs::remove_file(file);
    result
}

/// Every member's watch history of the workload's keys up to `revision`,
/// from revision 1 (the suite's members keep their history: see `member.toml`).
async fn applied_history(addr: &str, revision: i64) -> Result<BTreeMap<i64, Vec<checker::watch::WatchEvent>>, String> {
    let mut client = WatchClient::new(channel(addr));
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let create = WatchCreateRequest {
        key: watchers::WATCHED.0.to_vec(),
        range_end: watchers::WATCHED.1.to_vec(),
        start_revision: 1,
        prev_kv: true,
        progress_notify: true,
        ..Default::default()
    };
    tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) })
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = client
        .watch(placement_center::api::context::receiver_stream(rx))
        .await
        .map_err(|e| format!("watch on {addr}: {e}"))?
        .into_inner();
    let mut events: BTreeMap<i64, Vec<checker::watch::WatchEvent>> = BTreeMap::new();
    loop {
        let next = runtime::timeout(Duration::from_secs(10), stream.message()).await;
        let resp = match next {
            Ok(Ok(Some(resp))) => resp,
            other => return Err(format!("the history watch on {addr} ended: {other:?}")),
        };
        if resp.canceled || resp.compact_revision > 0 {
            return Err(format!("the history watch on {addr} was canceled (compacted to {})", resp.compact_revision));
        }
        for e in &resp.events {
            let event = watchers::watch_event(e);
            if event.revision <= revision {
                events.entry(event.revision).or_default().push(event);
            }
        }
        let reached = resp.events.last().map_or(0, |e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision));
        if reached >= revision
            || (!resp.created && resp.events.is_empty() && resp.header.map_or(0, |h| h.revision) >= revision)
        {
            return Ok(events);
        }
        if resp.events.is_empty() {
            let progress = WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(
                    placement_center::proto::etcdserverpb::WatchProgressRequest {},
                )),
            };
            let _ = tx.send(progress).await;
        }
    }
}

/// Runs the workload under faults, heals, and checks. The cluster must be
/// started.
pub async fn run(cluster: &Cluster, opts: &Options) -> Report {
    let began = runtime::now();
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let addrs = cluster.addrs();
    let start = cluster.start;
    let until = runtime::now() + Duration::from_secs(opts.duration);
    let history: workload::History = Arc::new(Mutex::new(Vec::new()));
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let episodes = Arc::new(Mutex::new(Vec::new()));
    brokers::configure(addrs.clone()).await;
    let broker_history: brokers::BrokerHistory = Arc::new(Mutex::new(Vec::new()));
    let observed = Arc::new(Mutex::new(checker::brokers::Observed::default()));
    let (stop_observer, observer_stop) = tokio::sync::watch::channel(false);
    let (observer_done, observer) = tokio::sync::oneshot::channel();
    runtime::spawn_detached("node-watcher", {
        let watch = brokers::observe(addrs.clone(), observed.clone(), observer_stop);
        async move {
            watch.await;
            let _ = observer_done.send(());
        }
    });

    let clients = futures::future::join_all((0..opts.clients).map(|i| {
        let client = workload::Client::new(i, &addrs, start, history.clone());
        workload::client_loop(client, opts.keys, until)
    }));
    let watch =
        futures::future::join_all((0..2).map(|i| watchers::watcher_loop(i, addrs.clone(), until, sessions.clone())));
    let leases = futures::future::join_all(
        (0..2).map(|i| watchers::lease_loop(i, addrs.clone(), start, until, episodes.clone())),
    );
    let nemesis = async {
        // Every fault once per round, in an order drawn from the seed.
        let mut round = Vec::new();
        runtime::sleep(Duration::from_secs(2)).await;
        while runtime::now() + Duration::from_secs(3) < until && !opts.faults.is_empty() {
            if round.is_empty() {
                round = opts.faults.clone();
                round.shuffle(&mut rng);
            }
            let fault = round.pop().expect("refilled");
            cluster.inject(fault, &mut rng).await;
            let quiet = Duration::from_millis(rng.gen_range(500..2500));
            runtime::sleep(quiet).await;
        }
    };
    let brokers = brokers::run(BROKERS, &addrs, start, until, &broker_history);
    futures::join!(clients, watch, leases, brokers, nemesis, cluster.supervise(until));
    cluster.heal().await;
    cluster.note("heal: every fault undone; waiting for every member to serve");

    let mut violations = Vec::new();
    let n = addrs.len();
    if !cluster.wait_serving(1..=n, Duration::from_secs(60)).await {
        let down: Vec<usize> = {
            let mut down = Vec::new();
            for slot in 1..=n {
                if !cluster.serves(slot).await {
                    down.push(slot);
                }
            }
            down
        };
        violations.push(format!("members {down:?} do not serve a linearizable read 60 s after heal"));
    }
    // No member left unhealthy: each says SERVING and lists no alarm (within
    // 10 s more: health needs a leader's word since the last election).
    for slot in 1..=n {
        let deadline = runtime::now() + Duration::from_secs(10);
        let mut problem = cluster.unhealthy(slot).await;
        while problem.is_some() && runtime::now() < deadline {
            runtime::sleep(Duration::from_millis(500)).await;
            problem = cluster.unhealthy(slot).await;
        }
        violations.extend(problem);
    }
    // No acknowledged write lost: a final linearizable read of every key,
    // through every member in turn, joins the history.
    let keys: BTreeSet<String> =
        history.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|op| op.key.clone()).collect();
    let mut reader = workload::Client::new(opts.clients, &addrs, start, history.clone());
    for (i, key) in keys.iter().enumerate() {
        let mut read = false;
        for attempt in 0..10 {
            if matches!(reader.run((i + attempt) % n, key, Call::Get).await, Outcome::Read(_)) {
                read = true;
                break;
            }
        }
        if !read {
            violations.push(format!("final read of {key} failed on every member"));
        }
    }

    // Converged: every member at one revision, with one HashKV there.
    let checks_began = runtime::now();
    let mut revision = 0;
    let deadline = runtime::now() + Duration::from_secs(30);
    while runtime::now() < deadline {
        let mut revisions = BTreeSet::new();
        for slot in 1..=n {
            revisions.insert(cluster.status(slot).await.and_then(|s| s.header).map_or(-1, |h| h.revision));
        }
        if revisions.len() == 1 && !revisions.contains(&-1) {
            revision = *revisions.iter().next().expect("one");
            break;
        }
        runtime::sleep(Duration::from_millis(300)).await;
    }
    if revision == 0 {
        violations.push("the members did not reach one revision within 30 s of the final reads".into());
    } else {
        let mut hashes = BTreeMap::new();
        for (slot, addr) in addrs.iter().enumerate() {
            let mut client = MaintenanceClient::new(channel(addr));
            let hash = runtime::timeout(Duration::from_secs(5), client.hash_kv(HashKvRequest { revision })).await;
            match hash {
                Ok(Ok(resp)) => {
                    hashes.insert(slot + 1, resp.into_inner().hash);
                }
                other => violations.push(format!("HashKV at {revision} on m{}: {other:?}", slot + 1)),
            }
        }
        if hashes.values().collect::<BTreeSet<_>>().len() > 1 {
            violations.push(format!("members differ at revision {revision}: HashKV {hashes:?}"));
        }
    }

    // The applied history, as each member tells it, is one; the watchers'
    // sessions are checked against it.
    let mut truth = Truth { from: 1, ..Default::default() };
    if revision > 0 {
        let mut first: Option<(usize, BTreeMap<i64, Vec<checker::watch::WatchEvent>>)> = None;
        for (slot, addr) in addrs.iter().enumerate() {
            match applied_history(addr, revision).await {
                Ok(events) => match &first {
                    Some((other, known)) if *known != events => {
                        let differs = known.iter().find(|(rev, e)| events.get(rev) != Some(e)).map(|(rev, _)| *rev);
                        violations.push(format!(
                            "m{} and m{} applied different histories (first difference at revision {differs:?})",
                            other + 1,
                            slot + 1
                        ));
                    }
                    Some(_) => {}
                    None => first = Some((slot, events)),
                },
                Err(e) => violations.push(e),
            }
        }
        if let Some((_, events)) = first {
            truth.events = events;
        }
    }
    let history = history.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(checker::linearizability::check(&history).into_iter().map(|v| v.to_string()));
    violations.extend(checker::check_serializable_reads(&history));
    let sessions = sessions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let watched = |key: &str| key.as_bytes() >= watchers::WATCHED.0 && key.as_bytes() < watchers::WATCHED.1;
    if revision > 0 {
        violations.extend(checker::watch::check(&sessions, &truth, watched).into_iter().map(|v| v.to_string()));
    }
    let episodes = episodes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let excused = cluster.excused.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(checker::lease::check(&episodes, &excused).into_iter().map(|v| v.to_string()));

    // Every broker has been silent since the workload ended, longer than
    // the expiry by now: its registrations must be gone, and the node
    // watcher must have seen each broker's last one leave.
    // (A short run gets here within the expiry: asked again until 10 s
    // past it.)
    let broker_history = broker_history.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let gone = |observed: &checker::brokers::Observed, listed: &Result<Vec<(u64, i64)>, String>| match listed {
        Ok(listed) => checker::brokers::check_gone(&broker_history, observed, listed),
        Err(problem) => vec![checker::brokers::BrokerViolation(problem.clone())],
    };
    let deadline = until.max(runtime::now()) + brokers::EXPIRY + Duration::from_secs(10);
    let mut listed = brokers::still_listed(&addrs).await;
    while runtime::now() < deadline && !gone(&observed.lock().unwrap_or_else(|e| e.into_inner()), &listed).is_empty() {
        runtime::sleep(Duration::from_millis(500)).await;
        listed = brokers::still_listed(&addrs).await;
    }
    let _ = stop_observer.send(true);
    let _ = observer.await;
    let observed = observed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(gone(&observed, &listed).into_iter().map(|v| v.to_string()));
    violations.extend(
        checker::brokers::check(&broker_history, &observed, brokers::EXPIRY, &excused)
            .into_iter()
            .map(|v| v.to_string()),
    );
    let acknowledged = |registration: bool| {
        broker_history
            .iter()
            .filter(|op| op.answer == checker::brokers::Answer::Ok)
            .filter(|op| {
                if registration {
                    matches!(op.call, checker::brokers::Call::Register(Some(_)))
                } else {
                    matches!(op.call, checker::brokers::Call::Heartbeat(_))
                }
            })
            .count()
    };
    let broker_acks = (acknowledged(true), acknowledged(false));
    if broker_acks.0 == 0 || broker_acks.1 == 0 {
        violations.push(format!(
            "the brokers made {} registrations and {} heartbeats: the broker checks checked nothing",
            broker_acks.0, broker_acks.1
        ));
    }
    let events_seen: usize = sessions.iter().flat_map(|s| &s.responses).map(Vec::len).sum();
    if events_seen == 0 {
        violations.push("the watchers saw no event: the watch check checked nothing".into());
    }
    let counts = cluster.counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for fault in &opts.faults {
        if !counts.contains_key(fault.name()) {
            violations.push(format!("fault {} never ran: the run was too short for every fault", fault.name()));
        }
    }
    violations.extend(cluster.harness_errors.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
    if history.iter().filter(|op| op.outcome == Outcome::Written).count() == 0 {
        violations.push("no write was acknowledged: the checks checked nothing".into());
    }
    Report {
        ops: history.len(),
        unknown: history.iter().filter(|op| op.outcome == Outcome::Unknown).count(),
        faults: counts,
        sigkills: *cluster.sigkills.lock().unwrap_or_else(|e| e.into_inner()),
        watch_events: events_seen,
        watch_sessions: sessions.len(),
        leases: episodes.len(),
        lease_acks: episodes.iter().map(|e| e.acks.len()).sum(),
        broker_acks,
        violations,
        check_time: runtime::now() - checks_began,
        wall: runtime::now() - began,
    }
}
