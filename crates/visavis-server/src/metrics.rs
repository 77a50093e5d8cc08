//! Prometheus metrics (`GET /metrics`, served only on `--metrics-listen`): the live counts that
//! `/healthz` no longer tells everyone and the totals since start (calls by outcome, errors by
//! code, resumes, knocks, relayed messages, answer times, calls' reported quality), read from
//! the cores at each scrape; prometheus-client writes the exposition format.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::hub::Hub;
use crate::turn::Turn;
use crate::webhook::DropReason;
use crate::webhook_sender::Webhooks;

/// Reads the signalling and TURN counts when scraped.
#[derive(Debug)]
struct Counts {
    hub: Arc<Hub>,
    turn: Option<Arc<Turn>>,
    webhooks: Option<Arc<Webhooks>>,
}

impl Collector for Counts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let signalling = self.hub.counts();
        let mut sessions = encoder.encode_descriptor(
            "visavis_sessions",
            "Signalling sessions: connected, or detached and waiting to resume",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [
            ("connected", signalling.connections),
            ("detached", signalling.detached),
        ] {
            ConstGauge::new(n as i64).encode(sessions.encode_family(&[("state", state)])?)?;
        }
        let core = signalling.core;
        let gauges = [
            ("visavis_members", "Members in rooms (admitted)", core.members),
            (
                "visavis_lobby_waiting",
                "Members waiting in private rooms' lobbies",
                core.waiting,
            ),
            (
                "visavis_rooms",
                "Rooms (empty private rooms wait for their host an hour)",
                core.rooms,
            ),
            ("visavis_private_rooms", "Private rooms", core.private_rooms),
            (
                "visavis_calls",
                "1:1 calls (ringing or active) and group calls",
                core.calls,
            ),
            ("visavis_calls_ringing", "1:1 calls ringing", core.ringing),
            ("visavis_group_calls", "Group calls", core.group_calls),
        ];
        for (name, help, n) in gauges {
            gauge(&mut encoder, name, help, n)?;
        }
        let (totals, core_totals) = self.hub.totals();
        labelled_counter(
            &mut encoder,
            "visavis_calls_ended",
            "1:1 calls ended, by reason",
            "reason",
            core_totals.calls_ended.iter().map(|(r, n)| (wire_name(r), *n)),
        )?;
        labelled_counter(
            &mut encoder,
            "visavis_errors",
            "Error messages sent to clients, by code",
            "code",
            totals.errors.iter().map(|(c, n)| (wire_name(c), *n)),
        )?;
        let counters = [
            (
                "visavis_resumes",
                "Sessions taken back after a dropped connection",
                totals.resumes,
            ),
            (
                "visavis_lobby_knocks",
                "Knocks on private rooms' lobbies",
                core_totals.knocks,
            ),
            (
                "visavis_relayed_messages",
                "Negotiation and media-state messages relayed between members",
                core_totals.relayed_messages,
            ),
            (
                "visavis_relayed_bytes",
                "Payload bytes of relayed descriptions and candidates",
                core_totals.relayed_bytes,
            ),
        ];
        for (name, help, n) in counters {
            let counter = ConstCounter::new(n);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        let seconds = Some(&prometheus_client::registry::Unit::Seconds);
        histogram(
            &mut encoder,
            "visavis_call_answer",
            "Time from invite to accept of 1:1 calls",
            seconds,
            &core_totals.answer_time,
        )?;
        histogram(
            &mut encoder,
            "visavis_call_connect",
            "Time from accept to the peer connection up in 1:1 calls, as each party reports it",
            seconds,
            &core_totals.connect_time,
        )?;
        histogram(
            &mut encoder,
            "visavis_call_rtt",
            "Average round-trip time of 1:1 calls' media, one observation per party's call_quality report",
            seconds,
            &core_totals.quality_rtt,
        )?;
        histogram(
            &mut encoder,
            "visavis_call_loss_ratio",
            "Average received packet loss of 1:1 calls' media, one observation per party's call_quality report",
            None,
            &core_totals.quality_loss,
        )?;
        let freezes = ConstCounter::new(core_totals.quality_freezes);
        freezes.encode(encoder.encode_descriptor(
            "visavis_call_freezes",
            "Received video freezes in 1:1 calls, as the parties report them",
            None,
            freezes.metric_type(),
        )?)?;
        {
            let mut family = encoder.encode_descriptor(
                "visavis_call_paths",
                "Parties' call_quality reports by the path their media took: candidate type and transport",
                None,
                MetricType::Counter,
            )?;
            let mut paths: Vec<_> = core_totals.quality_paths.iter().collect();
            paths.sort_unstable();
            for ((path, transport), n) in paths {
                let labels = [("path", wire_name(path)), ("transport", wire_name(transport))];
                let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        if let Some(webhooks) = &self.webhooks {
            let totals = webhooks.totals();
            let counters = [
                (
                    "visavis_webhooks_delivered",
                    "Webhook events delivered (answered 2xx), all URLs together",
                    totals.delivered,
                ),
                (
                    "visavis_webhooks_failed",
                    "Webhook requests that failed (not 2xx, an error, the timeout); retried or dropped",
                    totals.failed,
                ),
            ];
            for (name, help, n) in counters {
                let counter = ConstCounter::new(n);
                counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
            }
            labelled_counter(
                &mut encoder,
                "visavis_webhooks_dropped",
                "Webhook events dropped: the queue was full, or every attempt failed",
                "reason",
                [
                    (DropReason::QueueFull, totals.dropped_queue_full),
                    (DropReason::GaveUp, totals.dropped_gave_up),
                ]
                .into_iter()
                .map(|(r, n)| (r.label().to_owned(), n)),
            )?;
        }
        if let Some(turn) = &self.turn {
            let turn = turn.counts();
            gauge(
                &mut encoder,
                "visavis_turn_allocations",
                "TURN allocations",
                turn.allocations,
            )?;
            gauge(
                &mut encoder,
                "visavis_turn_users",
                "TURN users holding allocations",
                turn.users,
            )?;
            let counters = [
                (
                    "visavis_turn_relayed_packets",
                    "Packets relayed by TURN",
                    turn.relayed_packets,
                ),
                (
                    "visavis_turn_relayed_bytes",
                    "Payload bytes relayed by TURN, both ways",
                    turn.relayed_bytes,
                ),
                (
                    "visavis_turn_dropped_packets",
                    "Packets TURN dropped (no permission, over bandwidth)",
                    turn.dropped_packets,
                ),
                (
                    "visavis_turn_refused_peers",
                    "TURN permissions and channels refused for a forbidden peer address",
                    turn.refused_peers,
                ),
            ];
            for (name, help, n) in counters {
                let counter = ConstCounter::new(n);
                counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
            }
        }
        Ok(())
    }
}

/// A histogram, in seconds unless `unit` says otherwise.
fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&prometheus_client::registry::Unit>,
    h: &visavis_room::Histogram,
) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> = h.bounds.iter().copied().zip(h.buckets.iter().copied()).collect();
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Histogram)?;
    family.encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum, h.count, &buckets, None)
}

/// One counter family with a label: each `(value, count)` a series.
fn labelled_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: impl Iterator<Item = (String, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    let mut series: Vec<_> = series.collect();
    series.sort_unstable();
    for (value, n) in series {
        ConstCounter::new(n).encode(family.encode_family(&[(label, value.as_str())])?)?;
    }
    Ok(())
}

/// The snake_case name a wire enum (an end reason, an error code) has in JSON.
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, n: usize) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// Binds the metrics listener and says where it is (a line the tests read).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    Ok(listener)
}

/// The metrics routes (`/metrics`, and `/healthz` so a probe can use the same port).
pub fn router(hub: Arc<Hub>, turn: Option<Arc<Turn>>, webhooks: Option<Arc<Webhooks>>) -> Router {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Counts { hub, turn, webhooks }));
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(crate::healthz))
        .with_state(Arc::new(registry))
}

async fn scrape(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut text = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!("cannot encode metrics: {err}");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
