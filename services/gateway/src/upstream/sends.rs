//! The send pipe: every room message this gateway's clients send reaches the
//! api through it, as one ordered stream.
//!
//! One task takes the sends that are queued (up to [`BATCH`], or
//! [`BATCH_BODY_BYTES`] of bodies), posts them as one batch
//! (`POST /internal/messages`), and hands each outcome to its sender's
//! completion; the next batch goes once this one is answered. With one batch
//! in flight, the api sees each connection's sends in the order the
//! connection sent them, so they get their seqs in that order. Under load,
//! batches grow by themselves (what arrives during one round trip goes in the
//! next), so the api commits many messages per request, and no timer adds
//! latency when the load is light.

use telepath_shared::http::ApiError;
use telepath_shared::protocol::{InternalRoomSend, InternalSendBatch, Message};
use tokio::sync::mpsc;

use super::ApiClient;
use crate::GatewayMetrics;

/// Most sends in one batch.
const BATCH: usize = 256;
/// A batch stops growing once its bodies add up to this many bytes.
const BATCH_BODY_BYTES: usize = 512 * 1024;
/// Sends waiting for the pipe; a session that finds it full waits for room.
const QUEUE: usize = 8192;

/// What to do with a send's outcome (queue the sender's reply).
pub(crate) type Done = Box<dyn FnOnce(Result<Message, ApiError>) + Send>;

/// One send and its completion.
pub(crate) struct PendingSend {
    pub(crate) send: InternalRoomSend,
    pub(crate) done: Done,
}

/// Queues sends for the api, in order; cheap to clone.
#[derive(Clone)]
pub(crate) struct SendPipe {
    tx: mpsc::Sender<PendingSend>,
}

impl SendPipe {
    /// Starts the pipe's task; it ends once every handle is dropped.
    pub(crate) fn spawn(api: ApiClient, metrics: GatewayMetrics) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(api, rx, metrics));
        SendPipe { tx }
    }

    /// Queues `send` behind every send queued before it, waiting for room.
    /// Its completion runs once the api has answered (or failed).
    pub(crate) async fn submit(&self, send: PendingSend) {
        if let Err(mpsc::error::SendError(send)) = self.tx.send(send).await {
            (send.done)(Err(ApiError::unavailable("the gateway is stopping")));
        }
    }
}

async fn run(api: ApiClient, mut rx: mpsc::Receiver<PendingSend>, metrics: GatewayMetrics) {
    let mut sends = Vec::with_capacity(BATCH);
    let mut done = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(p) = next.take() {
            bytes += p.send.send.body.len();
            sends.push(p.send);
            done.push(p.done);
            if sends.len() < BATCH && bytes < BATCH_BODY_BYTES {
                next = rx.try_recv().ok();
            }
        }
        metrics.send_batch.observe(sends.len() as f64);
        let batch = InternalSendBatch {
            sends: std::mem::take(&mut sends),
        };
        match api.send_batch(&batch).await {
            Ok(answer) => {
                for (done, outcome) in done.drain(..).zip(answer.results) {
                    done(match (outcome.message, outcome.error) {
                        (Some(message), _) => Ok(message),
                        (None, Some(e)) => Err(ApiError::new(e.code, e.message)),
                        (None, None) => Err(ApiError::internal("the api gave no outcome")),
                    });
                }
            }
            Err(e) => done.drain(..).for_each(|done| done(Err(e.clone()))),
        }
        // Reuse the batch's buffer for the next one.
        sends = batch.sends;
        sends.clear();
    }
}
