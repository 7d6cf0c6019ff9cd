//! Which dead letters a person or a script means: the selection of a listing, a replay
//! or a discard, as the admin API (query string or JSON body) and the CLI take it, and
//! its resolved form that the queue matches records against.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize, de::Error as _};

use super::{DeadLetter, DeadLetterReason};

/// A selection of dead letters as written: every criterion given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selection {
    /// These dead letters (a JSON array, or `1,2,3` in a query string).
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "id_list")]
    pub ids: Vec<u64>,
    /// Of this flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Of this reason (`mapping`, `rejected`, `retries_exhausted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DeadLetterReason>,
    /// Failed at this target: its name (`spec.targets[].name`, by default its
    /// Connector's), or (asked of a running runner) its index in `spec.targets` or its
    /// Connector's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Dead-lettered at or after: an RFC 3339 time, a date, or a duration ago (`2h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Dead-lettered before: same forms as `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Contained (ignoring case) in the message, the correlation id, the record id or the
    /// source's delivery id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Every dead letter (of the flow, when one is given): required to replay or discard
    /// without any other criterion, so an empty request never empties the queue.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// At most this many, lowest ids first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only ids above this one (the next page of a listing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Why they are replayed or discarded: required for those, kept in the audit trail
    /// (not a criterion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A selection that cannot be used as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// A time bound is not readable.
    #[error(
        "{field} `{value}` is not a time: use RFC 3339 (2026-11-27T10:00:00Z), a date (2026-11-27) or a duration ago (2h, 30m, 7d)"
    )]
    Time {
        /// `since` or `until`.
        field: &'static str,
        /// What was given.
        value: String,
    },
    /// A replay or discard without any criterion.
    #[error(
        "say which dead letters to {action}: give their ids, a filter (flow, reason, target, since, until, text), or all"
    )]
    Unbounded {
        /// `replay` or `discard`.
        action: &'static str,
    },
}

impl Selection {
    /// Only these dead letters.
    pub fn ids(ids: impl IntoIterator<Item = u64>) -> Self {
        Self { ids: ids.into_iter().collect(), ..Self::default() }
    }

    /// Resolves the selection for a listing, with times relative to `now_ms`.
    pub fn filter(&self, now_ms: i64) -> Result<DeadLetterFilter, SelectionError> {
        Ok(DeadLetterFilter {
            ids: self.ids.iter().copied().collect(),
            flow: self.flow.clone(),
            reason: self.reason,
            target: self.target.clone(),
            since_ms: self.since.as_deref().map(|v| parse_instant("since", v, now_ms)).transpose()?,
            until_ms: self.until.as_deref().map(|v| parse_instant("until", v, now_ms)).transpose()?,
            text: self.text.as_ref().map(|t| t.to_lowercase()),
            after: self.after,
            limit: self.limit,
            carried: None,
        })
    }

    /// Resolves the selection for a replay or discard (`action`), which must name what
    /// it acts on.
    pub fn filter_to(&self, action: &'static str, now_ms: i64) -> Result<DeadLetterFilter, SelectionError> {
        let criteria = !self.ids.is_empty()
            || self.flow.is_some()
            || self.reason.is_some()
            || self.target.is_some()
            || self.since.is_some()
            || self.until.is_some()
            || self.text.is_some();
        if !criteria && !self.all {
            return Err(SelectionError::Unbounded { action });
        }
        self.filter(now_ms)
    }
}

/// Ids as a JSON array or as the comma-separated text of a query string.
fn id_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ids {
        List(Vec<u64>),
        Text(String),
    }
    match Ids::deserialize(d)? {
        Ids::List(ids) => Ok(ids),
        Ids::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| D::Error::custom(format!("ids: `{s}` is not a dead letter id"))))
            .collect(),
    }
}

/// An instant in Unix milliseconds from an RFC 3339 time, a date (midnight UTC) or a
/// duration before `now_ms`.
pub fn parse_instant(field: &'static str, value: &str, now_ms: i64) -> Result<i64, SelectionError> {
    let value = value.trim();
    if let Ok(t) = value.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    if let Ok(d) = value.parse::<jiff::civil::Date>()
        && let Ok(z) = d.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(z.timestamp().as_millisecond());
    }
    match humantime::parse_duration(value) {
        Ok(ago) => Ok(now_ms.saturating_sub(ago.as_millis().min(i64::MAX as u128) as i64)),
        Err(_) => Err(SelectionError::Time { field, value: value.into() }),
    }
}

