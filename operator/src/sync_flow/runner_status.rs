//! What a flow's runners say about themselves: each running pod's `GET /v1/status`
//! (the runner's typed [`entrepot_api::status::RunnerStatus`]), read on every reconcile and
//! folded into one report for the flow's status.
//!
//! The operator asks the runner pods directly, on their admin port. It never calls the
//! flow's systems and never reads a Secret: whether a target answers, and with what, is
//! what the runners report.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::Duration,
};

use entrepot_api::status::{ConnectorStatus, FlowStatus, RunnerStatus, TargetStatus};
use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};
use kube::{Api, Client, ResourceExt, api::ListParams};

use super::build::{ADMIN_PORT, selector_labels};

/// How long one pod may take to answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The most of one pod's answer that is read: a status is a few KB per flow, and
/// whatever answers on a runner pod's admin port (it may not be the runner) must not
/// fill the operator's memory.
const MAX_STATUS_BYTES: usize = 1 << 20;

/// Reads runner pods' status and remembers the last counters of each pod, to turn
/// the runner's since-start counters into rates.
pub struct RunnerStatusReader {
    http: reqwest::Client,
    /// Where the pods are asked: their IP and the admin port, unless a test points
    /// every pod at one local address.
    address: Option<String>,
    port: u16,
    samples: Mutex<HashMap<String, Sample>>,
}

impl Default for RunnerStatusReader {
    fn default() -> Self {
        Self::new(None, ADMIN_PORT as u16)
    }
}

/// One pod's counters at one read.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    at: Timestamp,
    counters: Counters,
}

/// A flow's since-start counters in one pod.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counters {
    delivered: u64,
    failed: u64,
    throttled: u64,
}

impl Counters {
    fn of(flow: &FlowStatus) -> Self {
        Self {
            delivered: flow.delivered,
            // Attempts that failed and were retried, and records that went to the
            // dead-letter queue.
            failed: flow.targets.iter().map(|t| t.retried).sum::<u64>() + flow.dead_lettered_total,
            throttled: flow.targets.iter().map(|t| t.throttled).sum(),
        }
    }
}

/// Rates over the time between two reads, per minute.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Throughput {
    /// Items delivered to targets.
    pub delivered: f64,
    /// Failed attempts (retried) and dead-lettered records.
    pub failed: f64,
    /// 429 answers from targets.
    pub throttled: f64,
}

/// What the flow's runner pods reported, folded into one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunnerReport {
    /// Runner pods found running.
    pub pods: usize,
    /// The flow, summed over the pods that answered; `None` when none did.
    pub flow: Option<FlowStatus>,
    /// Each Connector, the most recent error and success over the pods.
    pub connectors: Vec<ConnectorStatus>,
    /// Since the last read; `None` on the first read of every pod (or after restarts).
    pub throughput: Option<Throughput>,
    /// Pods that could not be read, with why.
    pub unanswered: Vec<String>,
}

