//! What the api publishes after a commit goes through two outboxes
//! (`telepath_shared::bus::outbox`), so Redis trouble never holds a reply:
//!
//! - `rooms`: room messages, pushed by the writer after each COMMIT in seq
//!   order, and the `member` and `room_closed` events, pushed by their
//!   handlers after their own commits (a room's messages keep seq order; an
//!   event may go out before or after messages committed at about the same
//!   time, which members do not depend on);
//! - `dms`: DMs on their recipients' and senders' `user:` channels. A DM
//!   batch is published at once when nothing waits in this outbox, for at
//!   most [`DM_PUBLISH_WITHIN`], so its reply can say whether the recipient
//!   had a live device; otherwise its DMs queue behind the backlog (in
//!   order) and the reply says `delivered: false`.
//!
//! DMs have their own outbox so that the room traffic queued in `rooms` at
//! any moment does not take the direct attempt away from them. Admin
//! broadcasts and disconnects are not here: their replies say whether the
//! bus took them.

use std::sync::Arc;
use std::time::Duration;

use telepath_shared::bus::Bus;
use telepath_shared::bus::outbox::{OutboxLimits, OutboxMetricFamilies};

pub(crate) use telepath_shared::bus::outbox::Outbox;

/// How long a DM batch's direct publish may take before its reply goes
/// without it (`delivered: false`, the DMs queued in the outbox).
pub(crate) const DM_PUBLISH_WITHIN: Duration = Duration::from_millis(300);

/// The api's outboxes.
pub(crate) struct Outboxes {
    /// Room messages (shared with the writer task) and room events.
    pub(crate) rooms: Arc<Outbox>,
    /// DMs.
    pub(crate) dms: Outbox,
}

impl Outboxes {
    /// Both outboxes on `bus`, with the default bounds, their series in `metrics`.
    pub(crate) fn new(bus: Arc<dyn Bus>, metrics: &OutboxMetricFamilies) -> Self {
        Outboxes {
            rooms: Arc::new(Outbox::new(
                bus.clone(),
                OutboxLimits::default(),
                metrics.outbox("rooms"),
            )),
            dms: Outbox::new(bus, OutboxLimits::default(), metrics.outbox("dms")),
        }
    }

    /// Publishes what both hold, within `deadline` (graceful shutdown).
    pub(crate) async fn close(&self, deadline: Duration) {
        tokio::join!(self.rooms.close(deadline), self.dms.close(deadline));
    }
}
