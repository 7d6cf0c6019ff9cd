//! Status conditions, kstatus style: a list keyed by `type`, where a condition's
//! `lastTransitionTime` moves only when its `status` flips.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// The resource does what its spec asks (for a SyncFlow: its runner is available).
pub const READY: &str = "Ready";
/// The operator is working towards the spec and expects to get there by itself.
pub const RECONCILING: &str = "Reconciling";
/// The operator cannot make progress until someone changes something; the reason
/// and message say what.
pub const STALLED: &str = "Stalled";

/// A condition as the operator wants it now; [`merge`] turns it into a [`Condition`]
/// with the right `lastTransitionTime`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// The condition type, e.g. [`READY`].
    pub type_: &'static str,
    /// Whether the condition holds.
    pub status: Status,
    /// One CamelCase word a program can match on, e.g. `ConnectorNotFound`.
    pub reason: &'static str,
    /// A sentence for a human: what is wrong and what to do.
    pub message: String,
}

/// A condition's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// The operator cannot tell yet.
    Unknown,
}

impl Status {
    /// The value written into the condition: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl Desired {
    /// A condition that holds.
    pub fn yes(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status: Status::True, reason, message: message.into() }
    }

    /// A condition that does not hold.
    pub fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status: Status::False, reason, message: message.into() }
    }

    /// A condition the operator cannot decide yet.
    pub fn unknown(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self { type_, status: Status::Unknown, reason, message: message.into() }
    }
}

/// The conditions of a resource that cannot be run as written: not Ready, not
/// Reconciling (nothing will change until someone edits something), Stalled, all with
/// `reason`; `message` says what to change.
pub fn stalled(reason: &'static str, message: String) -> Vec<Desired> {
    vec![
        Desired::no(READY, reason, message.clone()),
        Desired::no(RECONCILING, reason, "waiting for the spec or a referenced resource to change"),
        Desired::yes(STALLED, reason, message),
    ]
}

/// Ready (or not) for `reason`, and not Reconciling: the operator has done what it can,
/// and the state will not change by waiting on it.
pub fn settled(ready: bool, reason: &'static str, message: String) -> [Desired; 2] {
    let ready =
        if ready { Desired::yes(READY, reason, message.clone()) } else { Desired::no(READY, reason, message.clone()) };
    [ready, Desired::no(RECONCILING, reason, message)]
}

/// Merges `desired` into `existing`, keyed by type. A condition whose status is
/// unchanged keeps its `lastTransitionTime`; a new or flipped one gets `now`. Conditions
/// of other types (written by someone else) are kept as they are, and the order of
/// existing ones is kept so that an unchanged status compares equal.
pub fn merge(existing: &[Condition], desired: &[Desired], observed_generation: i64, now: Timestamp) -> Vec<Condition> {
    // The API server stores times to the second; a sub-second `now` would never
    // compare equal to what it reads back.
    let now = Time(Timestamp::from_second(now.as_second()).unwrap_or(now));
    let build = |d: &Desired, previous: Option<&Condition>| Condition {
        type_: d.type_.to_string(),
        status: d.status.as_str().to_string(),
        reason: d.reason.to_string(),
        message: d.message.clone(),
        observed_generation: Some(observed_generation),
        last_transition_time: match previous {
            Some(p) if p.status == d.status.as_str() => p.last_transition_time.clone(),
            _ => now.clone(),
        },
    };

    let mut merged: Vec<Condition> = existing
        .iter()
        .map(|old| match desired.iter().find(|d| d.type_ == old.type_) {
            Some(d) => build(d, Some(old)),
            None => old.clone(),
        })
        .collect();
    for d in desired {
        if !existing.iter().any(|old| old.type_ == d.type_) {
            merged.push(build(d, None));
        }
    }
    merged
}

