//! Prometheus metrics (`GET /metrics`, served only on `--metrics-listen`): the live counts that
//! `/healthz` no longer tells everyone, read from the cores at each scrape.

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

/// Reads the signalling and TURN counts when scraped.
#[derive(Debug)]
struct Counts {
    hub: Arc<Hub>,
    turn: Option<Arc<Turn>>,
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
        let gauges = [
            ("visavis_members", "Members in rooms", signalling.core.members),
            (
                "visavis_rooms",
                "Rooms with at least one member",
                signalling.core.rooms,
            ),
            (
                "visavis_calls",
                "1:1 calls (ringing or active) and group calls",
                signalling.core.calls,
            ),
        ];
        for (name, help, n) in gauges {
            gauge(&mut encoder, name, help, n)?;
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
                    "visavis_turn_dropped_packets",
                    "Packets TURN dropped (no permission, over bandwidth)",
                    turn.dropped_packets,
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
pub fn router(hub: Arc<Hub>, turn: Option<Arc<Turn>>) -> Router {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Counts { hub, turn }));
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
