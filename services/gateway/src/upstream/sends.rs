//! The send pipe: every room message and DM this gateway's clients send
//! reaches the api through it, as one ordered stream.
//!
//! One task takes what is queued (up to [`BATCH`] items, or
//! [`BATCH_BODY_BYTES`] of bodies), posts it as one batch
//! (`POST /internal/messages`: the room messages and the DMs, each list in
//! queue order), and hands each outcome to its sender's completion; the next
//! batch goes once this one is answered. With one batch in flight, the api
//! sees each connection's sends and DMs in the order the connection sent
//! them, so its room messages get their seqs in that order. Under load,
//! batches grow by themselves (what arrives during one round trip goes in
//! the next), so the api commits many messages per request, and no timer
//! adds latency when the load is light.

use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    ChangeOp, ChangeResult, DmResult, ErrorBody, InternalChange, InternalDm, InternalRoomSend,
    InternalSendBatch, Message,
};
use tokio::sync::mpsc;

use super::ApiClient;
use crate::GatewayMetrics;

/// Most items in one batch.
const BATCH: usize = 256;
/// A batch stops growing once its bodies add up to this many bytes.
const BATCH_BODY_BYTES: usize = 512 * 1024;
/// Items waiting for the pipe; a session that finds it full waits for room.
const QUEUE: usize = 8192;

/// What a client sends through the pipe.
pub(crate) enum Sendable {
    Room(InternalRoomSend),
    Dm(InternalDm),
    Change(InternalChange),
}

impl Sendable {
    fn body_len(&self) -> usize {
        match self {
            Sendable::Room(s) => s.send.body.len(),
            Sendable::Dm(d) => d.body.len(),
            Sendable::Change(c) => c.body.as_ref().map_or(0, String::len),
        }
    }
}

/// What the api made of a [`Sendable`].
pub(crate) enum Outcome {
    Message(Message),
    Dm(DmResult),
    /// What a change did, and which op it was.
    Change(ChangeOp, ChangeResult),
}

/// What to do with an item's outcome (queue the sender's reply).
pub(crate) type Done = Box<dyn FnOnce(Result<Outcome, ApiError>) + Send>;

/// One item and its completion, which runs exactly once: with the api's
/// outcome, or with `unavailable` if the item is dropped unanswered (the
/// pipe stopped), so its connection never waits for it forever.
pub(crate) struct PendingSend {
    /// Taken when the batch it is in is posted.
    item: Option<Sendable>,
    done: Option<Done>,
}

impl PendingSend {
    pub(crate) fn new(item: Sendable, done: Done) -> Self {
        PendingSend {
            item: Some(item),
            done: Some(done),
        }
    }

    fn body_len(&self) -> usize {
        self.item.as_ref().map_or(0, Sendable::body_len)
    }

    fn finish(mut self, outcome: Result<Outcome, ApiError>) {
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

/// Queues sends and DMs for the api, in order; cheap to clone.
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

    /// Queues `send` behind everything queued before it, waiting for room.
    /// Its completion runs once the api has answered (or failed).
    pub(crate) async fn submit(&self, send: PendingSend) {
        // An item the pipe no longer takes is dropped: its completion says so.
        let _ = self.tx.send(send).await;
    }
}

async fn run(api: ApiClient, mut rx: mpsc::Receiver<PendingSend>, metrics: GatewayMetrics) {
    let mut batch: Vec<PendingSend> = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(p) = next.take() {
            bytes += p.body_len();
            batch.push(p);
            if batch.len() < BATCH && bytes < BATCH_BODY_BYTES {
                next = rx.try_recv().ok();
            }
        }
        metrics.send_batch.observe(batch.len() as f64);
        post(&api, std::mem::take(&mut batch)).await;
    }
}

/// Posts one batch and completes each item with its outcome, in the order
/// the items were queued (so a connection's replies keep the order of its
/// requests, sends and DMs mixed).
async fn post(api: &ApiClient, items: Vec<PendingSend>) {
    let mut body = InternalSendBatch::default();
    // Each item's kind, in queue order: its outcome is the next of that kind.
    let mut kinds = Vec::with_capacity(items.len());
    let mut pending = Vec::with_capacity(items.len());
    for mut p in items {
        match p.item.take() {
            Some(Sendable::Room(send)) => {
                body.sends.push(send);
                kinds.push(Kind::Room);
            }
            Some(Sendable::Dm(dm)) => {
                body.dms.push(dm);
                kinds.push(Kind::Dm);
            }
            Some(Sendable::Change(c)) => {
                kinds.push(Kind::Change(c.op));
                body.changes.push(c);
            }
            None => continue,
        }
        pending.push(p);
    }
    match api.send_batch(&body).await {
        Ok(answer) => {
            let mut rooms = answer.results.into_iter();
            let mut dms = answer.dms.into_iter();
            let mut changes = answer.changes.into_iter();
            for (p, kind) in pending.into_iter().zip(kinds) {
                let outcome = match kind {
                    Kind::Room => rooms
                        .next()
                        .map(|o| outcome_of(o.message, o.error, Outcome::Message)),
                    Kind::Dm => dms.next().map(|o| outcome_of(o.dm, o.error, Outcome::Dm)),
                    Kind::Change(op) => changes
                        .next()
                        .map(|o| outcome_of(o.change, o.error, |c| Outcome::Change(op, c))),
                };
                // `send_batch` checked there is one outcome per item.
                p.finish(outcome.unwrap_or_else(|| Err(ApiError::internal("no outcome"))));
            }
        }
        Err(e) => pending.into_iter().for_each(|p| p.finish(Err(e.clone()))),
    }
}

/// Which list of the batch an item went to.
#[derive(Clone, Copy)]
enum Kind {
    Room,
    Dm,
    Change(ChangeOp),
}

/// An item's outcome from the api's answer: what it made, or why not.
fn outcome_of<T>(
    made: Option<T>,
    error: Option<ErrorBody>,
    outcome: impl FnOnce(T) -> Outcome,
) -> Result<Outcome, ApiError> {
    match (made, error) {
        (Some(made), _) => Ok(outcome(made)),
        (None, Some(e)) => Err(e.into()),
        (None, None) => Err(ApiError::internal("the api gave no outcome")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;

    use telepath_shared::protocol::{ErrorCode, InternalSend, UserRef};

    use super::*;

    fn a_send() -> Sendable {
        Sendable::Room(InternalRoomSend {
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
        })
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
