//! The operator's reconcile errors and the fixed categories they fall into.

use crate::{
    reconcile_schedule::{build::BuildError as ScheduleBuildError, validate::Invalid as ScheduleInvalid},
    sync_flow::{build::BuildError, validate::Invalid},
};

/// Why a reconcile did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    KubeApi {
        /// What was being done: `get`, `apply`, `patch status`.
        action: &'static str,
        /// The kind of the object.
        kind: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The client's error.
        source: kube::Error,
    },
    /// The resource cannot be run as written; reported as `Stalled` on it.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The desired objects cannot be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A ReconcileSchedule cannot be run as written; reported as `Stalled` on it.
    #[error(transparent)]
    Schedule(#[from] ScheduleInvalid),
    /// A ReconcileSchedule's CronJob cannot be built.
    #[error(transparent)]
    ScheduleBuild(#[from] ScheduleBuildError),
}

impl Error {
    /// One of a small fixed set of categories, for metric labels and Event reasons:
    /// `kube_api`, `reference_missing`, `invalid_spec`, `serialize`, `invalid_object`.
    /// Never derived from the error's text, so label values stay bounded.
    pub fn category(&self) -> &'static str {
        match self {
            Self::KubeApi { .. } => "kube_api",
            Self::Invalid(invalid) if invalid.is_missing_reference() => "reference_missing",
            Self::Invalid(_) => "invalid_spec",
            Self::Build(BuildError::Render { .. }) => "serialize",
            Self::Build(BuildError::NoSchedule { .. }) => "invalid_spec",
            Self::Build(BuildError::NoOwnerReference) => "invalid_object",
            Self::Schedule(invalid) if invalid.is_missing_reference() => "reference_missing",
            Self::Schedule(_) => "invalid_spec",
            Self::ScheduleBuild(ScheduleBuildError::NoOwnerReference) => "invalid_object",
        }
    }

    /// Every category [`Error::category`] can return.
    pub const CATEGORIES: [&'static str; 5] =
        ["kube_api", "reference_missing", "invalid_spec", "serialize", "invalid_object"];
}

#[cfg(test)]
mod tests {
    use entrepot_api::config::ResolveError;

    use super::*;

    #[test]
    fn categories_come_from_a_fixed_set() {
        let missing = Error::Invalid(Invalid::Resolve(ResolveError::MappingNotFound {
            flow: "f".into(),
            namespace: "n".into(),
            field: "spec.mappingRef".into(),
            name: "m".into(),
        }));
        let invalid = Error::Invalid(Invalid::Resolve(ResolveError::Invalid {
            flow: "f".into(),
            field: "spec.targets".into(),
            message: "a flow needs at least one target".into(),
        }));
        let api = Error::KubeApi {
            action: "get",
            kind: "Connector".into(),
            namespace: "n".into(),
            name: "c".into(),
            source: kube::Error::LinesCodecMaxLineLengthExceeded,
        };
        let owner = Error::Build(BuildError::NoOwnerReference);
        let got: Vec<&str> = [&missing, &invalid, &api, &owner].iter().map(|e| e.category()).collect();
        assert_eq!(got, ["reference_missing", "invalid_spec", "kube_api", "invalid_object"]);
        assert!(got.iter().all(|c| Error::CATEGORIES.contains(c)));
        assert!(api.to_string().starts_with("get Connector n/c: "), "{api}");
    }
}
