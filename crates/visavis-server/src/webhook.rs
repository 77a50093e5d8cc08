//! Webhooks, sans IO: what each room event looks like as a webhook ([`payload`]), how it is
//! signed ([`sign`]), and the delivery state machine of one receiver URL ([`Endpoint`]): a
//! bounded queue, one lane per room so that a room's events arrive in order, retries with
//! exponential backoff, and drops counted and reported. `handle_*` feeds it what happened with
//! the time, `poll_*` says what to send and when to wake it; the HTTP requests are made by
//! [`crate::webhook_sender`].
//!
//! Ordering: a room's next event is sent only once the one before it was delivered or dropped,
//! so a receiver never sees a room's events out of order (it may see gaps, when events were
//! dropped). Different rooms go in parallel, up to [`Policy::parallel`] requests at once, the
//! room whose waiting event is oldest first: one busy room, or one event being retried, does
//! not hold up the others.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use visavis_room::{CallSummary, Event, Person};

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Visavis-Signature";
/// The header that carries the event's id (the same on every attempt and every URL).
pub const EVENT_ID_HEADER: &str = "Visavis-Event-Id";

/// How drop reports are spaced in the log while drops go on.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// How an endpoint delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Most events held (waiting, in flight or waiting to be retried); one more drops the
    /// oldest waiting one.
    pub queue: usize,
    /// Attempts per event before it is dropped.
    pub attempts: u32,
    /// Wait before the first retry; each next one waits twice as long, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Most requests in flight at once (each for a different room).
    pub parallel: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            queue: 1000,
            attempts: 10,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            parallel: 8,
        }
    }
}

/// One event as it is sent: its id and its JSON body, made once for every URL and attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub id: String,
    pub body: Bytes,
}

/// The webhook of `event`, with its `id` and `created_at` (Unix ms); `None` for events that
/// are not sent as webhooks (`call_connected` is told in `call_ended`).
pub fn payload(event: &Event, id: &str, created_at: u64) -> Option<Payload> {
    let (kind, fields) = match event {
        Event::RoomStarted { .. } => ("room_started", json!({})),
        Event::RoomFinished { .. } => ("room_finished", json!({})),
        Event::Joined(p) => ("participant_joined", participant(p)),
        Event::Left(p) => ("participant_left", participant(p)),
        Event::Knock(p) => ("knock", participant(p)),
        Event::CallStarted {
            call_id,
            caller,
            callee,
            setup,
            ..
        } => (
            "call_started",
            json!({ "callId": call_id, "caller": caller, "callee": callee, "setupMs": ms(*setup) }),
        ),
        Event::CallEnded(call) => ("call_ended", call_ended(call)),
        Event::CallQuality {
            call_id,
            member,
            report,
            ..
        } => {
            let mut fields = json!({ "callId": call_id, "member": member });
            if let (Some(fields), Ok(Value::Object(report))) =
                (fields.as_object_mut(), serde_json::to_value(report))
            {
                fields.extend(report);
            }
            ("call_quality", fields)
        }
        Event::CallConnected { .. }
        | Event::SfuDescription { .. }
        | Event::SfuView { .. }
        | Event::GroupLeft { .. } => return None,
    };
    let mut body = json!({
        "event": kind,
        "id": id,
        "createdAt": created_at,
        "room": event.room(),
    });
    if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
        body.extend(fields);
    }
    Some(Payload {
        id: id.to_owned(),
        body: Bytes::from(body.to_string()),
    })
}

fn participant(p: &Person) -> Value {
    json!({ "participant": { "id": p.member, "name": p.name, "identity": p.identity } })
}