/// A resolved selection: what the queue matches each dead letter against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only these ids (empty: any).
    pub ids: BTreeSet<u64>,
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this reason.
    pub reason: Option<DeadLetterReason>,
    /// Only this target: its name, or an index or a Connector name when `carried` knows
    /// the flow's targets.
    pub target: Option<String>,
    /// Dead-lettered at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Dead-lettered before (Unix ms).
    pub until_ms: Option<i64>,
    /// Lower-cased text to find.
    pub text: Option<String>,
    /// Only ids above this one.
    pub after: Option<u64>,
    /// At most this many.
    pub limit: Option<usize>,
    /// The flows a running runner carries, each with its targets in `spec.targets`
    /// order, as (name, Connector name). When set, dead letters of other flows are left
    /// alone (no worker would take a replay of them) and `target` may give a target's
    /// index or Connector.
    pub carried: Option<BTreeMap<String, Vec<(String, String)>>>,
}

impl DeadLetterFilter {
    /// Restricts the filter to the flows a runner carries.
    pub fn within(mut self, carried: BTreeMap<String, Vec<(String, String)>>) -> Self {
        self.carried = Some(carried);
        self
    }

    /// The index in `spec.targets` and the Connector name of target `name` of `flow`,
    /// when known.
    pub fn connector(&self, flow: &str, name: &str) -> Option<(usize, &str)> {
        let targets = self.carried.as_ref()?.get(flow)?;
        targets.iter().position(|(n, _)| n == name).map(|i| (i, targets[i].1.as_str()))
    }

