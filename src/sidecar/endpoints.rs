//! Where the HTTP handlers get their answers: the engine's control channel
//! and status, and the hostfile writer's status. Shared by the plain
//! endpoints (`serve`) and `peergate run`'s lease (`lease`).

use tokio::sync::{mpsc, oneshot, watch};

use crate::rendezvous::{Control, Snapshot, Status};

/// Requests of the workload API served at once (each waiting one holds a
/// connection): the rest of the loopback listener's connections stay for
/// `peergate await` and `peergate run`'s lease.
pub const MAX_EXCHANGE: usize = 48;

/// Where the handlers get their answers.
#[derive(Clone)]
pub struct Endpoints {
    pub control: mpsc::Sender<Control>,
    /// The engine's status.
    pub status: watch::Receiver<Status>,
    /// Moves with every change of the engine's table (boards included).
    pub changes: watch::Receiver<u64>,
    /// The hostfile writer's, when there is a hostfile: a round shows as
    /// released only once its hand-off is written.
    pub written: Option<watch::Receiver<Status>>,
    /// Permits for the workload API's requests ([`MAX_EXCHANGE`]).
    pub exchange_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Endpoints {
    pub async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> Control) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.control.send(request(tx)).await.ok()?;
        rx.await.ok()
    }

    pub async fn snapshot(&self) -> Option<Snapshot> {
        self.ask(Control::Snapshot).await
    }

    /// The status as the endpoints show it: the engine's, with a round
    /// that is not written yet shown as not released.
    pub fn current(&self) -> Status {
        let mut s = self.status.borrow().clone();
        if let Some(written) = &self.written {
            let w = written.borrow();
            if !w.released {
                s.released = false;
                s.live = false;
            } else if w.round < s.round {
                s.live = false;
            }
        }
        s
    }

    /// Waits until the shown status satisfies `ready`; `None` once the
    /// engine is gone.
    pub async fn wait_for(&mut self, ready: impl Fn(&Status) -> bool) -> Option<Status> {
        loop {
            let now = self.current();
            if ready(&now) {
                return Some(now);
            }
            let written = async {
                match self.written.as_mut() {
                    Some(w) => w.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.status.changed() => changed.ok()?,
                changed = written => changed.ok()?,
            }
        }
    }
}
