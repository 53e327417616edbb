//! The seams: everything that touches time, tasks, randomness or the disk goes
//! through here, so that the same server code runs on tokio + RocksDB in
//! production and on madsim + SimDisk in simulation. `cfg(madsim)` may appear in
//! this module (and build.rs, and the one line of storage/mod.rs declaring
//! RocksDB) and nowhere else.

#![allow(clippy::disallowed_methods)] // this module IS the seam

mod async_rt;
pub mod buggify;
mod clock;
pub mod coverage;
mod disk;
mod net;
mod signal;
#[cfg(madsim)]
pub mod sim_time;
#[cfg(madsim)]
mod skew;
mod tasks;
mod tls;

pub use async_rt::{raft_now, PlacementRuntime};
pub use clock::{now, sleep, timeout, wall_clock_millis, Elapsed, Instant};
pub use disk::{blocking, engine_closed, open_engine};
pub use net::{await_resolvable, serve_limited, RoutesService};
pub use net::{serve, serve_http, HttpHandler, Listener, MAX_CONNECTIONS};
pub use signal::{notify_service_manager, shutdown_signal};
#[cfg(madsim)]
pub use skew::{reset_clocks, skew_clock, with_node_clock, SkewedInstant};
pub use tasks::{spawn_detached, Shutdown, TaskGroup};
pub use tls::{
    acceptor, client_server_builder, endpoint, peer_certificates, server_builder, TlsAcceptor, TlsError, TlsSettings,
};

/// A node's own monotonic clock, for decisions a node makes by its clock
/// alone (lease deadlines). In simulation each node's clock can be skewed.
#[cfg(not(madsim))]
pub type NodeInstant = tokio::time::Instant;
/// See the production definition.
#[cfg(madsim)]
pub type NodeInstant = SkewedInstant;

/// Whether this is the simulator's build: for costs that buy nothing there
/// (a password hash's memory and passes take wall time and no virtual time).
pub const fn simulated() -> bool {
    cfg!(madsim)
}

/// The clock a node starting now runs on, for [`node_now`] and
/// [`raft_now`] from any task: in simulation the clock of the simulated
/// machine the calling task runs on, which a replaced member keeps though
/// its member id (`node`) changes; `node` itself outside the simulator
/// (where there is one clock).
pub fn node_clock(node: u64) -> u64 {
    #[cfg(madsim)]
    return skew::current_node().unwrap_or(node);
    #[cfg(not(madsim))]
    node
}

/// Now on clock `node` (see [`NodeInstant`] and [`node_clock`]).
pub fn node_now(node: u64) -> NodeInstant {
    #[cfg(not(madsim))]
    {
        let _ = node;
        tokio::time::Instant::now()
    }
    #[cfg(madsim)]
    {
        skew::now_on(node)
    }
}

/// A random number generator seeded from the runtime: OS entropy in
/// production, the simulation's seed under madsim.
pub fn rng() -> impl rand::Rng {
    #[cfg(not(madsim))]
    {
        rand::thread_rng()
    }
    #[cfg(madsim)]
    {
        madsim::rand::thread_rng()
    }
}