fn call_ended(c: &CallSummary) -> Value {
    json!({
        "callId": c.call_id,
        "caller": c.caller,
        "callee": c.callee,
        "reason": c.reason,
        "by": c.by,
        "setupMs": c.setup.map(ms),
        "durationMs": c.duration.map(ms),
        "connectMs": { "caller": c.caller_connect.map(ms), "callee": c.callee_connect.map(ms) },
    })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The `Visavis-Signature` value of `body` sent at `t` (Unix seconds): `t=<t>,v1=<hex of
/// HMAC-SHA256(secret, "<t>.<body>")>`. The time is signed with the body so that a captured
/// request cannot be replayed later (the receiver refuses old `t`).
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// Why events were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The queue was full: the oldest waiting event made room for a new one.
    QueueFull,
    /// Every attempt failed.
    GaveUp,
}

impl DropReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::GaveUp => "gave_up",
        }
    }
}

/// What the edge is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// POST this event now; report how it went with [`Endpoint::handle_result`] and `seq`.
    Send {
        seq: u64,
        payload: Arc<Payload>,
        /// 1 for the first attempt.
        attempt: u32,
    },
    /// Log that `count` events were dropped for `reason` since the last report.
    Dropped { reason: DropReason, count: u64 },
}

/// What an endpoint has done since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed: u64,
    pub dropped_queue_full: u64,
    pub dropped_gave_up: u64,
}

#[derive(Debug)]
struct Queued {
    seq: u64,
    payload: Arc<Payload>,
    /// Attempts made so far.
    attempts: u32,
}

/// One room's events, oldest first; only the first is ever in flight or waiting to retry.
#[derive(Debug, Default)]
struct Lane {
    events: VecDeque<Queued>,
    state: LaneState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum LaneState {
    /// The first event may go.
    #[default]
    Ready,
    InFlight,
    /// The first event failed; it goes again at this time.
    Retry(Instant),
}

/// The deliveries to one receiver URL.
#[derive(Debug)]
pub struct Endpoint {
    policy: Policy,
    lanes: HashMap<String, Lane>,
    /// Every held event not in flight, by sequence number (oldest first): what a full queue
    /// drops.
    waiting: BTreeMap<u64, String>,
    held: usize,
    in_flight: usize,
    next_seq: u64,
    totals: Totals,
    /// Drops not yet reported, and when the next report may go (`REPORT_EVERY` after the last
    /// one; at once before the first).
    unreported: BTreeMap<DropReason, u64>,
    next_report: Option<Instant>,
}

impl Endpoint {
    pub fn new(policy: Policy) -> Self {
        let policy = Policy {
            queue: policy.queue.max(1),
            attempts: policy.attempts.max(1),
            parallel: policy.parallel.max(1),
            ..policy
        };
        Self {
            policy,
            lanes: HashMap::new(),
            waiting: BTreeMap::new(),
            held: 0,
            in_flight: 0,
            next_seq: 0,
            totals: Totals::default(),
            unreported: BTreeMap::new(),
            next_report: None,
        }
    }

