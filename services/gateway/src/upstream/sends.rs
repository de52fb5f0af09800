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
use telepath_shared::protocol::{InternalRoomSend, Message};
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

/// One send and its completion, which runs exactly once: with the api's
/// outcome, or with `unavailable` if the send is dropped unanswered (the
/// pipe stopped), so its connection never waits for it forever.
pub(crate) struct PendingSend {
    send: InternalRoomSend,
    done: Option<Done>,
}

impl PendingSend {
    pub(crate) fn new(send: InternalRoomSend, done: Done) -> Self {
        PendingSend {
            send,
            done: Some(done),
        }
    }

    fn finish(mut self, outcome: Result<Message, ApiError>) {
        if let Some(done) = self.done.take() {
            done(outcome);
        }
    }
}

impl Drop for PendingSend {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(Err(ApiError::unavailable("the gateway is stopping")));
        }
    }
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
        // A send the pipe no longer takes is dropped: its completion says so.
        let _ = self.tx.send(send).await;
    }
}

async fn run(api: ApiClient, mut rx: mpsc::Receiver<PendingSend>, metrics: GatewayMetrics) {
    let mut batch: Vec<PendingSend> = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(p) = next.take() {
            bytes += p.send.send.body.len();
            batch.push(p);
            if batch.len() < BATCH && bytes < BATCH_BODY_BYTES {
                next = rx.try_recv().ok();
            }
        }
        metrics.send_batch.observe(batch.len() as f64);
        let sends: Vec<&InternalRoomSend> = batch.iter().map(|p| &p.send).collect();
        match api.send_batch(&sends).await {
            Ok(answer) => {
                for (pending, outcome) in batch.drain(..).zip(answer.results) {
                    pending.finish(match (outcome.message, outcome.error) {
                        (Some(message), _) => Ok(message),
                        (None, Some(e)) => Err(e.into()),
                        (None, None) => Err(ApiError::internal("the api gave no outcome")),
                    });
                }
            }
            Err(e) => batch.drain(..).for_each(|p| p.finish(Err(e.clone()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use telepath_shared::protocol::{ErrorCode, InternalSend, UserRef};

    use super::*;

    fn a_send() -> InternalRoomSend {
        InternalRoomSend {
            room: "r".into(),
            send: InternalSend {
                from: UserRef {
                    id: "u".into(),
                    name: "u".into(),
                },
                body: "b".into(),
                kind: None,
                client_id: None,
                reply_to: None,
            },
            traceparent: None,
        }
    }

    #[test]
    fn a_completion_runs_once_and_a_dropped_send_completes_as_unavailable() {
        let (tx, rx) = channel();
        let answered = PendingSend::new(
            a_send(),
            Box::new({
                let tx = tx.clone();
                move |r| tx.send(r.err().map(|e| e.code)).unwrap()
            }),
        );
        answered.finish(Err(ApiError::new(ErrorCode::Forbidden, "no")));
        assert_eq!(rx.recv().unwrap(), Some(ErrorCode::Forbidden));
        assert!(rx.try_recv().is_err(), "not again when it is dropped");

        let dropped = PendingSend::new(
            a_send(),
            Box::new(move |r| tx.send(r.err().map(|e| e.code)).unwrap()),
        );
        drop(dropped);
        assert_eq!(rx.recv().unwrap(), Some(ErrorCode::Unavailable));
    }
}
