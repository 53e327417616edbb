//! openraft's async runtime, routed through our seams. Outside the simulator
//! it is openraft's own tokio runtime. Under madsim, openraft's `TokioRuntime`
//! would spawn on the real tokio and panic, so Raft gets this one: tasks,
//! sleeps and timeouts through madsim's tokio, each node's timers on its own
//! (skewable) clock, and randomness from the simulation's seeded generator.
//! Channels and the mutex are tokio's `sync` types in both flavours: they
//! need no runtime.

/// The `AsyncRuntime` of Placement Center's Raft.
#[cfg(not(madsim))]
pub type PlacementRuntime = openraft_rt_tokio::TokioRuntime;

#[cfg(madsim)]
pub use sim::PlacementRuntime;

/// The time now on the clock of `node`'s Raft, whichever task asks (in
/// simulation each node's clock may be skewed; a task of the harness has
/// none of its own).
pub fn raft_now(node: u64) -> <PlacementRuntime as openraft::AsyncRuntime>::Instant {
    #[cfg(madsim)]
    return crate::runtime::skew::now_on(node);
    #[cfg(not(madsim))]
    {
        let _ = node;
        <openraft_rt_tokio::TokioInstant as openraft::Instant>::now()
    }
}

#[cfg(madsim)]
mod sim {
    use std::future::Future;
    use std::time::Duration;

    use openraft::{AsyncRuntime, OptionalSend};
    use openraft_rt_tokio::{TokioMpsc, TokioMutex, TokioOneshot, TokioWatch};

    use crate::runtime::{sim_time, skew};

    /// The `AsyncRuntime` of Placement Center's Raft in simulation.
    #[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
    pub struct PlacementRuntime;

    /// openraft's randomness (election timeouts) drawn from the simulation's
    /// seeded generator, so a seed replays the same elections.
    pub struct SimRng(madsim::rand::GlobalRng);

    impl rand_core_010::TryRng for SimRng {
        type Error = std::convert::Infallible;

        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(rand::RngCore::next_u32(&mut self.0))
        }

        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(rand::RngCore::next_u64(&mut self.0))
        }

        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            rand::RngCore::fill_bytes(&mut self.0, dst);
            Ok(())
        }
    }

    impl AsyncRuntime for PlacementRuntime {
        type JoinError = tokio::task::JoinError;
        type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
        // One timer event per sleep (see sim_time), however often it is polled.
        type Sleep = sim_time::Sleep;
        // Each simulated node's Raft timers run on its own (skewable) clock.
        type Instant = skew::SkewedInstant;
        type TimeoutError = tokio::time::error::Elapsed;
        type Timeout<R, T: Future<Output = R> + OptionalSend> = sim_time::Timeout<T>;
        type ThreadLocalRng = SimRng;
        type Mpsc = TokioMpsc;
        type Watch = TokioWatch;
        type Oneshot = TokioOneshot;
        type Mutex<T: OptionalSend + 'static> = TokioMutex<T>;

        fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
        where
            T: Future + OptionalSend + 'static,
            T::Output: OptionalSend + 'static,
        {
            // Raft's tasks keep the clock of the node that spawned them.
            match skew::current_node() {
                Some(node) => tokio::spawn(skew::scoped(node, future)),
                None => tokio::spawn(future),
            }
        }

        fn sleep(duration: Duration) -> Self::Sleep {
            sim_time::sleep(skew::global_duration(duration))
        }

        fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
            sim_time::sleep_until(deadline.to_global())
        }

        fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
            sim_time::timeout(skew::global_duration(duration), future)
        }

        fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
            deadline: Self::Instant,
            future: F,
        ) -> Self::Timeout<R, F> {
            sim_time::timeout_at(deadline.to_global(), future)
        }

        fn is_panic(join_error: &Self::JoinError) -> bool {
            join_error.is_panic()
        }

        fn thread_rng() -> Self::ThreadLocalRng {
            SimRng(madsim::rand::thread_rng())
        }

        fn new(_threads: usize) -> Self {
            PlacementRuntime
        }

        /// Runs `future` in a simulation of its own (openraft's helpers for
        /// tests; the server never calls it).
        fn block_on<F, T>(&mut self, future: F) -> T
        where
            F: Future<Output = T>,
        {
            madsim::runtime::Runtime::new().block_on(future)
        }
    }
}
