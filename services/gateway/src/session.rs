//! One WebSocket connection's life: set up, registered with the hub and
//! presence, served by its reader and its writer, and unregistered.
//!
//! fastwebsockets' `read_frame` is not cancel-safe, so a connection runs as
//! two tasks: the reader ([`reader`]: frames in, each client request handled
//! in order by [`request`]) and the writer ([`writer`]: the outbound queue,
//! pings, the close). Anyone may close a session through its
//! [`SessionHandle`]; the first reason wins, the writer sends `bye` and the
//! close frame, and the reader gets a short grace to see the client's close
//! before the socket is dropped.
//!
//! Every idle connection is one of these futures and one writer future, so
//! both are kept small: async blocks instead of async fns (an async fn
//! stores each argument twice), and every large future that runs once is
//! boxed (an inline await keeps its room in the future for the
//! connection's life). The tests at the bottom pin their sizes.

mod outbuf;
mod reader;
mod request;
mod writer;

use std::time::Duration;

use fastwebsockets::WebSocket;
use telepath_shared::auth::Claims;
use telepath_shared::protocol::{
    ByeReason, CloseCode, ConnectionEvent, ConnectionEventKind, Limits, PresenceReport,
    ServerFrame, Welcome,
};

use crate::GatewayState;
use crate::handle::{CloseReason, ConnId, SessionHandle};
use reader::End;

/// The upgraded stream of one connection: the TCP stream itself (see
/// `connect.rs`), split into owned halves without a lock.
pub(crate) type Stream = tokio::net::TcpStream;

/// How long the reader waits for the client's close frame after we closed.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where a connection comes from, for the connection log.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    pub(crate) ip: String,
    pub(crate) user_agent: Option<String>,
}

/// Everything the reader knows about its connection.
pub(crate) struct Session {
    pub(crate) id: ConnId,
    pub(crate) claims: Claims,
    pub(crate) handle: SessionHandle,
    pub(crate) state: GatewayState,
    pub(crate) limiter: governor::DefaultDirectRateLimiter,
    /// Consecutive frames refused by the rate limiter.
    pub(crate) strikes: u32,
    pub(crate) client: ClientInfo,
    /// A join's gate to release once its reply and replay are queued: (channel, latest seq).
    pub(crate) ungate: Option<(String, i64)>,
}

impl Session {
    /// This connection's id, as clients and presence know it.
    pub(crate) fn conn_id(&self) -> &str {
        &self.handle.control().conn_id
    }

    /// Queues a frame made on this node (see [`SessionHandle::queue`]).
    pub(crate) fn queue_frame(&self, frame: &ServerFrame) -> bool {
        self.handle.queue_frame(frame, self.state.metrics())
    }
}

