//! The seams: everything that touches time, tasks, randomness or the disk goes
//! through here, so that the same server code runs on tokio + RocksDB in
//! production and on madsim + SimDisk in simulation. `cfg(madsim)` may appear in
//! this module (and build.rs, and the one line of storage/mod.rs declaring
//! RocksDB) and nowhere else.

#![allow(clippy::disallowed_methods)] // this module IS the seam

mod async_rt;
mod clock;
mod disk;
mod net;
mod signal;
#[cfg(madsim)]
mod skew;
mod tasks;

pub use async_rt::PlacementRuntime;
pub use clock::{now, sleep, timeout, wall_clock_millis, Elapsed, Instant};
pub use disk::open_engine;
pub use net::{serve, Listener};
pub use signal::shutdown_signal;
#[cfg(madsim)]
pub use skew::{reset_clocks, skew_clock, with_node_clock, SkewedInstant};
pub use tasks::{spawn_detached, Shutdown, TaskGroup};

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
