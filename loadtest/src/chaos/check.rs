//! The end of a chaos run: each room's history as SQLite has it (through the
//! api's REST history), the script's fault log, and the verdict on what the
//! publishers were acked and what every member received.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use telepath_shared::protocol::MessagePage;

use super::{Ctx, member, number, publisher};

/// One room's committed messages: the message number at each seq
/// (`numbers[s - 1]`, 0 for the end marker), and the seqs themselves.
pub(crate) struct History {
    pub(crate) seqs: Vec<i64>,
    pub(crate) numbers: Vec<u32>,
}

/// Reads every room's whole history, 500 messages a page, each as its
/// publisher (`tokens[r]`, a participant).
pub(crate) async fn history(
    http: &reqwest::Client,
    api: &str,
    tokens: &[String],
    rooms: &[String],
) -> anyhow::Result<Vec<History>> {
    let mut all = Vec::new();
    for (room, token) in rooms.iter().zip(tokens) {
        let mut h = History {
            seqs: Vec::new(),
            numbers: Vec::new(),
        };
        loop {
            let after = h.seqs.last().copied().unwrap_or(0);
            let page: MessagePage = http
                .get(format!(
                    "{api}/rooms/{room}/messages?after={after}&limit=500"
                ))
                .bearer_auth(token)
                .send()
                .await?
                .error_for_status()
                .with_context(|| format!("history of room {room}"))?
                .json()
                .await?;
            for m in &page.messages {
                h.seqs.push(m.seq);
                h.numbers.push(number(&m.body));
            }
            if !page.has_more || page.messages.is_empty() {
                break;
            }
        }
        all.push(h);
    }
    Ok(all)
}

/// One fault from the script's log.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) index: usize,
    pub(crate) kind: String,
    pub(crate) target: String,
    pub(crate) start_ms: i64,
    pub(crate) healed_ms: Option<i64>,
}

/// The fault a violation came after.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaultRef {
    pub(crate) index: usize,
    pub(crate) kind: String,
    pub(crate) target: String,
    /// When it started, seconds since publishing started.
    pub(crate) started_s: f64,
    /// From its start to the violation.
    pub(crate) ms_after_start: i64,
    /// The violation came before the fault was healed.
    pub(crate) during: bool,
}

impl FaultRef {
    /// `#3 redis_restart -`.
    pub(crate) fn label(&self) -> String {
        format!("#{} {} {}", self.index, self.kind, self.target)
    }
}

/// Parses the fault log: `<unix ms> <start|healed|ready|unready> <kind> <target>`.
pub(crate) fn read_faults(path: &Path) -> anyhow::Result<Vec<Fault>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path:?}"))?;
    Ok(parse_faults(&text))
}

fn parse_faults(text: &str) -> Vec<Fault> {
    let mut faults: Vec<Fault> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(at), Some(event), Some(kind)) = (
            f.first().and_then(|t| t.parse::<i64>().ok()),
            f.get(1),
            f.get(2),
        ) else {
            continue;
        };
        let target = f.get(3).copied().unwrap_or("-");
        match *event {
            "start" => faults.push(Fault {
                index: faults.len() + 1,
                kind: (*kind).to_owned(),
                target: target.to_owned(),
                start_ms: at,
                healed_ms: None,
            }),
            "healed" => {
                if let Some(last) = faults.last_mut().filter(|l| l.kind == *kind) {
                    last.healed_ms = Some(at);
                }
            }
            _ => {}
        }
    }
    faults
}

/// The last fault started at or before `at_ms`.
pub(crate) fn preceding(faults: &[Fault], at_ms: i64, t0_ms: i64) -> Option<FaultRef> {
    let f = faults.iter().rev().find(|f| f.start_ms <= at_ms)?;
    Some(FaultRef {
        index: f.index,
        kind: f.kind.clone(),
        target: f.target.clone(),
        started_s: (f.start_ms - t0_ms) as f64 / 1000.0,
        ms_after_start: at_ms - f.start_ms,
        during: f.healed_ms.is_none_or(|h| at_ms < h),
    })
}

/// Counts the checks produce beside the violations they record.
pub(crate) struct Verdict {
    pub(crate) acked: u64,
    pub(crate) committed: u64,
    pub(crate) committed_unacked: u64,
    pub(crate) deliveries_checked: u64,
    pub(crate) delivered: u64,
    pub(crate) missing: u64,
    pub(crate) wrong_content: u64,
}

