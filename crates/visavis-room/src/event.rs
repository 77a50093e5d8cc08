//! What happened in the core that the world outside the room may want to know: rooms starting
//! and finishing, members coming and going, knocks, 1:1 calls starting, connecting and ending,
//! and how their media went.
//!
//! Each happening is defined once, as an [`Event`], at the one place in the core where it
//! happens ([`Core::record`]). Everything else is read off the events: the totals behind the
//! metrics (counted in `record` itself), the TURN server's list of members
//! ([`Event::member`]) and the webhooks the edge sends. So a metric and a webhook cannot
//! disagree about what a "call ended" is.

use std::time::Duration;

use visavis_protocol::{CallId, EndReason, MemberId, Publish, QualityReport, SdpKind, ViewTrack};

use crate::{Core, MemberEvent};

/// One thing that happened, in the order the core did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A room was made: by its first `join` (named), `create` (private), a token or the REST
    /// API.
    RoomStarted { room: String },
    /// A room is gone: the last one left a named room, an empty private room waited in vain
    /// for a host, or it was ended for everyone.
    RoomFinished { room: String },
    /// A member entered the room (straight in, or admitted from the lobby).
    Joined(Person),
    /// A member who had entered is out of the room (left, dropped for good, removed, or the
    /// room ended).
    Left(Person),
    /// A newcomer waits in a private room's lobby.
    Knock(Person),
    /// The callee accepted a 1:1 call; `setup` is the time from invite to accept.
    CallStarted {
        room: String,
        call_id: CallId,
        caller: MemberId,
        callee: MemberId,
        setup: Duration,
    },
    /// A party of an active 1:1 call reported its peer connection up, `setup` after accept.
    CallConnected {
        room: String,
        call_id: CallId,
        member: MemberId,
        setup: Duration,
    },
    /// A 1:1 call ended, ringing or active (`busy` refusals never were calls).
    CallEnded(CallSummary),
    /// A participant of an SFU group call sent the description of its peer connection to the
    /// SFU (`sfu_description`), for the SFU.
    SfuDescription {
        room: String,
        call_id: CallId,
        member: MemberId,
        kind: SdpKind,
        sdp: String,
        /// What the member may publish (its access token's permissions): the SFU forwards
        /// nothing else it sends.
        publish: Publish,
    },
    /// A participant of an SFU group call told how it shows the videos it gets (`sfu_view`),
    /// for the SFU.
    SfuView {
        room: String,
        call_id: CallId,
        member: MemberId,
        tracks: Vec<ViewTrack>,
    },
    /// A participant left the room's group call (by `group_leave`, or by leaving the room):
    /// the SFU ends its session.
    GroupLeft {
        room: String,
        call_id: CallId,
        member: MemberId,
    },
    /// A party of an ended 1:1 call reported how its media went (`call_quality`).
    CallQuality {
        room: String,
        call_id: CallId,
        member: MemberId,
        report: QualityReport,
    },
}

/// Who an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub room: String,
    pub member: MemberId,
    pub name: String,
    /// The identity of its access token, if it came with one.
    pub identity: Option<String>,
}

/// A 1:1 call as it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSummary {
    pub room: String,
    pub call_id: CallId,
    pub caller: MemberId,
    pub callee: MemberId,
    pub reason: EndReason,
    /// The member whose action ended it, if one did.
    pub by: Option<MemberId>,
    /// Invite to accept; `None` if it was never accepted.
    pub setup: Option<Duration>,
    /// Accept to end; `None` if it was never accepted.
    pub duration: Option<Duration>,
    /// Accept to peer connection up, as each side reported it (`call_connected`).
    pub caller_connect: Option<Duration>,
    pub callee_connect: Option<Duration>,
}

impl Event {
    /// The room it happened in.
    pub fn room(&self) -> &str {
        match self {
            Self::RoomStarted { room }
            | Self::RoomFinished { room }
            | Self::CallStarted { room, .. }
            | Self::CallConnected { room, .. }
            | Self::CallQuality { room, .. }
            | Self::SfuDescription { room, .. }
            | Self::SfuView { room, .. }
            | Self::GroupLeft { room, .. } => room,
            Self::Joined(p) | Self::Left(p) | Self::Knock(p) => &p.room,
            Self::CallEnded(c) => &c.room,
        }
    }

    /// A member entering or leaving, as the TURN server ties relays to members.
    pub fn member(&self) -> Option<MemberEvent> {
        match self {
            Self::Joined(p) => Some(MemberEvent::Joined(p.member)),
            Self::Left(p) => Some(MemberEvent::Left(p.member)),
            _ => None,
        }
    }
}

impl Core {
    /// The one place an event happens: counted into the totals and queued for the edge.
    pub(crate) fn record(&mut self, event: Event) {
        let totals = &mut self.totals;
        match &event {
            Event::Knock(_) => totals.knocks += 1,
            Event::CallStarted { setup, .. } => totals.answer_time.observe(setup.as_secs_f64()),
            Event::CallConnected { setup, .. } => totals.connect_time.observe(setup.as_secs_f64()),
            Event::CallQuality { report, .. } => {
                totals.quality_rtt.observe(f64::from(report.rtt_avg_ms) / 1000.0);
                totals
                    .quality_loss
                    .observe(f64::from(report.loss_avg_permille) / 1000.0);
                totals.quality_freezes += u64::from(report.freezes);
                *totals
                    .quality_paths
                    .entry((report.path, report.transport))
                    .or_default() += 1;
            }
            Event::CallEnded(call) => *totals.calls_ended.entry(call.reason).or_default() += 1,
            Event::RoomStarted { .. }
            | Event::RoomFinished { .. }
            | Event::Joined(_)
            | Event::Left(_)
            | Event::SfuDescription { .. }
            | Event::SfuView { .. }
            | Event::GroupLeft { .. } => {}
        }
        self.events.push_back(event);
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