/// Serves one upgraded connection until it closes: sets the session up
/// now and returns its life as a future. Not an `async fn`: that would keep
/// room for the arguments (the socket, the claims) beside the session
/// built from them, in every idle connection.
pub(crate) fn serve(
    mut ws: WebSocket<Stream>,
    state: GatewayState,
    claims: Claims,
    id: ConnId,
    conn_id: String,
    client: ClientInfo,
    notifications_unread: Option<i64>,
) -> impl Future<Output = ()> + Send + 'static {
    let cfg = state.config();
    // fastwebsockets refuses a frame of its bound or more; a message of
    // exactly `max_frame_bytes` is allowed (and fragments are summed in the
    // reader against the same bound).
    ws.set_max_message_size(cfg.max_frame_bytes.saturating_add(1));
    // Pings reach the reader, which counts them against the rate limit
    // and answers each (see `reader.rs`); the close echo is automatic.
    ws.set_auto_pong(false);
    ws.set_auto_close(true);
    let (read, write) = ws.split(|s| {
        let (r, w) = s.into_split();
        (r, outbuf::OutBuf::new(w))
    });

    // Everything the writer writes, in order: text frames, and the pongs and
    // close echo the reader owes the client.
    let (handle, rx) = SessionHandle::new(
        cfg.outbound_queue,
        conn_id.clone(),
        claims.user_ref(),
        claims.exp,
    );
    let quota = governor::Quota::per_second(
        std::num::NonZeroU32::new(cfg.max_rate_per_s.max(1)).expect("max(1) is non-zero"),
    );

    // The welcome is queued before the session becomes visible to the hub, so it is always first.
    handle.queue_frame(
        &ServerFrame::Welcome(Welcome {
            conn_id,
            user: claims.user(),
            node: state.common().node_id.clone(),
            heartbeat_ms: state.common().heartbeat_ms,
            limits: Limits {
                max_frame_bytes: cfg.max_frame_bytes,
                max_rate_per_s: cfg.max_rate_per_s,
                max_user_rate_per_s: state.budget().rate().per_s,
                max_body_bytes: state.common().max_body_bytes,
                max_rooms_per_conn: cfg.max_rooms_per_conn,
            },
            notifications_unread,
        }),
        state.metrics(),
    );
    let writer = tokio::spawn(writer::run(
        write,
        rx,
        handle.control().clone(),
        state.clone(),
    ));

    let session = Session {
        id,
        claims,
        handle,
        state,
        limiter: governor::RateLimiter::direct_with_clock(quota, limiter_clock()),
        strikes: 0,
        client,
        ungate: None,
    };
    live(session, read, writer)
}

/// The clock of every connection's rate limiter: one for the process.
/// `RateLimiter::direct` makes a clock of its own, and a new quanta clock
/// reads CPUID and calibrates: a few percent of a gateway's CPU during a
/// connect storm.
fn limiter_clock() -> governor::clock::DefaultClock {
    static CLOCK: std::sync::OnceLock<governor::clock::DefaultClock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(Default::default).clone()
}

/// A session from its registration to its end.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store its arguments twice"
)]
fn live(
    mut session: Session,
    read: reader::Read,
    mut writer: tokio::task::JoinHandle<()>,
) -> impl Future<Output = ()> + Send + 'static {
    // An async block, not an async fn: an async fn moves each argument into
    // a local first, so its future would hold every argument twice.
    async move {
        // Boxed, like every large future that runs once: an await inline keeps
        // its space in the session's future for the connection's whole life.
        Box::pin(register(&session)).await;

        // The select borrows the session for the reader, so what it waits
        // on besides is cloned out first (two pointers).
        let control = session.handle.control().clone();
        let state = session.state.clone();
        let closing = &control.closing;
        let end = tokio::select! {
            // The reader ends on the client's close, an error, or EOF.
            end = reader::read_loop(read, &mut session) => {
                if let End::Violation(code) = end {
                    session.handle.close(code, None);
                }
                Some(end)
            }
            // We are closing: give the client a moment to answer the close frame.
            _ = async { closing.cancelled().await; tokio::time::sleep(CLOSE_GRACE).await } => None,
            // Server shutdown: tell the client to reconnect elsewhere.
            _ = state.shutdown().cancelled() => {
                session.handle.close(CloseCode::Restart, Some(ByeReason::Restart));
                let _ = tokio::time::timeout(CLOSE_GRACE, closing.cancelled()).await;
                None
            }
        };
        session.handle.end();
        // The writer may be stuck writing to a client that stopped reading: bound the wait.
        if tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        let (code, reason) = disconnect_label(control.reason(), end);
        Box::pin(unregister(&session, code, reason)).await;
    }
}

