//! `placement-sim`: the whole Placement Center cluster inside madsim's
//! deterministic simulator. One seed = one run: a cluster, clients running a
//! workload through the real gRPC API, a nemesis injecting faults drawn from the
//! seed, then heal, convergence and checkers over the recorded history.
//!
//! - [`history`], [`checker`]: the recorded history and the checkers over
//!   it, from `placement-check` (shared with the robustness suite).
//! - `workload`, `watchers`, `brokers`: KV clients, watchers, lease holders
//!   and brokers recording histories, in both flavours (the simulator's
//!   nodes, or real sockets).
//! - `cluster`, `nemesis`, `run` (only with `--cfg madsim`): the harness,
//!   the faults and one seed's run; `hosts`: who sits at which simulated
//!   address.
//! - `scenarios` (only with `--cfg madsim`): regression scenarios, explicit
//!   fault schedules that keep reproducing a bug's shape as the code moves;
//!   by subject in `auth_scenarios`, `disk_scenarios`, `lease_scenarios`,
//!   `membership_scenarios` and `shard_scenarios`.
//! - `robust` (only without madsim): the robustness suite, real processes in
//!   network namespaces under real faults (`ci/robustness.sh`).

pub use placement_check::{checker, history};

#[cfg(madsim)]
pub mod auth;
#[cfg(madsim)]
pub mod auth_scenarios;
pub mod brokers;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod consumers;
#[cfg(madsim)]
pub mod disk_scenarios;
#[cfg(madsim)]
pub mod forgery;
#[cfg(madsim)]
pub mod hosts;
#[cfg(madsim)]
pub mod lease_scenarios;
#[cfg(madsim)]
pub mod membership_scenarios;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(not(madsim))]
pub mod robust;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod scenarios;
#[cfg(madsim)]
pub mod shard_scenarios;
#[cfg(madsim)]
pub mod shards;
pub mod watchers;
pub mod workload;

/// The endpoint of a member's client address (connect attempts time out
/// after 1 s).
pub(crate) fn endpoint(addr: &str) -> tonic::transport::Endpoint {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid address")
        .connect_timeout(std::time::Duration::from_secs(1))
}

/// How often a caller gives up on a call after 1-300 ms instead of at its
/// deadline, cancelling it at a random point (sent or not, applied or not).
const CANCEL_EARLY: f64 = 0.03;

/// The deadline a caller gives a call whose usual one is `usual`: now and
/// then a short random one (see [`CANCEL_EARLY`]).
pub(crate) fn caller_deadline(usual: std::time::Duration) -> std::time::Duration {
    use rand::Rng;
    let mut rng = placement_center::runtime::rng();
    if rng.gen_bool(CANCEL_EARLY) {
        std::time::Duration::from_millis(rng.gen_range(1..300))
    } else {
        usual
    }
}

/// A lazily connected channel to a member's client address.
pub(crate) fn channel(addr: &str) -> tonic::transport::Channel {
    endpoint(addr).connect_lazy()
}

/// `message` as a request: with the simulator's auth on, carrying root's token.
pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
    #[cfg(madsim)]
    return auth::request(message);
    #[cfg(not(madsim))]
    tonic::Request::new(message)
}