    /// Whether dead letter `id` of `flow` is selected (`after` and `limit` aside: they
    /// apply to the sorted matches).
    pub fn matches(&self, flow: &str, id: u64, letter: &DeadLetter) -> bool {
        let text_found = |text: &str| {
            let envelope = &letter.envelope;
            [Some(&letter.message), Some(&envelope.correlation_id), Some(&envelope.id), envelope.delivery_id.as_ref()]
                .into_iter()
                .flatten()
                .any(|field| field.to_lowercase().contains(text))
        };
        let target_matches = |wanted: &str| {
            letter.target.as_deref().is_some_and(|name| {
                wanted == name
                    || self
                        .connector(flow, name)
                        .is_some_and(|(i, connector)| wanted == i.to_string() || wanted == connector)
            })
        };
        self.carried.as_ref().is_none_or(|c| c.contains_key(flow))
            && (self.ids.is_empty() || self.ids.contains(&id))
            && self.flow.as_deref().is_none_or(|f| f == flow)
            && self.reason.is_none_or(|r| r == letter.reason)
            && self.target.as_deref().is_none_or(target_matches)
            && self.since_ms.is_none_or(|t| letter.dead_lettered_at_ms >= t)
            && self.until_ms.is_none_or(|t| letter.dead_lettered_at_ms < t)
            && self.text.as_deref().is_none_or(text_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::redb::tests::envelope;

    fn letter(reason: DeadLetterReason, target: Option<&str>, at_ms: i64, message: &str) -> DeadLetter {
        DeadLetter {
            envelope: envelope("abc", Some("delivery-XYZ")),
            target: target.map(String::from),
            reason,
            message: message.into(),
            status: None,
            response_body: None,
            attempts: Vec::new(),
            dead_lettered_at_ms: at_ms,
        }
    }

    #[test]
    fn every_given_criterion_must_hold() {
        let rejected = letter(DeadLetterReason::Rejected, Some("wms"), 1_000, "400: Invalid item NOPE");
        let sel = Selection {
            flow: Some("orders".into()),
            reason: Some(DeadLetterReason::Rejected),
            target: Some("wms".into()),
            text: Some("invalid ITEM".into()),
            since: Some("1970-01-01T00:00:00.500Z".into()),
            until: Some("1970-01-01T00:00:02Z".into()),
            ..Selection::default()
        };
        let f = sel.filter(0).unwrap();
        assert!(f.matches("orders", 7, &rejected));
        assert!(!f.matches("stock", 7, &rejected), "another flow");
        assert!(!f.matches("orders", 7, &letter(DeadLetterReason::Mapping, Some("wms"), 1_000, "Invalid item")));
        assert!(!f.matches("orders", 7, &letter(DeadLetterReason::Rejected, Some("erp"), 1_000, "Invalid item")));
        assert!(
            !f.matches("orders", 7, &letter(DeadLetterReason::Rejected, Some("wms"), 2_000, "Invalid item")),
            "until is exclusive"
        );
        assert!(!f.matches("orders", 7, &letter(DeadLetterReason::Rejected, Some("wms"), 1_000, "timeout")));
        let by_ids = Selection { ids: vec![3, 7], ..Selection::default() }.filter(0).unwrap();
        assert!(by_ids.matches("orders", 7, &rejected) && !by_ids.matches("orders", 8, &rejected));
    }

    #[test]
    fn text_finds_correlation_and_delivery_ids_and_targets_match_indexes_and_connectors_when_known() {
        let l = letter(DeadLetterReason::Rejected, Some("erp-archive"), 1_000, "refused");
        let text = |t: &str| Selection { text: Some(t.into()), ..Selection::default() }.filter(0).unwrap();
        assert!(text("CORR-ABC").matches("f", 1, &l));
        assert!(text("delivery-xyz").matches("f", 1, &l));
        assert!(!text("nothing").matches("f", 1, &l));
        let target = |t: &str| Selection { target: Some(t.into()), ..Selection::default() }.filter(0).unwrap();
        assert!(target("erp-archive").matches("f", 1, &l), "the target's name");
        assert!(!target("erp").matches("f", 1, &l), "Connectors are unknown without a runner");
        let carried = BTreeMap::from([(
            "f".to_string(),
            vec![("wms".to_string(), "wms".to_string()), ("erp-archive".to_string(), "erp".to_string())],
        )]);
        for wanted in ["erp", "1", "erp-archive"] {
            assert!(target(wanted).within(carried.clone()).matches("f", 1, &l), "{wanted}");
        }
        assert!(!target("0").within(carried.clone()).matches("f", 1, &l));
        assert!(
            !target("erp").within(carried).matches("gone", 1, &l),
            "flows the runner does not carry are left alone"
        );
    }

    #[test]
    fn replay_and_discard_need_a_criterion_and_times_take_three_forms() {
        assert_eq!(Selection::default().filter_to("discard", 0), Err(SelectionError::Unbounded { action: "discard" }));
        assert!(Selection { all: true, ..Selection::default() }.filter_to("discard", 0).is_ok());
        assert!(Selection::ids([4]).filter_to("replay", 0).is_ok());
        let now = 10 * 3_600_000;
        assert_eq!(parse_instant("since", "2h", now), Ok(8 * 3_600_000));
        assert_eq!(parse_instant("since", "1970-01-02", now), Ok(86_400_000));
        assert_eq!(parse_instant("since", "1970-01-01T01:00:00+01:00", now), Ok(0));
        assert!(matches!(parse_instant("until", "yesterday", now), Err(SelectionError::Time { field: "until", .. })));
    }

    #[test]
    fn a_selection_reads_from_a_query_string_or_json_and_refuses_unknown_fields() {
        let q: Selection =
            serde_json::from_value(serde_json::json!({"ids": "3, 5", "reason": "retries_exhausted"})).unwrap();
        assert_eq!((q.ids, q.reason), (vec![3, 5], Some(DeadLetterReason::RetriesExhausted)));
        let j: Selection = serde_json::from_str(r#"{"ids": [9], "all": true, "limit": 2}"#).unwrap();
        assert_eq!((j.ids, j.all, j.limit), (vec![9], true, Some(2)));
        let typo = serde_json::from_str::<Selection>(r#"{"flwo": "orders"}"#).unwrap_err();
        assert!(typo.to_string().contains("flwo"), "{typo}");
    }
}