/// The condition of type `type_`, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// The condition of type `type_` in `next`, if it has `status` and `reason` there and
/// did not have both in `previous`: the moment to publish an Event.
pub fn entered<'a>(
    previous: &[Condition],
    next: &'a [Condition],
    type_: &str,
    status: Status,
    reason: &str,
) -> Option<&'a Condition> {
    let holds = |c: &Condition| c.status == status.as_str() && c.reason == reason;
    let now = find(next, type_).filter(|c| holds(c))?;
    (!find(previous, type_).is_some_and(holds)).then_some(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_new_condition_gets_now_as_transition_time() {
        let merged = merge(&[], &[Desired::no(READY, "RunnerNotAvailable", "waiting")], 3, at(100));
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].type_, READY);
        assert_eq!(merged[0].status, "False");
        assert_eq!(merged[0].observed_generation, Some(3));
        assert_eq!(merged[0].last_transition_time, Time(at(100)));
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_flips() {
        let first = merge(&[], &[Desired::no(READY, "RunnerNotAvailable", "0/1 available")], 1, at(100));

        // Same status, new reason and message: the time stays.
        let same = merge(&first, &[Desired::no(READY, "ConnectorNotFound", "no connector")], 2, at(200));
        assert_eq!(same[0].last_transition_time, Time(at(100)));
        assert_eq!(same[0].reason, "ConnectorNotFound");
        assert_eq!(same[0].observed_generation, Some(2));

        // Flipped: the time moves.
        let flipped = merge(&same, &[Desired::yes(READY, "RunnerAvailable", "1/1 available")], 2, at(300));
        assert_eq!(flipped[0].status, "True");
        assert_eq!(flipped[0].last_transition_time, Time(at(300)));
    }

    #[test]
    fn merging_the_same_conditions_again_changes_nothing() {
        let desired = [Desired::yes(READY, "RunnerAvailable", "ok"), Desired::no(STALLED, "Resolved", "ok")];
        let once = merge(&[], &desired, 1, at(100));
        let twice = merge(&once, &desired, 1, at(500));
        assert_eq!(once, twice);
    }

    #[test]
    fn conditions_are_keyed_by_type_not_position() {
        let existing = merge(
            &[],
            &[Desired::no(STALLED, "Resolved", ""), Desired::no(READY, "RunnerNotAvailable", "")],
            1,
            at(100),
        );
        // Desired in the other order; Ready flips, Stalled does not.
        let merged = merge(
            &existing,
            &[Desired::yes(READY, "RunnerAvailable", ""), Desired::no(STALLED, "Resolved", "")],
            1,
            at(200),
        );
        assert_eq!(merged[0].type_, STALLED);
        assert_eq!(merged[0].last_transition_time, Time(at(100)));
        assert_eq!(merged[1].type_, READY);
        assert_eq!(merged[1].last_transition_time, Time(at(200)));
        assert!(is_true(&merged, READY));
        assert!(!is_true(&merged, STALLED));
    }

    #[test]
    fn conditions_of_other_writers_are_kept() {
        let foreign = Condition {
            type_: "Audited".into(),
            status: "True".into(),
            reason: "Checked".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(at(5)),
        };
        let merged = merge(std::slice::from_ref(&foreign), &[Desired::yes(READY, "RunnerAvailable", "")], 1, at(100));
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0], foreign);
    }

    #[test]
    fn a_condition_is_entered_once() {
        let failing = merge(&[], &[Desired::no(READY, "TestsFailing", "1 failed")], 1, at(100));
        assert!(entered(&[], &failing, READY, Status::False, "TestsFailing").is_some());
        // Still failing, with another message: not entered again.
        let still = merge(&failing, &[Desired::no(READY, "TestsFailing", "2 failed")], 2, at(200));
        assert!(entered(&failing, &still, READY, Status::False, "TestsFailing").is_none());
        let other = merge(&still, &[Desired::no(READY, "CompileFailed", "")], 3, at(300));
        assert!(entered(&still, &other, READY, Status::False, "TestsFailing").is_none());
        assert!(entered(&other, &still, READY, Status::False, "TestsFailing").is_some());
        let unknown = merge(&[], &[Desired::unknown(READY, "NotReported", "")], 1, at(100));
        assert_eq!(unknown[0].status, "Unknown");
    }

    #[test]
    fn sub_second_times_are_truncated_like_the_api_server_does() {
        let now = Timestamp::from_millisecond(100_250).unwrap();
        let merged = merge(&[], &[Desired::yes(READY, "RunnerAvailable", "")], 1, now);
        assert_eq!(merged[0].last_transition_time, Time(at(100)));
    }
}
