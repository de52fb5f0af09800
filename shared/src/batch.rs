//! Asking for many at once: callers queue one question each and wait for
//! its answer; one task takes every question waiting (up to a batch) and
//! asks them in one request, with a few requests in flight, so a burst of
//! questions costs a few requests, not one each. Used for the per-user
//! connection cap's admissions, the unread counts of `welcome`s and the
//! rate limits' token buckets.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// Queued questions of type `Q`, answered with `A`; cheap to clone.
pub struct Batcher<Q, A> {
    tx: mpsc::Sender<(Q, oneshot::Sender<A>)>,
}

impl<Q, A> Clone for Batcher<Q, A> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<Q: Send + 'static, A: Send + 'static> Batcher<Q, A> {
    /// Starts the task (call within a Tokio runtime): at most `queue`
    /// questions wait, at most `batch` go in one request, `in_flight`
    /// requests at once. `ask` answers a batch in order, or `None` (then
    /// every question of it goes unanswered: its caller sees the answer
    /// dropped and decides for itself).
    pub fn spawn<F, Fut>(queue: usize, batch: usize, in_flight: usize, ask: F) -> Self
    where
        F: Fn(Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Vec<A>>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<(Q, oneshot::Sender<A>)>(queue);
        let ask = Arc::new(ask);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(in_flight.max(1)));
            let mut waiting = Vec::with_capacity(batch);
            while rx.recv_many(&mut waiting, batch.max(1)).await > 0 {
                let permit = slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed");
                let (questions, answers): (Vec<Q>, Vec<oneshot::Sender<A>>) =
                    std::mem::take(&mut waiting).into_iter().unzip();
                let ask = ask.clone();
                tokio::spawn(async move {
                    match ask(questions).await {
                        Some(replies) if replies.len() == answers.len() => {
                            for (done, reply) in answers.into_iter().zip(replies) {
                                let _ = done.send(reply);
                            }
                        }
                        Some(_) => tracing::warn!("a batch was answered in a wrong count"),
                        None => {}
                    }
                    drop(permit);
                });
            }
        });
        Batcher { tx }
    }

    /// Queues `question`; the receiver gets its answer. `None` when the
    /// queue is full.
    pub fn ask(&self, question: Q) -> Option<oneshot::Receiver<A>> {
        let (done, answer) = oneshot::channel();
        self.tx.try_send((question, done)).ok()?;
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn questions_arriving_together_share_a_request_and_get_their_own_answers() {
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = requests.clone();
        let doubler = Batcher::spawn(100, 10, 1, move |qs: Vec<u32>| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Some(qs.into_iter().map(|q| q * 2).collect()) }
        });
        let waiting: Vec<_> = (0..25).map(|q| doubler.ask(q).unwrap()).collect();
        for (q, answer) in waiting.into_iter().enumerate() {
            assert_eq!(answer.await.unwrap(), q as u32 * 2);
        }
        // At most ten a request: at least three requests, far fewer than 25.
        let n = requests.load(std::sync::atomic::Ordering::SeqCst);
        assert!((3..25).contains(&n), "{n} requests");
    }

    #[tokio::test]
    async fn an_unanswered_batch_drops_its_answers() {
        let never = Batcher::spawn(10, 10, 1, |_: Vec<u32>| async { None::<Vec<u32>> });
        assert!(never.ask(1).unwrap().await.is_err());
    }
}
