//! The faults of a robustness run, each injected into the members and
//! undone before the next (see `Fault`), and `heal`, which undoes whatever a
//! fault may have left.

use std::path::PathBuf;
use std::time::Duration;

use placement_center::proto::etcdserverpb::alarm_request::AlarmAction;
use placement_center::proto::etcdserverpb::cluster_client::ClusterClient;
use placement_center::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use placement_center::proto::etcdserverpb::{AlarmRequest, AlarmType, MemberRemoveRequest};
use placement_center::runtime::{self, Instant};
use rand::rngs::SmallRng;
use rand::Rng;

use super::cluster::*;
use super::Fault;

/// The slow-disk member's throttle: a blkio cgroup (v1) of its own and the
/// loop device under its data dir.
pub(super) struct Throttle {
    /// The cgroup's directory (the runner mounts the blkio hierarchy:
    /// `ip netns exec` hides the machine's /sys/fs/cgroup).
    cgroup: PathBuf,
    /// The loop device, as major:minor.
    device: String,
}

impl Throttle {
    /// An ext4 image mounted on `dir` through a loop device, and a cgroup
    /// for the member's process.
    pub(super) fn new(work: &std::path::Path, dir: &std::path::Path) -> Result<Self, String> {
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

    pub(super) fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.cgroup.join(file);
        std::fs::write(&path, value).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Moves process `pid` into the cgroup.
    pub(super) fn admit(&self, pid: u32) -> Result<(), String> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// Writes limited to `iops` and `bps` a second (0, 0: unlimited).
    pub(super) fn limit(&self, iops: u64, bps: u64) -> Result<(), String> {
        self.write("blkio.throttle.write_iops_device", &format!("{} {iops}", self.device))?;
        self.write("blkio.throttle.write_bps_device", &format!("{} {bps}", self.device))
    }

    /// Writes the member's processes made to the device through the cgroup.
    pub(super) fn writes(&self) -> u64 {
        let served = std::fs::read_to_string(self.cgroup.join("blkio.throttle.io_serviced")).unwrap_or_default();
        let prefix = format!("{} Write ", self.device);
        served.lines().find_map(|l| l.strip_prefix(&prefix).and_then(|n| n.trim().parse().ok())).unwrap_or(0)
    }

    /// Removes the cgroup (its processes gone) and unmounts the hierarchy.
    pub(super) fn remove(&self) {
        let _ = std::fs::remove_dir(&self.cgroup);
        if let Some(hierarchy) = self.cgroup.parent() {
            let _ = sh("umount", &[&hierarchy.to_string_lossy()]);
        }
    }
}

impl Cluster {
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
                self.excuse_skew(began);
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
