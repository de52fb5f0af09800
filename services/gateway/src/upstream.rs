//! The gateway's side of the services behind it, each through the shared
//! [`InternalClient`](telepath_shared::http::client::InternalClient):
//!
//! - [`ApiClient`]: durable operations a session waits for (join, leave,
//!   history, the offline queue), and the relay's catch-up reads;
//! - [`Replays`]: join replays, one shared history read per room;
//! - [`SendPipe`]: room messages and DMs, pipelined in ordered batches;
//! - [`AckReporter`]: clients' acks, written in batches (or at once, for an
//!   ack the client waits for);
//! - [`PresenceReporter`]: what happens to connections, in order, and
//!   heartbeats carrying each connection's whole state;
//! - [`LogReporter`]: the connection log;
//! - [`Admitter`]: the per-user connection cap, asked of presence;
//! - [`UnreadCounter`]: the unread notifications a `welcome` carries;
//! - [`Marks`]: whether a connect may skip the api's offline read;
//! - [`OfflineReader`]: the offline reads of the connects that may not, in
//!   batches.
//!
//! Each reporter is one bounded queue drained by one task in order, so
//! reports keep their order and never slow a session down.

mod acks;
mod admit;
mod api;
mod logs;
mod marks;
mod offline;
mod presence;
mod replays;
mod sends;
mod unread;

pub(crate) use acks::{Ack, AckReporter};
pub(crate) use admit::{Admitter, Counter as AdmitCounter};
pub(crate) use api::ApiClient;
pub(crate) use logs::LogReporter;
pub(crate) use marks::Marks;
pub(crate) use offline::OfflineReader;
pub(crate) use presence::{Drain, PresenceReporter};
pub(crate) use replays::Replays;
pub(crate) use sends::{Done, Outcome, PendingSend, SendPipe, Sendable};
pub(crate) use unread::UnreadCounter;

/// Reports waiting to be sent, per reporter.
const REPORT_QUEUE: usize = 16_384;