/// The close code and reason a disconnect is counted and logged under: the
/// server's own reason when it closed, else what the client did.
fn disconnect_label(server_close: Option<CloseReason>, end: Option<End>) -> (u16, &'static str) {
    if let Some((code, bye)) = server_close {
        let reason = match (code, bye) {
            (CloseCode::Restart, _) => "restart",
            (_, Some(ByeReason::SlowConsumer)) => "slow_consumer",
            (CloseCode::TokenExpired, _) => "token_expired",
            (CloseCode::Admin, _) => "admin",
            (CloseCode::RateLimit, _) => "rate_limit",
            // The writer closes a client that stopped answering pings with 1011.
            (CloseCode::Internal, None) => "timeout",
            (
                CloseCode::ProtocolError
                | CloseCode::UnsupportedData
                | CloseCode::InvalidPayload
                | CloseCode::TooBig,
                _,
            ) => "protocol",
            _ => "server",
        };
        return (code.code(), reason);
    }
    match end {
        Some(End::Closed(code)) => (code, "client_closed"),
        _ => (1006, "client_gone"),
    }
}

/// Makes the session reachable: the hub (its user channel) and presence.
async fn register(session: &Session) {
    let state = &session.state;
    state.metrics().connects.inc();
    state.metrics().connections.inc();
    let subscribed = state
        .hub()
        .connect(session.id, session.handle.clone())
        .await;
    // Presence hears of the connection before the offline read: the client
    // has its welcome already, and `POST /admin/disconnect` reaches the
    // connections presence knows.
    state.presence().report(PresenceReport::Connect {
        conn_id: session.conn_id().to_owned(),
        user: session.claims.user_ref(),
        node: state.common().node_id.clone(),
    });
    queue_pending_dms(session, subscribed).await;
    let connected = log_event(session, ConnectionEventKind::Connect, None);
    state.logs().log(connected);
}

/// Sends the DMs waiting in the user's offline queue, oldest first, then
/// their pending room invitations, then the active announcements they have
/// not dismissed. The user channel is subscribed already,
/// so a DM or an invitation sent meanwhile may arrive twice; clients drop
/// repeats by id.
async fn queue_pending_dms(session: &Session, subscribed: bool) {
    // Most connects have nothing waiting: Redis's connect mark says so
    // without asking the api. Only once the user channel is subscribed:
    // then anything committed and not yet marked comes on it.
    if subscribed && session.state.marks().clean(&session.claims.sub).await {
        session.state.metrics().offline_reads_skipped.inc();
        return;
    }
    match session.state.offline().read(&session.claims.sub).await {
        Ok(pending) => {
            for dm in pending.messages {
                if !session.queue_frame(&ServerFrame::Dm(dm)) {
                    return;
                }
            }
            for invite in pending.invites {
                if !session.queue_frame(&ServerFrame::Invite(invite)) {
                    return;
                }
            }
            for announcement in pending.announcements {
                if !session.queue_frame(&ServerFrame::Announcement(announcement)) {
                    return;
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e.message, "reading the offline queue failed; the DMs stay queued")
        }
    }
}

/// Removes every trace of the session from this node, then reports the
/// disconnect (in that order: a heartbeat built after the report never
/// lists the connection again).
async fn unregister(session: &Session, code: u16, reason: &'static str) {
    let state = &session.state;
    state.hub().disconnect(session.id);
    state.presence().report(PresenceReport::Disconnect {
        conn_id: session.conn_id().to_owned(),
        user_id: session.claims.sub.clone(),
    });
    let disconnected = log_event(
        session,
        ConnectionEventKind::Disconnect,
        Some(code.to_string()),
    );
    state.logs().log(disconnected);
    state.metrics().disconnected(code, reason);
    tracing::debug!(conn_id = %session.conn_id(), code, reason, "disconnected");
}

/// The connection log entry for this session.
fn log_event(
    session: &Session,
    event: ConnectionEventKind,
    reason: Option<String>,
) -> ConnectionEvent {
    ConnectionEvent {
        event,
        conn_id: session.conn_id().to_owned(),
        user: session.claims.user_ref(),
        node: session.state.common().node_id.clone(),
        ip: Some(session.client.ip.clone()),
        user_agent: session.client.user_agent.clone(),
        reason,
        at: chrono::Utc::now(),
    }
}

#[cfg(test)]
mod tests;