impl RunnerStatusReader {
    /// A reader that asks each pod at `address` (its own IP when `None`) on `port`.
    pub fn new(address: Option<String>, port: u16) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // A runner never redirects; whatever does is not one.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client without TLS settings builds");
        Self { http, address, port, samples: Mutex::default() }
    }

    async fn ask(&self, ip: &str) -> Result<RunnerStatus, String> {
        let host = self.address.as_deref().unwrap_or(ip);
        let url = format!("http://{host}:{}/v1/status", self.port);
        let mut response = self.http.get(&url).send().await.map_err(|e| format!("no answer: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("status cut short: {e}"))? {
            if body.len() + chunk.len() > MAX_STATUS_BYTES {
                return Err(format!("status larger than {MAX_STATUS_BYTES} bytes: not read"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("unreadable status: {e}"))
    }
}

/// Reads every running pod of `flow` and folds their reports.
pub async fn read(client: &Client, reader: &RunnerStatusReader, namespace: &str, flow: &str) -> RunnerReport {
    let selector = selector_labels(flow).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let pods =
        match Api::<Pod>::namespaced(client.clone(), namespace).list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items,
            Err(e) => {
                return RunnerReport {
                    unanswered: vec![format!("cannot list the runner pods: {e}")],
                    ..RunnerReport::default()
                };
            }
        };
    let running: Vec<(String, String, String)> = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| Some((p.name_any(), p.uid()?, p.status.as_ref()?.pod_ip.clone()?)))
        .collect();
    let answers = futures::future::join_all(running.iter().map(|(_, _, ip)| reader.ask(ip))).await;
    let now = Timestamp::now();
    let mut reports = Vec::new();
    let mut unanswered = Vec::new();
    for ((name, uid, _), answer) in running.iter().zip(answers) {
        match answer {
            Ok(status) => reports.push((uid.clone(), status)),
            Err(e) => unanswered.push(format!("pod {name}: {e}")),
        }
    }
    let mut samples = reader.samples.lock().unwrap_or_else(|p| p.into_inner());
    let mut report = fold(flow, namespace, &reports, &mut samples, now);
    // Forget pods that are gone.
    let alive: Vec<&String> = running.iter().map(|(_, uid, _)| uid).collect();
    samples.retain(|key, _| {
        !key.starts_with(&format!("{namespace}/{flow}/")) || alive.iter().any(|uid| key.ends_with(uid.as_str()))
    });
    report.pods = running.len();
    report.unanswered = unanswered;
    report
}

/// Folds pod reports (pod uid, status) of one flow into one, updating `samples`.
fn fold(
    flow: &str,
    namespace: &str,
    reports: &[(String, RunnerStatus)],
    samples: &mut HashMap<String, Sample>,
    now: Timestamp,
) -> RunnerReport {
    let mut merged: Option<FlowStatus> = None;
    let mut connectors: BTreeMap<String, ConnectorStatus> = BTreeMap::new();
    let mut rates: Option<Throughput> = None;
    for (uid, status) in reports {
        let Some(mine) = status.flows.iter().find(|f| f.name == flow && f.namespace == namespace) else { continue };
        merged = Some(match merged {
            None => mine.clone(),
            Some(sum) => add(sum, mine),
        });
        let key = format!("{namespace}/{flow}/{uid}");
        let counters = Counters::of(mine);
        if let Some(before) = samples.get(&key)
            && let Some(rate) = rate(before, counters, now)
        {
            let total = rates.unwrap_or_default();
            rates = Some(Throughput {
                delivered: total.delivered + rate.delivered,
                failed: total.failed + rate.failed,
                throttled: total.throttled + rate.throttled,
            });
        }
        samples.insert(key, Sample { at: now, counters });
        for c in &status.connectors {
            let entry = connectors.entry(c.name.clone()).or_insert_with(|| ConnectorStatus {
                name: c.name.clone(),
                namespace: c.namespace.clone(),
                ..ConnectorStatus::default()
            });
            if c.last_error_at.is_some() && c.last_error_at > entry.last_error_at {
                entry.last_error_at = c.last_error_at;
                entry.last_error_category = c.last_error_category;
                entry.last_error_message = c.last_error_message.clone();
            }
            entry.last_success_at = entry.last_success_at.max(c.last_success_at);
        }
    }
    RunnerReport {
        flow: merged,
        connectors: connectors.into_values().collect(),
        throughput: rates,
        ..RunnerReport::default()
    }
}

/// Per minute between two samples of one pod; `None` when too close together or when
/// a counter went down (the pod restarted: its counters start again).
fn rate(before: &Sample, now_counters: Counters, now: Timestamp) -> Option<Throughput> {
    let seconds = now.duration_since(before.at).as_secs_f64();
    if seconds < 1.0 {
        return None;
    }
    let per_minute = |then: u64, now: u64| Some(now.checked_sub(then)? as f64 * 60.0 / seconds);
    let c = before.counters;
    Some(Throughput {
        delivered: per_minute(c.delivered, now_counters.delivered)?,
        failed: per_minute(c.failed, now_counters.failed)?,
        throttled: per_minute(c.throttled, now_counters.throttled)?,
    })
}

/// Two pods' view of one flow: counts add up, the oldest is the oldest.
fn add(mut sum: FlowStatus, other: &FlowStatus) -> FlowStatus {
    sum.received += other.received;
    sum.deduplicated += other.deduplicated;
    sum.delivered += other.delivered;
    sum.stale += other.stale;
    sum.dead_lettered += other.dead_lettered;
    sum.dead_lettered_total += other.dead_lettered_total;
    sum.pending += other.pending;
    sum.oldest_pending_seconds = sum.oldest_pending_seconds.max(other.oldest_pending_seconds);
    for t in &other.targets {
        match sum.targets.iter_mut().find(|s| s.connector == t.connector) {
            Some(s) => {
                s.delivered += t.delivered;
                s.retried += t.retried;
                s.throttled += t.throttled;
                s.last_error = s.last_error.take().or_else(|| t.last_error.clone());
                s.last_delivered_at = s.last_delivered_at.max(t.last_delivered_at);
            }
            None => sum.targets.push(TargetStatus { ..t.clone() }),
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use entrepot_api::ErrorCategory;

    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn flow(delivered: u64, pending: u64, oldest: Option<u64>) -> FlowStatus {
        FlowStatus {
            name: "orders".into(),
            namespace: "retail".into(),
            delivered,
            pending,
            oldest_pending_seconds: oldest,
            targets: vec![TargetStatus {
                connector: "erp".into(),
                delivered,
                retried: 2,
                throttled: 1,
                ..TargetStatus::default()
            }],
            ..FlowStatus::default()
        }
    }

    fn pod(flow: FlowStatus, connectors: Vec<ConnectorStatus>) -> RunnerStatus {
        RunnerStatus { flows: vec![flow], connectors, ..RunnerStatus::default() }
    }

    #[test]
    fn pods_add_up_and_the_oldest_record_is_the_oldest_of_any_pod() {
        let mut samples = HashMap::new();
        let reports =
            [("a".to_string(), pod(flow(10, 3, Some(40)), vec![])), ("b".into(), pod(flow(5, 2, Some(90)), vec![]))];
        let report = fold("orders", "retail", &reports, &mut samples, at(100));
        let f = report.flow.unwrap();
        assert_eq!((f.delivered, f.pending, f.oldest_pending_seconds), (15, 5, Some(90)));
        assert_eq!(f.targets.len(), 1);
        assert_eq!((f.targets[0].delivered, f.targets[0].retried), (15, 4));
        // First read: no rate yet.
        assert_eq!(report.throughput, None);
    }

    #[test]
    fn rates_come_from_the_difference_between_two_reads_per_pod() {
        let mut samples = HashMap::new();
        fold("orders", "retail", &[("a".into(), pod(flow(100, 0, None), vec![]))], &mut samples, at(0));
        let mut later = flow(160, 0, None);
        later.targets[0].throttled = 4;
        let report = fold("orders", "retail", &[("a".into(), pod(later, vec![]))], &mut samples, at(30));
        let t = report.throughput.unwrap();
        assert_eq!(t.delivered, 120.0, "60 in 30 s is 120 a minute");
        assert_eq!(t.throttled, 6.0);
        assert_eq!(t.failed, 0.0);
        // A restarted pod (counters went down) gives no rate rather than a wrong one.
        let report = fold("orders", "retail", &[("a".into(), pod(flow(3, 0, None), vec![]))], &mut samples, at(60));
        assert_eq!(report.throughput, None);
    }

    #[test]
    fn another_flow_in_the_same_runner_is_not_counted() {
        let mut other = flow(99, 9, Some(999));
        other.name = "inventory".into();
        let report = fold("orders", "retail", &[("a".into(), pod(other, vec![]))], &mut HashMap::new(), at(0));
        assert_eq!(report.flow, None);
    }

    #[test]
    fn each_connector_keeps_the_latest_error_and_the_latest_success_of_any_pod() {
        let erp = |error: Option<(i64, ErrorCategory)>, success: Option<i64>| ConnectorStatus {
            name: "erp".into(),
            namespace: "retail".into(),
            last_error_category: error.map(|e| e.1),
            last_error_at: error.map(|e| at(e.0)),
            last_error_message: error.map(|e| format!("{:?} at {}", e.1, e.0)),
            last_success_at: success.map(at),
            quota: None,
        };
        let reports = [
            ("a".to_string(), pod(flow(1, 0, None), vec![erp(Some((50, ErrorCategory::Auth)), Some(10))])),
            ("b".to_string(), pod(flow(1, 0, None), vec![erp(Some((20, ErrorCategory::Throttled)), Some(40))])),
        ];
        let report = fold("orders", "retail", &reports, &mut HashMap::new(), at(60));
        let c = &report.connectors[0];
        assert_eq!(c.last_error_category, Some(ErrorCategory::Auth));
        assert_eq!(c.last_error_at, Some(at(50)));
        assert_eq!(c.last_success_at, Some(at(40)));
    }

    /// Answers every connection with `body` as an HTTP/1.1 200, then closes it.
    async fn answering(body: Vec<u8>) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head =
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn a_status_larger_than_the_cap_is_not_read() {
        let huge = format!("{{\"flows\": [{}\"x\"]}}", "\"padding\",".repeat(MAX_STATUS_BYTES / 10 + 1));
        let reader = RunnerStatusReader::new(Some("127.0.0.1".into()), answering(huge.into_bytes()).await);
        let err = reader.ask("ignored").await.unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        let small = serde_json::to_vec(&pod(flow(1, 0, None), vec![])).unwrap();
        let reader = RunnerStatusReader::new(Some("127.0.0.1".into()), answering(small).await);
        assert_eq!(reader.ask("ignored").await.unwrap().flows[0].delivered, 1);
    }
}
