//! Event deliveries with seeded faults, shared by the simulators that push events
//! (marketplace notifications, WMS movement webhooks): some events are dropped, some
//! delivered twice with the same id, some swapped with their successor, and a batch may be
//! held back (reference, "Behaviours a simulator must reproduce" 3 and 4).

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

/// The fault knobs of a pushed event stream. Every choice comes from the seed, so a run
/// is reproducible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Fraction of events, 0 to 1, delivered a second time with the same id and body.
    pub duplicate_ratio: f64,
    /// Fraction of events, 0 to 1, swapped with the next one of their batch.
    pub reorder_ratio: f64,
    /// Fraction of events, 0 to 1, never delivered.
    pub drop_ratio: f64,
    /// Wait before each batch is delivered.
    pub delay: Duration,
    /// Seed of the fault choices.
    pub seed: u64,
}

impl Default for Faults {
    /// No faults: every event once, in order, at once.
    fn default() -> Self {
        Self { duplicate_ratio: 0.0, reorder_ratio: 0.0, drop_ratio: 0.0, delay: Duration::ZERO, seed: 0 }
    }
}

impl Faults {
    fn check(&self) -> Result<(), String> {
        for (name, ratio) in [
            ("duplicate_ratio", self.duplicate_ratio),
            ("reorder_ratio", self.reorder_ratio),
            ("drop_ratio", self.drop_ratio),
        ] {
            if !(0.0..=1.0).contains(&ratio) {
                return Err(format!("{name} {ratio} must be between 0 and 1"));
            }
        }
        Ok(())
    }
}

/// What became of one batch of events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// HTTP deliveries made, duplicates included.
    pub deliveries: u64,
    /// Deliveries answered 2xx.
    pub acknowledged: u64,
    /// Events delivered twice.
    pub duplicated: u64,
    /// Events swapped with their successor.
    pub reordered: u64,
    /// Ids of the events never sent (reconciliation must find what they carried).
    pub dropped: Vec<String>,
}

impl DeliveryReport {
    /// Adds `other`'s counts to this report.
    pub fn absorb(&mut self, other: Self) {
        self.deliveries += other.deliveries;
        self.acknowledged += other.acknowledged;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.dropped.extend(other.dropped);
    }
}

/// One event to deliver: its id (for the report), body and headers.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event's id, as the receiver dedupes on it.
    pub id: String,
    /// The exact bytes sent.
    pub body: Bytes,
    /// Headers sent with the body (content type, signature, ids).
    pub headers: HeaderMap,
}

/// Posts events to one URL with the configured faults.
pub struct FaultyPoster {
    client: reqwest::Client,
    url: reqwest::Url,
    faults: Faults,
    rng: Mutex<Xoshiro256PlusPlus>,
}

impl fmt::Debug for FaultyPoster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyPoster")
            .field("url", &self.url.as_str())
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl FaultyPoster {
    /// A poster to `target` (http or https), each delivery allowed `timeout`. The error
    /// says what is wrong with the target or the knobs.
    pub fn new(target: &str, faults: Faults, timeout: Duration) -> Result<Self, String> {
        faults.check()?;
        let url = reqwest::Url::parse(target).map_err(|error| error.to_string())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("the scheme must be http or https".to_owned());
        }
        let client =
            reqwest::Client::builder().timeout(timeout).no_proxy().build().map_err(|error| error.to_string())?;
        Ok(Self {
            client,
            url,
            rng: Mutex::new(Xoshiro256PlusPlus::seed_from_u64(faults.seed ^ 0xde11_7e27_5eed_0001)),
            faults,
        })
    }

    /// Delivers `events` once each, except those the faults drop, duplicate or reorder.
    pub async fn deliver(&self, events: Vec<Event>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        // Every choice is made before the first await: the rng lock is never held across one.
        let plan: Vec<(Event, bool)> = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            let mut plan = Vec::new();
            for event in events {
                if rng.random_bool(self.faults.drop_ratio) {
                    report.dropped.push(event.id);
                    continue;
                }
                let duplicate = rng.random_bool(self.faults.duplicate_ratio);
                plan.push((event, duplicate));
            }
            let mut index = 0;
            while index + 1 < plan.len() {
                if rng.random_bool(self.faults.reorder_ratio) {
                    plan.swap(index, index + 1);
                    report.reordered += 1;
                    index += 2;
                } else {
                    index += 1;
                }
            }
            plan
        };
        if !self.faults.delay.is_zero() {
            tokio::time::sleep(self.faults.delay).await;
        }
        for (event, duplicate) in plan {
            report.duplicated += u64::from(duplicate);
            for _ in 0..if duplicate { 2 } else { 1 } {
                report.deliveries += 1;
                if self.post(&event).await {
                    report.acknowledged += 1;
                }
            }
        }
        report
    }

    async fn post(&self, event: &Event) -> bool {
        let request = self.client.post(self.url.clone()).headers(event.headers.clone()).body(event.body.clone());
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                // Reading the answer lets the connection be reused.
                let _ = response.bytes().await;
                status.is_success()
            }
            Err(error) => {
                tracing::info!(target_url = %self.url, event_id = event.id, %error, "event delivery failed");
                false
            }
        }
    }
}
