//! Sleeps and timeouts in simulation that each leave one timer event.
//!
//! madsim's `Sleep` adds an event to the simulation's timer heap (a boxed
//! callback holding a clone of the waker) every time it is polled while
//! pending, and the heap cannot drop an event before its deadline. A timeout
//! around a future that wakes often (a call that waits on several messages, a
//! Raft core turn) is polled once per wake-up of that future, so it piles up
//! events that all fire, and wake the task again, at the deadline. The
//! [`Sleep`] here registers one event on its first poll and keeps the latest
//! waker in a slot that the event wakes. Every deadline still fires at its
//! virtual time; only the spurious wake-ups go (so a seed's schedule is not
//! the one it had with madsim's `Sleep`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures::task::AtomicWaker;

/// Waits until a deadline of virtual time; see the module's doc.
pub struct Sleep {
    inner: tokio::time::Sleep,
    /// Set on the first pending poll, with the one timer event registered.
    slot: Option<Arc<WakerSlot>>,
}

/// The waker of the task that last polled a [`Sleep`].
#[derive(Default)]
struct WakerSlot(AtomicWaker);

impl Wake for WakerSlot {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

/// See [`Sleep`].
pub fn sleep(duration: Duration) -> Sleep {
    Sleep { inner: tokio::time::sleep(duration), slot: None }
}

/// See [`Sleep`].
pub fn sleep_until(deadline: tokio::time::Instant) -> Sleep {
    Sleep { inner: tokio::time::sleep_until(deadline), slot: None }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.is_elapsed() {
            return Poll::Ready(());
        }
        match &self.slot {
            // Clones the waker only if it is another task's.
            Some(slot) => slot.0.register(cx.waker()),
            None => {
                let slot = Arc::new(WakerSlot::default());
                slot.0.register(cx.waker());
                let event_waker = Waker::from(Arc::clone(&slot));
                // Pending (not elapsed, checked above): this registers the event.
                let _ = Pin::new(&mut self.inner).poll(&mut Context::from_waker(&event_waker));
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    /// The event stays in madsim's heap until its deadline; a sleep dropped
    /// before then (a timeout whose future finished first) wakes nobody.
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            drop(slot.0.take());
        }
    }
}

pin_project_lite::pin_project! {
    /// A future run for at most a [`Sleep`]'s time; the future is polled
    /// first, as tokio's and madsim's timeouts do. It is pinned in place, not
    /// boxed: one allocation less per timeout.
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

/// Runs `future` for at most `duration`.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep(duration) }
}

/// Runs `future` until `deadline` at most.
pub fn timeout_at<F: Future>(deadline: tokio::time::Instant, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep_until(deadline) }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, tokio::time::error::Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(tokio::time::error::Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}
