//! A connection's gate around its join of a room: while the join's reply
//! and replay are prepared, the room's live frames for that connection are
//! held; then the held frames newer than the replay go out, and later live
//! copies of replayed messages are dropped. This is what makes a join with
//! `since` seamless: no hole and no repeat between the replay and the live
//! stream, whatever the relay delivers meanwhile.

use super::{Hub, Outbound};
use crate::handle::ConnId;
use crate::metrics::OutKind;

/// Room frames held for one gated connection, with their seq when they are messages.
type Held = Vec<(Option<i64>, Outbound)>;

/// One connection's view of one room's live stream around its join.
pub(super) struct Gate {
    /// While the join's reply and replay are being prepared: what arrived meanwhile.
    pub(super) held: Option<Held>,
    /// After: messages at or below this seq were in the join's replay (or
    /// before it); the relay may still bring some late, and they are dropped.
    /// Once a message above it passes, the gate is gone.
    pub(super) floor: i64,
}

/// Frames a gate may hold before its connection counts as a slow consumer.
const GATE_LIMIT: usize = 4096;

impl Gate {
    /// A gate holding everything until it is released.
    pub(super) fn closed() -> Self {
        Gate {
            held: Some(Vec::new()),
            floor: i64::MIN,
        }
    }
}

impl Hub {
    /// The messages missing from a gate's held frames above `after`: `(after,
    /// highest held seq)` when the held seqs do not run unbroken from
    /// `after + 1` (pub/sub lost one while the join was in progress, before
    /// this node had a position for the room to notice it by).
    pub(crate) fn gate_gap(&self, channel: &str, conn: ConnId, after: i64) -> Option<(i64, i64)> {
        let registry = self.registry();
        let held = registry
            .channels
            .get(channel)?
            .get(conn)?
            .gate
            .as_ref()?
            .held
            .as_ref()?;
        let mut seqs: Vec<i64> = held
            .iter()
            .filter_map(|(seq, _)| seq.filter(|s| *s > after))
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        let highest = *seqs.last()?;
        (highest - after != seqs.len() as i64).then_some((after, highest))
    }

    /// Adds fetched messages to a gate's held frames (those it does not
    /// hold yet) and orders the held frames by seq, so the release keeps
    /// seq order. A frame without a seq keeps its place after the message
    /// it arrived after.
    pub(crate) fn fill_gate(&self, channel: &str, conn: ConnId, fetched: Vec<(i64, Outbound)>) {
        let mut registry = self.registry();
        let Some(held) = registry
            .channels
            .get_mut(channel)
            .and_then(|m| m.get_mut(conn))
            .and_then(|member| member.gate.as_mut())
            .and_then(|gate| gate.held.as_mut())
        else {
            return;
        };
        let have: std::collections::HashSet<i64> = held.iter().filter_map(|(s, _)| *s).collect();
        held.extend(
            fetched
                .into_iter()
                .filter(|(seq, _)| !have.contains(seq))
                .map(|(seq, frame)| (Some(seq), frame)),
        );
        // Sort keys: a message's seq; any other frame, the seq before it.
        let mut last = i64::MIN;
        let mut keyed: Vec<(i64, usize, (Option<i64>, Outbound))> = held
            .drain(..)
            .enumerate()
            .map(|(i, (seq, frame))| {
                if let Some(s) = seq {
                    last = s;
                }
                (seq.unwrap_or(last), i, (seq, frame))
            })
            .collect();
        keyed.sort_by_key(|(key, i, _)| (*key, *i));
        held.extend(keyed.into_iter().map(|(_, _, entry)| entry));
    }

    /// Releases a gate: the held frames with a seq above `after` (or none)
    /// go to the connection's queue, in arrival order, and later frames go
    /// straight through, except messages at or below `after`. Holding the
    /// hub's lock keeps the relay out meanwhile, so nothing overtakes them.
    pub(crate) fn ungate(&self, channel: &str, conn: ConnId, after: i64) {
        let mut registry = self.registry();
        let Some(member) = registry
            .channels
            .get_mut(channel)
            .and_then(|m| m.get_mut(conn))
        else {
            return;
        };
        // The gate stays as a floor: the relay can be behind the api, so a
        // message the replay already carried may still come live.
        let Some(held) = member.gate.as_mut().and_then(|gate| {
            gate.floor = after;
            gate.held.take()
        }) else {
            return;
        };
        for (_, frame) in held
            .into_iter()
            .filter(|(seq, _)| seq.is_none_or(|s| s > after))
        {
            if !member.handle.queue(frame) {
                break;
            }
        }
    }

    /// Queues a room frame of `kind` (with its seq, when it is a message) to
    /// every local member, holding it for gated members.
    pub(crate) fn fan_out_room(
        &self,
        channel: &str,
        payload: &Outbound,
        kind: OutKind,
        seq: Option<i64>,
    ) -> usize {
        let mut registry = self.registry();
        let Some(members) = registry.channels.get_mut(channel) else {
            return 0;
        };
        for member in members.values_mut() {
            match &mut member.gate {
                None => {}
                Some(Gate {
                    held: Some(held), ..
                }) => {
                    if held.len() < GATE_LIMIT {
                        held.push((seq, payload.clone()));
                    } else {
                        // A gate over its limit: the connection cannot keep up.
                        member.handle.close_slow();
                    }
                    continue;
                }
                // Already in the join's replay.
                Some(Gate { held: None, floor }) if seq.is_some_and(|s| s <= *floor) => continue,
                // Past the floor: no gate any more.
                Some(Gate { held: None, .. }) if seq.is_some() => member.gate = None,
                Some(_) => {}
            }
            member.handle.queue(payload.clone());
        }
        self.metrics.frames_out(kind, members.len());
        members.len()
    }
}
