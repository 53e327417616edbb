//! Named long-running tasks with an explicit shutdown.
//!
//! A [`TaskGroup`] spawns every long-running task of a node by name and can stop
//! them: it flips a shared [`Shutdown`] signal, then awaits the tasks in the
//! reverse order of their spawning (the last started is the first stopped).

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;
use tracing::Instrument;

/// A signal that tells tasks to stop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Completes once shutdown has been requested (or the group is gone).
    pub async fn wait(&mut self) {
        // An error means the sender is gone, which is a shutdown too.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }
}

/// The set of named tasks of one node.
pub struct TaskGroup {
    /// Flipped to `true` once, by [`TaskGroup::shutdown`].
    stop: watch::Sender<bool>,
    /// Spawned tasks in spawn order, with their names for logs.
    tasks: Mutex<Vec<(String, tokio::task::JoinHandle<()>)>>,
}

impl Default for TaskGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskGroup {
    /// An empty group.
    pub fn new() -> Self {
        let (stop, _) = watch::channel(false);
        Self { stop, tasks: Mutex::new(Vec::new()) }
    }

    /// The shutdown signal tasks of this group listen to.
    pub fn shutdown_signal(&self) -> Shutdown {
        Shutdown { rx: self.stop.subscribe() }
    }

    /// Spawns a named task; it should finish soon after the shutdown signal.
    pub fn spawn<F>(&self, name: &str, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(future.instrument(tracing::info_span!("task", name)));
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_string(), handle));
    }

    /// Signals shutdown and waits for every task, last spawned first.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for (name, handle) in tasks.into_iter().rev() {
            if let Err(err) = handle.await {
                tracing::warn!(task = %name, cause = %err, "task ended abnormally");
            }
        }
    }
}

/// Spawns a short-lived task that needs no shutdown (e.g. one request).
pub fn spawn_detached<F>(name: &'static str, future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    drop(tokio::spawn(future.instrument(tracing::debug_span!("task", name))));
}
