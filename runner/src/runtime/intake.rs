//! Group commit for sources that accept one record per request (webhooks): concurrent
//! requests are queued to one writer that commits them together, so one fsync
//! acknowledges many records. Each request still gets its 2xx only after the commit
//! that holds its record.

use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::queue::{Accepted, Envelope, Offer, Prepared, Queue};

/// Records committed together at most.
const GROUP: usize = 256;

struct Request {
    flow: String,
    envelope: Envelope,
    prepared: Option<Prepared>,
    delivery_expires_ms: i64,
    max_pending: u64,
    max_bytes: u64,
    reply: oneshot::Sender<Result<Accepted, String>>,
}

/// The writer's front: cheap to share between request handlers.
pub struct IntakeWriter {
    tx: mpsc::Sender<Request>,
    rx: Mutex<Option<mpsc::Receiver<Request>>>,
}

impl IntakeWriter {
    /// A writer whose task [`IntakeWriter::task`] gives.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(4 * GROUP);
        Self { tx, rx: Mutex::new(Some(rx)) }
    }

    /// The writer task on `queue`, for the caller to spawn (once; later calls give
    /// `None`).
    pub fn task(&self, queue: Queue) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        self.rx.lock().unwrap_or_else(|p| p.into_inner()).take().map(|rx| run(queue, rx))
    }

    /// Durably queues `envelope` unless the queue holds `max_pending` records or
    /// `max_bytes` bytes (see [`Offer`]), committed with whatever
    /// else arrived meanwhile; `prepared`, when given, is the record already mapped, placed
    /// past the inbox in the same commit when the flow allows (see [`Offer::prepared`]).
    /// The error is the store's message.
    pub async fn accept(
        &self,
        flow: &str,
        envelope: Envelope,
        prepared: Option<Prepared>,
        delivery_expires_ms: i64,
        (max_pending, max_bytes): (u64, u64),
    ) -> Result<Accepted, String> {
        let (reply, answer) = oneshot::channel();
        let flow = flow.to_string();
        let request = Request { flow, envelope, prepared, delivery_expires_ms, max_pending, max_bytes, reply };
        self.tx.send(request).await.map_err(|_| "the intake writer has stopped".to_string())?;
        answer.await.map_err(|_| "the intake writer has stopped".to_string())?
    }
}

impl Default for IntakeWriter {
    fn default() -> Self {
        Self::new()
    }
}

async fn run(queue: Queue, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        // The requests go to the blocking thread and come back with the outcomes: their
        // envelopes (4 KB each) are moved, not copied.
        let (group, committed) = tokio::task::spawn_blocking({
            let queue = queue.clone();
            move || {
                let offers: Vec<Offer<'_>> = group
                    .iter()
                    .map(|r| Offer {
                        flow: &r.flow,
                        envelope: &r.envelope,
                        delivery_expires_ms: r.delivery_expires_ms,
                        max_pending: r.max_pending,
                        max_bytes: r.max_bytes,
                        prepared: r.prepared.as_ref(),
                    })
                    .collect();
                let committed = queue.accept_group(&offers);
                drop(offers);
                (group, committed)
            }
        })
        .await
        .expect("queue write panicked");
        match committed {
            Ok(outcomes) => {
                for (request, outcome) in group.into_iter().zip(outcomes) {
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                warn!(records = group.len(), error = %e, "cannot commit webhooks; their senders will retry");
                let message = e.to_string();
                for request in group {
                    let _ = request.reply.send(Err(message.clone()));
                }
            }
        }
    }
}
