//! The simulation's sleeps and timeouts (`runtime::sim_time`), which register
//! one timer event however often they are polled, still end at their
//! deadline and wake whichever task polled them last, and nobody once dropped.
#![cfg(madsim)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use placement_center::runtime::{self, sim_time};

fn simulate<F: Future>(future: F) -> F::Output {
    madsim::runtime::Runtime::with_seed_and_config(7, madsim::Config::default()).block_on(future)
}

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_sleep_ends_at_its_deadline_of_virtual_time() {
    simulate(async {
        let start = runtime::now();
        sim_time::sleep(Duration::from_millis(250)).await;
        let slept = runtime::now() - start;
        assert!(slept >= Duration::from_millis(250) && slept < Duration::from_millis(251), "{slept:?}");
    });
}

#[test]
fn a_sleep_polled_by_another_task_wakes_that_task() {
    simulate(async {
        let mut sleep = sim_time::sleep(Duration::from_millis(100));
        // Polled first with a waker that nobody waits on...
        let first = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&first));
        assert!(Pin::new(&mut sleep).poll(&mut Context::from_waker(&waker)).is_pending());
        // ...then moved into a task that awaits it: the deadline must wake
        // the task, not the first waker, or the task would hang.
        let start = runtime::now();
        let task = tokio::spawn(sleep);
        runtime::timeout(Duration::from_secs(1), task).await.expect("the task was woken").expect("no panic");
        assert!(runtime::now() - start < Duration::from_millis(101));
        assert_eq!(first.0.load(Ordering::SeqCst), 0, "the stale waker is not woken");
    });
}

#[test]
fn a_timeout_around_a_busy_future_lets_it_finish_and_a_stuck_one_elapse() {
    simulate(async {
        // A future woken a thousand times before it is done: the timeout is
        // polled on every wake-up and still answers with the future's output.
        let busy = async {
            for _ in 0..1000 {
                tokio::task::yield_now().await;
            }
            7
        };
        assert_eq!(sim_time::timeout(Duration::from_secs(1), busy).await.ok(), Some(7));

        let start = runtime::now();
        let stuck = sim_time::timeout(Duration::from_millis(300), std::future::pending::<()>()).await;
        assert!(stuck.is_err());
        let waited = runtime::now() - start;
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_millis(301), "{waited:?}");
    });
}

#[test]
fn a_timeout_that_finished_wakes_nobody_at_its_deadline() {
    simulate(async {
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&polls);
        let task = tokio::spawn(async move {
            // Done long before its deadline, after being polled a thousand times.
            let busy = async {
                for _ in 0..1000 {
                    tokio::task::yield_now().await;
                }
            };
            sim_time::timeout(Duration::from_millis(100), busy).await.expect("done in time");
            // Then wait past that deadline, counting every poll of this task.
            let mut sleep = sim_time::sleep(Duration::from_millis(300));
            std::future::poll_fn(|cx| {
                counted.fetch_add(1, Ordering::SeqCst);
                Pin::new(&mut sleep).poll(cx)
            })
            .await;
        });
        task.await.expect("no panic");
        // Once to start, once when its own sleep ended: the finished timeout's
        // deadline (madsim's own sleep left one event per poll there) woke nothing.
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    });
}