    /// A new event of `room`, behind the room's earlier ones. A full queue drops its oldest
    /// waiting event first (or, if every held event is in flight, this one): when a receiver
    /// is down, what it gets once back is the latest news.
    pub fn handle_event(&mut self, room: &str, payload: Arc<Payload>) {
        if self.held >= self.policy.queue {
            let made_room = self.drop_oldest_waiting();
            self.dropped(DropReason::QueueFull);
            if !made_room {
                return;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.held += 1;
        self.waiting.insert(seq, room.to_owned());
        self.lanes
            .entry(room.to_owned())
            .or_default()
            .events
            .push_back(Queued {
                seq,
                payload,
                attempts: 0,
            });
    }

    /// Takes out the oldest event that is not in flight; whether there was one.
    fn drop_oldest_waiting(&mut self) -> bool {
        let Some((seq, room)) = self.waiting.pop_first() else {
            return false;
        };
        if let Some(lane) = self.lanes.get_mut(&room) {
            if let Some(i) = lane.events.iter().position(|q| q.seq == seq) {
                lane.events.remove(i);
                if i == 0 {
                    // It was the first, waiting to go or to be retried: the next may go.
                    lane.state = LaneState::Ready;
                }
            }
            if lane.events.is_empty() {
                self.lanes.remove(&room);
            }
        }
        self.held -= 1;
        true
    }

    /// The request for event `seq` came back: `delivered` (2xx), or failed (another status,
    /// an error, the timeout).
    pub fn handle_result(&mut self, now: Instant, seq: u64, delivered: bool) {
        // An answer for an event no longer in flight (dropped meanwhile) changes nothing.
        let Some((room, attempts)) = self.lanes.iter().find_map(|(room, l)| {
            let first = l.events.front().filter(|q| q.seq == seq)?;
            (l.state == LaneState::InFlight).then(|| (room.clone(), first.attempts))
        }) else {
            return;
        };
        self.in_flight -= 1;
        if delivered {
            self.totals.delivered += 1;
        } else {
            self.totals.failed += 1;
        }
        let Some(lane) = self.lanes.get_mut(&room) else {
            return;
        };
        if !delivered && attempts < self.policy.attempts {
            let exp = attempts.saturating_sub(1).min(30);
            let wait = self
                .policy
                .backoff
                .saturating_mul(1 << exp)
                .min(self.policy.max_backoff);
            lane.state = LaneState::Retry(now + wait);
            self.waiting.insert(seq, room);
            return;
        }
        lane.events.pop_front();
        lane.state = LaneState::Ready;
        if lane.events.is_empty() {
            self.lanes.remove(&room);
        }
        self.held -= 1;
        if !delivered {
            self.dropped(DropReason::GaveUp);
        }
    }

    fn dropped(&mut self, reason: DropReason) {
        match reason {
            DropReason::QueueFull => self.totals.dropped_queue_full += 1,
            DropReason::GaveUp => self.totals.dropped_gave_up += 1,
        }
        *self.unreported.entry(reason).or_default() += 1;
    }

    /// The next thing to do at `now`: a drop report that is due, or an event that may go.
    pub fn poll_output(&mut self, now: Instant) -> Option<Output> {
        // Drops are reported together, at most every `REPORT_EVERY`: a receiver that is down
        // costs a log line now and then, not one per event.
        if self.next_report.is_none_or(|at| at <= now) {
            if let Some((reason, count)) = self.unreported.pop_first() {
                if self.unreported.is_empty() {
                    self.next_report = Some(now + REPORT_EVERY);
                }
                return Some(Output::Dropped { reason, count });
            }
        }
        if self.in_flight >= self.policy.parallel {
            return None;
        }
        let (room, seq) = self
            .lanes
            .iter()
            .filter(|(_, l)| match l.state {
                LaneState::Ready => true,
                LaneState::InFlight => false,
                LaneState::Retry(at) => at <= now,
            })
            .filter_map(|(room, l)| Some((room, l.events.front()?.seq)))
            .min_by_key(|(_, seq)| *seq)
            .map(|(room, seq)| (room.clone(), seq))?;
        let lane = self.lanes.get_mut(&room)?;
        let first = lane.events.front_mut()?;
        first.attempts += 1;
        lane.state = LaneState::InFlight;
        self.in_flight += 1;
        self.waiting.remove(&seq);
        Some(Output::Send {
            seq,
            payload: first.payload.clone(),
            attempt: first.attempts,
        })
    }

    /// When [`Endpoint::poll_output`] next has something to do that is not there now: a retry
    /// or a drop report.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let report = self.next_report.filter(|_| !self.unreported.is_empty());
        let retry = self
            .lanes
            .values()
            .filter_map(|l| match l.state {
                LaneState::Retry(at) => Some(at),
                _ => None,
            })
            .min();
        report.into_iter().chain(retry).min()
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Events held: waiting, in flight or waiting to be retried.
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use visavis_protocol::EndReason;

    fn event(n: u32) -> Arc<Payload> {
        Arc::new(Payload {
            id: format!("e{n}"),
            body: Bytes::from(format!("{n}")),
        })
    }

    /// The sends that may go now: (room as the body tells it, event n, attempt).
    fn sends(e: &mut Endpoint, now: Instant) -> Vec<(String, u32)> {
        std::iter::from_fn(|| e.poll_output(now))
            .filter_map(|o| match o {
                Output::Send { payload, attempt, .. } => Some((payload.id.clone(), attempt)),
                Output::Dropped { .. } => None,
            })
            .collect()
    }

    fn seq_of(e: &mut Endpoint, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| e.poll_output(now))
            .filter_map(|o| match o {
                Output::Send { seq, .. } => Some(seq),
                Output::Dropped { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_rooms_events_go_one_at_a_time_in_order_and_rooms_in_parallel() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(Policy::default());
        e.handle_event("a", event(0));
        e.handle_event("a", event(1));
        e.handle_event("b", event(2));
        assert_eq!(sends(&mut e, t0), [("e0".into(), 1), ("e2".into(), 1)]);
        e.handle_result(t0, 2, true);
        assert!(sends(&mut e, t0).is_empty(), "e1 waits for e0");
        e.handle_result(t0, 0, true);
        assert_eq!(sends(&mut e, t0), [("e1".into(), 1)]);
        e.handle_result(t0, 1, true);
        assert_eq!(e.held(), 0);
        assert_eq!(e.totals().delivered, 3);
        assert_eq!(e.poll_timeout(), None);
    }

    #[test]
    fn failures_are_retried_with_doubling_backoff_then_dropped_and_reported() {
        let t0 = Instant::now();
        let policy = Policy {
            attempts: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(1),
            ..Policy::default()
        };
        let mut e = Endpoint::new(policy);
        e.handle_event("a", event(0));
        e.handle_event("a", event(1));
        let mut now = t0;
        let mut waits = Vec::new();
        for attempt in 1..=4 {
            assert_eq!(sends(&mut e, now), [("e0".into(), attempt)], "attempt {attempt}");
            e.handle_result(now, 0, false);
            if let Some(at) = e.poll_timeout().filter(|_| attempt < 4) {
                waits.push(at - now);
                assert!(sends(&mut e, now).is_empty(), "not before its time");
                now = at;
            }
        }
        // 0.5 s, 1 s, then capped at 1 s.
        assert_eq!(
            waits,
            [500, 1000, 1000].map(Duration::from_millis),
            "backoff doubles to its cap"
        );
        assert_eq!(
            e.poll_output(now),
            Some(Output::Dropped {
                reason: DropReason::GaveUp,
                count: 1
            })
        );
        // The room's next event goes at once.
        assert_eq!(sends(&mut e, now), [("e1".into(), 1)]);
        assert_eq!(
            e.totals(),
            Totals {
                delivered: 0,
                failed: 4,
                dropped_queue_full: 0,
                dropped_gave_up: 1
            }
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest_waiting_event_and_reports_drops_in_batches() {
        let t0 = Instant::now();
        let policy = Policy {
            queue: 3,
            parallel: 1,
            ..Policy::default()
        };
        let mut e = Endpoint::new(policy);
        e.handle_event("a", event(0));
        assert_eq!(seq_of(&mut e, t0), [0], "e0 in flight");
        e.handle_event("b", event(1));
        e.handle_event("a", event(2));
        // Full: e1 is the oldest not in flight.
        e.handle_event("b", event(3));
        assert_eq!(
            e.poll_output(t0),
            Some(Output::Dropped {
                reason: DropReason::QueueFull,
                count: 1
            })
        );
        assert_eq!(e.poll_timeout(), None, "nothing to report, nothing to retry");
        e.handle_event("c", event(4)); // drops e2
        e.handle_event("c", event(5)); // drops e3
        assert_eq!(e.held(), 3);
        assert_eq!(e.totals().dropped_queue_full, 3);
        // The next report waits its turn, then tells both drops at once.
        assert_eq!(e.poll_output(t0), None, "e0 still in flight, report not due");
        let at = e.poll_timeout().expect("a report is due later");
        assert_eq!(at - t0, REPORT_EVERY);
        assert_eq!(
            e.poll_output(at),
            Some(Output::Dropped {
                reason: DropReason::QueueFull,
                count: 2
            })
        );
        e.handle_result(at, 0, true);
        assert_eq!(sends(&mut e, at), [("e4".into(), 1)]);
        e.handle_result(at, 4, true);
        assert_eq!(sends(&mut e, at), [("e5".into(), 1)]);
    }

    #[test]
    fn when_everything_held_is_in_flight_the_new_event_is_dropped() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(Policy {
            queue: 2,
            ..Policy::default()
        });
        e.handle_event("a", event(0));
        e.handle_event("b", event(1));
        assert_eq!(seq_of(&mut e, t0), [0, 1]);
        e.handle_event("c", event(2));
        assert_eq!(e.held(), 2);
        assert_eq!(e.totals().dropped_queue_full, 1);
    }

    #[test]
    fn an_event_waiting_to_be_retried_may_be_dropped_for_a_newer_one() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(Policy {
            queue: 2,
            ..Policy::default()
        });
        e.handle_event("a", event(0));
        e.handle_event("a", event(1));
        assert_eq!(seq_of(&mut e, t0), [0]);
        e.handle_result(t0, 0, false);
        e.handle_event("a", event(2)); // drops e0, waiting to be retried
        let _ = e.poll_output(t0); // the drop report
        assert_eq!(sends(&mut e, t0), [("e1".into(), 1)], "the lane moves on at once");
        // A late answer for the dropped attempt changes nothing.
        e.handle_result(t0, 0, true);
        assert_eq!(e.totals().delivered, 0);
    }

    #[test]
    fn parallel_requests_are_capped_oldest_room_first() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(Policy {
            parallel: 2,
            ..Policy::default()
        });
        for (n, room) in ["c", "a", "b", "a"].iter().enumerate() {
            e.handle_event(room, event(n as u32));
        }
        assert_eq!(seq_of(&mut e, t0), [0, 1]);
        e.handle_result(t0, 1, true);
        assert_eq!(seq_of(&mut e, t0), [2], "b's event is older than a's next");
    }

    #[test]
    fn payloads_name_the_event_and_carry_its_fields() {
        let summary = CallSummary {
            room: "r".into(),
            call_id: 3,
            caller: 1,
            callee: 2,
            reason: EndReason::Hangup,
            by: Some(2),
            setup: Some(Duration::from_millis(1500)),
            duration: Some(Duration::from_secs(61)),
            caller_connect: Some(Duration::from_millis(800)),
            callee_connect: None,
        };
        let p = payload(&Event::CallEnded(summary), "ev1", 1_700_000_000_000).unwrap();
        let body: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(
            body,
            json!({
                "event": "call_ended", "id": "ev1", "createdAt": 1_700_000_000_000_u64, "room": "r",
                "callId": 3, "caller": 1, "callee": 2, "reason": "hangup", "by": 2,
                "setupMs": 1500, "durationMs": 61000, "connectMs": {"caller": 800, "callee": null},
            })
        );
        let joined = Event::Joined(Person {
            room: "r".into(),
            member: 7,
            name: "Ann".into(),
            identity: None,
        });
        let body: Value = serde_json::from_slice(&payload(&joined, "ev2", 5).unwrap().body).unwrap();
        assert_eq!(body["event"], "participant_joined");
        assert_eq!(
            body["participant"],
            json!({"id": 7, "name": "Ann", "identity": null})
        );
        let connected = Event::CallConnected {
            room: "r".into(),
            call_id: 3,
            member: 1,
            setup: Duration::ZERO,
        };
        assert_eq!(payload(&connected, "ev3", 5), None);
    }

    #[test]
    fn the_signature_is_stripe_style_hmac_sha256_of_time_dot_body() {
        // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
