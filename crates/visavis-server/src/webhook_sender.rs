//! Webhooks' edge: turns room events into payloads (under the hub's lock, so in the core's
//! order) and runs one task per `--webhook-url` that drives its [`webhook::Endpoint`] and makes
//! the signed POST requests (hyper's client, rustls with *ring*, http and https).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use visavis_room::Event;
use visavis_sansio::Now;

use crate::webhook::{self, DropReason, Endpoint, Output, Payload, Policy, Totals};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long shutdown lets requests in flight finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The webhook settings, from the command line.
#[derive(Debug, Clone)]
pub struct Setup {
    pub urls: Vec<String>,
    pub policy: Policy,
    /// How long one request may take, connecting included.
    pub timeout: Duration,
}

/// Every receiver URL, each with its deliveries.
#[derive(Debug)]
pub struct Webhooks {
    endpoints: Vec<Arc<Sender>>,
}

#[derive(Debug)]
struct Sender {
    url: Uri,
    shown: String,
    machine: Mutex<Endpoint>,
    /// Wakes the task when an event arrives.
    wake: Notify,
    /// Why the last attempt failed, for the drop reports.
    last_error: Mutex<String>,
}

impl Sender {
    fn lock(&self) -> MutexGuard<'_, Endpoint> {
        // The state machine never panics by design; a poisoned lock still holds good state.
        self.machine.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Webhooks {
    /// Starts a task per URL that delivers until `shutdown`, signing with `secret`.
    pub fn start(setup: Setup, secret: &str, shutdown: &CancellationToken) -> anyhow::Result<Arc<Self>> {
        let client = client(&setup.urls)?;
        let secret: Arc<[u8]> = secret.as_bytes().into();
        let mut endpoints = Vec::new();
        for url in &setup.urls {
            let uri: Uri = url.parse().with_context(|| format!("bad --webhook-url {url}"))?;
            let sender = Arc::new(Sender {
                shown: shown(&uri),
                url: uri,
                machine: Mutex::new(Endpoint::new(setup.policy)),
                wake: Notify::new(),
                last_error: Mutex::new(String::new()),
            });
            tracing::info!("webhooks to {}", sender.shown);
            tokio::spawn(deliver(
                sender.clone(),
                client.clone(),
                secret.clone(),
                setup.timeout,
                shutdown.clone(),
            ));
            endpoints.push(sender);
        }
        Ok(Arc::new(Self { endpoints }))
    }

    /// A room event: queued for every URL, if it is one that is sent. Called under the hub's
    /// lock, so it only queues.
    pub fn handle_event(&self, now: Now, event: &Event) {
        if self.endpoints.is_empty() {
            return;
        }
        let id = format!("evt_{}", crate::random_hex(16));
        let Some(payload) = webhook::payload(event, &id, now.unix_ms) else {
            return;
        };
        let payload = Arc::new(payload);
        for sender in &self.endpoints {
            sender.lock().handle_event(event.room(), payload.clone());
            sender.wake.notify_one();
        }
    }

    /// All URLs' totals together.
    pub fn totals(&self) -> Totals {
        self.endpoints.iter().fold(Totals::default(), |mut sum, s| {
            let t = s.lock().totals();
            sum.delivered += t.delivered;
            sum.failed += t.failed;
            sum.dropped_queue_full += t.dropped_queue_full;
            sum.dropped_gave_up += t.dropped_gave_up;
            sum
        })
    }
}

/// The URL without its path and query, which may hold a secret of the receiver's: for logs.
fn shown(uri: &Uri) -> String {
    format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str())
    )
}

/// One client for every URL: http, and https with the system's roots (rustls, *ring*).
fn client(urls: &[String]) -> anyhow::Result<HttpsClient> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_provider_and_native_roots(provider.clone()) {
        Ok(builder) => builder,
        Err(err) if !urls.iter().any(|u| u.starts_with("https:")) => {
            // Plain http receivers need no roots.
            tracing::debug!("no system CA certificates ({err}); webhooks are http only");
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
        Err(err) => return Err(err).context("cannot load the system's CA certificates for https webhooks"),
    };
    let connector = builder.https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Drives one URL's deliveries until `shutdown`, then lets requests in flight finish for a
/// moment.
async fn deliver(
    sender: Arc<Sender>,
    client: HttpsClient,
    secret: Arc<[u8]>,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut in_flight = JoinSet::new();
    loop {
        let next = {
            let now = tokio::time::Instant::now().into_std();
            let mut machine = sender.lock();
            while let Some(out) = machine.poll_output(now) {
                match out {
                    Output::Send {
                        seq,
                        payload,
                        attempt,
                    } => {
                        let request = post(
                            client.clone(),
                            sender.clone(),
                            secret.clone(),
                            payload,
                            attempt,
                            timeout,
                        );
                        in_flight.spawn(async move { (seq, request.await) });
                    }
                    Output::Dropped { reason, count } => {
                        report(&sender, reason, count, machine.totals());
                    }
                }
            }
            machine.poll_timeout()
        };
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = sender.wake.notified() => {}
            Some(done) = in_flight.join_next() => {
                if let Ok((seq, delivered)) = done {
                    let now = tokio::time::Instant::now().into_std();
                    sender.lock().handle_result(now, seq, delivered);
                }
            }
            () = sleep => {}
        }
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    let held = sender.lock().held();
    if held > 0 {
        tracing::warn!(
            "webhooks to {}: {held} events not delivered at shutdown",
            sender.shown
        );
    }
}

fn report(sender: &Sender, reason: DropReason, count: u64, totals: Totals) {
    let last_error = sender.last_error.lock().map(|e| e.clone()).unwrap_or_default();
    let why = match reason {
        DropReason::QueueFull => "the queue is full (--webhook-queue)",
        DropReason::GaveUp => "every attempt failed (--webhook-attempts)",
    };
    tracing::warn!(
        "webhooks to {}: dropped {count} events: {why}; last error: {last_error}; dropped in all: {} \
         (queue full), {} (gave up)",
        sender.shown,
        totals.dropped_queue_full,
        totals.dropped_gave_up,
    );
}

/// POSTs one event, signed; whether the receiver answered 2xx within `timeout`.
async fn post(
    client: HttpsClient,
    sender: Arc<Sender>,
    secret: Arc<[u8]>,
    payload: Arc<Payload>,
    attempt: u32,
    timeout: Duration,
) -> bool {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signature = webhook::sign(&secret, t, &payload.body);
    let request = Request::builder()
        .method(Method::POST)
        .uri(sender.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("visavis/", env!("CARGO_PKG_VERSION")))
        .header(webhook::SIGNATURE_HEADER, signature)
        .header(webhook::EVENT_ID_HEADER, payload.id.as_str())
        .header("Visavis-Attempt", HeaderValue::from(attempt))
        .body(Full::new(payload.body.clone()));
    let request = match request {
        Ok(request) => request,
        Err(err) => return failed(&sender, &payload, format!("cannot make the request: {err}")),
    };
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) if response.status().is_success() => true,
        Ok(Ok(response)) => failed(&sender, &payload, format!("HTTP {}", response.status())),
        Ok(Err(err)) => failed(&sender, &payload, chain(&err)),
        Err(_) => failed(&sender, &payload, format!("no answer in {timeout:?}")),
    }
}

/// An error with its causes: hyper's own says only "client error (Connect)".
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn failed(sender: &Sender, payload: &Payload, error: String) -> bool {
    tracing::debug!("webhook {} to {}: {error}", payload.id, sender.shown);
    if let Ok(mut last) = sender.last_error.lock() {
        *last = error;
    }
    false
}
