//! Heartbeats for a registered node, in the background, until the
//! registration is lost or the helper is dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::Code;

use super::{Client, ClientError, Registration};
use crate::rt;

/// Why a kept-alive registration is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// The server refused a heartbeat: the node was registered again with a
    /// newer epoch (FailedPrecondition), or expired or was unregistered
    /// (NotFound). Register again to come back.
    Refused {
        /// The server's code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// No heartbeat was acknowledged for the whole expiry: the registration
    /// has most likely expired.
    Silent {
        /// How long nothing was acknowledged.
        since: Duration,
        /// The last error.
        last_error: String,
    },
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Refused { message, .. } => write!(f, "registration refused: {message}"),
            Lost::Silent { since, last_error } => {
                write!(f, "no heartbeat acknowledged for {since:?} (last error: {last_error})")
            }
        }
    }
}

/// Heartbeats running for one registration; dropping it stops them.
pub struct KeepAlive {
    lost: watch::Receiver<Option<Lost>>,
    acked: watch::Receiver<u64>,
    /// Dropped with the helper: the task sees the channel close and stops.
    _stop: watch::Sender<()>,
}

impl KeepAlive {
    /// Waits until the registration is lost, and says why.
    pub async fn lost(&mut self) -> Lost {
        loop {
            if let Some(lost) = self.lost.borrow().clone() {
                return lost;
            }
            if self.lost.changed().await.is_err() {
                // The task ended without a reason: it was stopped.
                return Lost::Silent { since: Duration::ZERO, last_error: "keep-alive stopped".to_string() };
            }
        }
    }

    /// Why the registration is lost, if it is.
    pub fn is_lost(&self) -> Option<Lost> {
        self.lost.borrow().clone()
    }

    /// Heartbeats acknowledged so far.
    pub fn acknowledged(&self) -> u64 {
        *self.acked.borrow()
    }
}

impl Client {
    /// Starts heartbeating for `registration` every heartbeat interval.
    pub fn keep_alive(self: &Arc<Self>, registration: &Registration) -> KeepAlive {
        let (lost_tx, lost) = watch::channel(None);
        let (acked_tx, acked) = watch::channel(0);
        let (stop, mut stopped) = watch::channel(());
        let client = self.clone();
        let registration = registration.clone();
        rt::spawn_detached("client-keep-alive", async move {
            let interval = registration.heartbeat_interval;
            let mut last_ack = rt::now();
            loop {
                tokio::select! {
                    biased;
                    _ = stopped.changed() => return,
                    _ = rt::sleep(interval) => {}
                }
                // One heartbeat may not take longer than the interval: the next is due.
                let attempt = rt::timeout(interval, client.heartbeat(&registration.node)).await;
                let error = match attempt {
                    Ok(Ok(_)) => {
                        last_ack = rt::now();
                        acked_tx.send_modify(|n| *n += 1);
                        continue;
                    }
                    Ok(Err(ClientError::Status { status, .. }))
                        if matches!(status.code(), Code::NotFound | Code::FailedPrecondition) =>
                    {
                        let _ =
                            lost_tx.send(Some(Lost::Refused { code: status.code(), message: status.message().into() }));
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => {
                        client.rotate();
                        "heartbeat timed out".to_string()
                    }
                };
                let since = rt::now() - last_ack;
                tracing::debug!(cause = %error, ?since, "heartbeat failed");
                if since >= registration.expiry {
                    let _ = lost_tx.send(Some(Lost::Silent { since, last_error: error }));
                    return;
                }
            }
        });
        KeepAlive { lost, acked, _stop: stop }
    }
}
