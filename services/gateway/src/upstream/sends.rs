//! Room messages to the api in batches: every session's `send` joins a
//! queue, and one task posts whatever is queued to `POST /internal/messages`
//! as one request (at most [`BATCH`] messages, [`IN_FLIGHT`] requests at a
//! time), then hands each session its own result.
//!
//! At low load a batch is one message and costs what a single request did;
//! under load the messages that queue while a request is in flight travel
//! together, so the api parses, commits and answers them as one. Each
//! message keeps its sender's trace context. A session never has two sends
//! in flight (it handles its frames in order), so batching reorders nothing
//! that matters: the api assigns seqs as it commits.

use std::sync::Arc;

use telepath_shared::http::ApiError;
use telepath_shared::protocol::{
    InternalRoomSend, InternalSend, InternalSendBatch, InternalSendResults, Message,
};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::ApiClient;

/// Messages in one request at most.
const BATCH: usize = 256;
/// Requests in flight at once.
const IN_FLIGHT: usize = 4;
/// Sends that may wait for a request (sessions wait for their reply, so
/// this is bounded by the connections anyway).
const QUEUE: usize = 16_384;

/// One session's send waiting for its batch.
struct Pending {
    message: InternalRoomSend,
    reply: oneshot::Sender<Result<Message, ApiError>>,
}

/// Queues room messages for the api; cheap to clone.
#[derive(Clone)]
pub(crate) struct SendBatcher {
    tx: mpsc::Sender<Pending>,
}

impl SendBatcher {
    /// Starts the batching task on `api`.
    pub(crate) fn spawn(api: ApiClient) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(api, rx));
        SendBatcher { tx }
    }

    /// Persists `send` to `room`; returns the committed message (or the api's refusal).
    pub(crate) async fn send(&self, room: &str, send: InternalSend) -> Result<Message, ApiError> {
        let (reply, rx) = oneshot::channel();
        let message = InternalRoomSend {
            room: room.to_owned(),
            send,
            traceparent: telepath_shared::telemetry::traceparent(),
        };
        self.tx
            .try_send(Pending { message, reply })
            .map_err(|_| ApiError::unavailable("too many messages waiting for the api"))?;
        rx.await
            .map_err(|_| ApiError::unavailable("the api is unavailable"))?
    }
}

/// Takes what is queued, up to [`BATCH`], whenever a request slot is free.
async fn run(api: ApiClient, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(BATCH);
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let api = api.clone();
        tokio::spawn(async move {
            post(&api, batch).await;
            drop(slot);
        });
    }
}

/// Posts one batch and answers each of its senders.
async fn post(api: &ApiClient, batch: Vec<Pending>) {
    let (messages, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.message, p.reply)).unzip();
    let n = messages.len();
    match api.send_batch(&InternalSendBatch { messages }).await {
        Ok(InternalSendResults { results }) if results.len() == n => {
            for (reply, result) in replies.into_iter().zip(results) {
                let outcome = match (result.message, result.error) {
                    (Some(m), _) => Ok(m),
                    (None, Some(e)) => Err(ApiError::new(e.code, e.message)),
                    (None, None) => Err(ApiError::internal("the api sent an empty result")),
                };
                let _ = reply.send(outcome);
            }
        }
        Ok(_) => {
            let err =
                ApiError::internal("the api answered a batch with the wrong number of results");
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
