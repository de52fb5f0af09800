//! Where this node stands in each followed room: the last seq it relayed
//! (or knows its members have), for gap detection, and the seqs joins told
//! it exist but the relay has not brought yet.
//!
//! A position starts with the first join of the room here (the join's
//! reply names the room's latest seq), not with the first message relayed,
//! so a room nobody wrote to since is still caught up after an outage, and
//! the first message after one is checked for a jump. A join that names a
//! seq above the position is an expectation: the message is usually on its
//! way, and if the relay has not brought it within [`EXPECT_WITHIN`], the
//! relay fetches it (a quiet room's lost message would otherwise wait for
//! the next one).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Hub;

/// How long a seq a join named may take to come through the bus before the
/// relay fetches it from the api.
const EXPECT_WITHIN: Duration = Duration::from_secs(1);

/// The relay's positions, under one lock of their own (the relay takes it
/// per message; fan-out never does).
#[derive(Default)]
pub(super) struct Positions {
    /// channel -> the last seq relayed (or covered by a join's replay).
    relayed: HashMap<String, i64>,
    /// channel -> a seq a join named above the position, and when it is due.
    expected: HashMap<String, (i64, Instant)>,
}

impl Hub {
    fn positions_lock(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.positions.lock().expect("positions lock poisoned")
    }

    /// The last seq relayed on `channel`, and records `seq` as the new one
    /// when it is higher.
    pub(crate) fn advance(&self, channel: &str, seq: i64) -> Option<i64> {
        let mut positions = self.positions_lock();
        let last = positions.relayed.get(channel).copied();
        if last.is_none_or(|l| seq > l) {
            positions.relayed.insert(channel.to_owned(), seq);
            if positions
                .expected
                .get(channel)
                .is_some_and(|(e, _)| *e <= seq)
            {
                positions.expected.remove(channel);
            }
        }
        last
    }

    /// A join of `channel` answered with the room's latest seq `seq`: the
    /// room's first join here sets the position; a later one above it is
    /// expected from the relay by `now + EXPECT_WITHIN`.
    pub(crate) fn anchor(&self, channel: &str, seq: i64, now: Instant) {
        let mut positions = self.positions_lock();
        match positions.relayed.get(channel).copied() {
            None => {
                positions.relayed.insert(channel.to_owned(), seq);
            }
            Some(last) if seq > last => {
                let due = now + EXPECT_WITHIN;
                let entry = positions
                    .expected
                    .entry(channel.to_owned())
                    .or_insert((seq, due));
                // The highest seq named; the earliest deadline.
                entry.0 = entry.0.max(seq);
            }
            Some(_) => {}
        }
    }

    /// The expectations due at `now` that the relay has not met: (channel,
    /// position, expected seq). They are taken: the caller fetches them.
    pub(crate) fn overdue(&self, now: Instant) -> Vec<(String, i64, i64)> {
        let mut positions = self.positions_lock();
        let due: Vec<String> = positions
            .expected
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(c, _)| c.clone())
            .collect();
        let mut overdue = Vec::new();
        for channel in due {
            let Some((seq, _)) = positions.expected.remove(&channel) else {
                continue;
            };
            if let Some(&last) = positions.relayed.get(&channel)
                && last < seq
            {
                overdue.push((channel, last, seq));
            }
        }
        overdue
    }

    /// The position of `channel`, if this node follows it.
    pub(crate) fn position(&self, channel: &str) -> Option<i64> {
        self.positions_lock().relayed.get(channel).copied()
    }

    /// Every room channel with a position, and the position.
    pub(crate) fn positions(&self) -> Vec<(String, i64)> {
        self.positions_lock()
            .relayed
            .iter()
            .map(|(c, s)| (c.clone(), *s))
            .collect()
    }

    /// Forgets `channel`'s position (its subscription ended).
    pub(super) fn forget_position(&self, channel: &str) {
        let mut positions = self.positions_lock();
        positions.relayed.remove(channel);
        positions.expected.remove(channel);
    }
}