/// Checks the publishers' acks and the members' deliveries against the
/// history, recording a violation for each thing wrong.
pub(crate) fn judge(
    ctx: &Ctx,
    history: &[History],
    publishers: &[publisher::Outcome],
    members: &[member::Outcome],
) -> Verdict {
    let mut v = Verdict {
        acked: 0,
        committed: 0,
        committed_unacked: 0,
        deliveries_checked: 0,
        delivered: 0,
        missing: 0,
        wrong_content: 0,
    };
    for (r, h) in history.iter().enumerate() {
        let publisher = format!("r{r}/publisher");
        v.committed += h.seqs.len() as u64;
        if let Some((i, seq)) = h
            .seqs
            .iter()
            .enumerate()
            .find(|(i, s)| **s != *i as i64 + 1)
        {
            ctx.violation(
                "history_hole",
                r,
                &publisher,
                None,
                format!("SQLite's seq {seq} is at position {}: seqs skipped", i + 1),
            );
        }
        // Message number -> the seqs SQLite has it at.
        let mut at: HashMap<u32, Vec<i64>> = HashMap::new();
        for (seq, n) in h.seqs.iter().zip(&h.numbers) {
            at.entry(*n).or_default().push(*seq);
        }
        for (n, seqs) in &at {
            if seqs.len() > 1 {
                ctx.violation(
                    "stored_twice",
                    r,
                    &publisher,
                    None,
                    format!("message {n} is stored at seqs {seqs:?}"),
                );
            }
        }
        let Some(p) = publishers.iter().find(|p| p.room == r) else {
            continue;
        };
        for (k, acked) in p.acked.iter().enumerate().skip(1) {
            let Some(seq) = acked else { continue };
            let number = if k as u64 == p.created + 1 {
                0
            } else {
                k as u32
            };
            if number != 0 {
                v.acked += 1;
            }
            if !at.get(&number).is_some_and(|s| s.contains(seq)) {
                ctx.violation(
                    "lost_ack",
                    r,
                    &publisher,
                    None,
                    format!(
                        "message {k} acked with seq {seq}; SQLite has it at {:?}",
                        at.get(&number)
                    ),
                );
            }
        }
        v.committed_unacked += h
            .numbers
            .iter()
            .filter(|n| {
                **n != 0
                    && p.acked
                        .get(**n as usize)
                        .is_none_or(|a: &Option<i64>| a.is_none())
            })
            .count() as u64;
        // Every member of the room: every seq up to the end marker, each the
        // message SQLite has at that seq.
        let last = p.end_seq.unwrap_or(h.seqs.len() as i64).max(0) as usize;
        for m in members.iter().filter(|m| m.room == r) {
            v.deliveries_checked += last as u64;
            let held = m.got.len().min(last);
            v.delivered += held as u64;
            let wrong: Vec<usize> = (0..held.min(h.numbers.len()))
                .filter(|&i| m.got[i] != h.numbers[i])
                .collect();
            if let Some(&first) = wrong.first() {
                v.wrong_content += wrong.len() as u64;
                ctx.violation(
                    "wrong_content",
                    r,
                    &m.name,
                    m.gateway.as_deref(),
                    format!(
                        "{} seqs carry another message than SQLite's, first seq {} (got message {}, SQLite {})",
                        wrong.len(),
                        first + 1,
                        m.got[first],
                        h.numbers[first]
                    ),
                );
            }
            if held < last {
                v.missing += (last - held) as u64;
                ctx.violation_at(
                    "missing",
                    if m.last_delivery_ms > 0 {
                        m.last_delivery_ms
                    } else {
                        super::now_ms()
                    },
                    r,
                    &m.name,
                    m.gateway.as_deref(),
                    format!(
                        "holds seqs 1..={held} of {last} at the end (time: its last delivery); {} joins, {} recovered:false",
                        m.joins, m.unrecovered
                    ),
                );
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_attributed_to_the_last_fault_started_before_them() {
        let log = "1000 start gateway_kill gw1\n1500 healed gateway_kill gw1\n1600 ready gateway_kill gw1\n\
                   3000 start redis_stop -\n7000 healed redis_stop -\n";
        let faults = parse_faults(log);
        assert_eq!(faults.len(), 2);
        assert_eq!(faults[1].healed_ms, Some(7000));
        assert!(preceding(&faults, 900, 0).is_none());
        let f = preceding(&faults, 1200, 0).unwrap();
        assert_eq!((f.index, f.during, f.ms_after_start), (1, true, 200));
        let f = preceding(&faults, 2000, 0).unwrap();
        assert_eq!((f.index, f.during), (1, false));
        let f = preceding(&faults, 8000, 500).unwrap();
        assert_eq!(f.label(), "#2 redis_stop -");
        assert!(!f.during);
        assert!((f.started_s - 2.5).abs() < 1e-9);
    }
}
