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

/// The small fixed set of categories a reconcile error falls into: the `category`
/// label of the failure metric and the `category` field of the log line. Never derived
/// from the error's text, so label values stay bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// A call to the Kubernetes API failed.
    KubeApi,
    /// Something the resource references does not exist (yet).
    ReferenceMissing,
    /// The resource cannot be run as written.
    InvalidSpec,
    /// What the operator rendered cannot be serialized.
    Serialize,
    /// The object lacks what the API server assigns (uid, name).
    InvalidObject,
}

impl Category {
    /// Every category, in a fixed order.
    pub const ALL: [Self; 5] =
        [Self::KubeApi, Self::ReferenceMissing, Self::InvalidSpec, Self::Serialize, Self::InvalidObject];

    /// The label value: `kube_api`, `reference_missing`, `invalid_spec`, `serialize` or
    /// `invalid_object`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KubeApi => "kube_api",
            Self::ReferenceMissing => "reference_missing",
            Self::InvalidSpec => "invalid_spec",
            Self::Serialize => "serialize",
            Self::InvalidObject => "invalid_object",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The category this error falls into.
    pub fn category(&self) -> Category {
        match self {
            Self::KubeApi { .. } => Category::KubeApi,
            Self::Invalid(invalid) if invalid.is_missing_reference() => Category::ReferenceMissing,
            Self::Invalid(_) => Category::InvalidSpec,
            Self::Build(BuildError::Render { .. }) => Category::Serialize,
            Self::Build(BuildError::NoSchedule { .. }) => Category::InvalidSpec,
            Self::Build(BuildError::NoOwnerReference) => Category::InvalidObject,
            Self::Schedule(invalid) if invalid.is_missing_reference() => Category::ReferenceMissing,
            Self::Schedule(_) => Category::InvalidSpec,
            Self::ScheduleBuild(ScheduleBuildError::NoOwnerReference) => Category::InvalidObject,
        }
    }
}

#[cfg(test)]
mod tests {
    use entrepot_api::config::ResolveError;

    use super::*;

    #[test]
    fn every_category_has_its_own_label() {
        let labels: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels, ["kube_api", "reference_missing", "invalid_spec", "serialize", "invalid_object"]);
    }

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
        let got: Vec<Category> = [&missing, &invalid, &api, &owner].iter().map(|e| e.category()).collect();
        assert_eq!(
            got,
            [Category::ReferenceMissing, Category::InvalidSpec, Category::KubeApi, Category::InvalidObject]
        );
        assert!(api.to_string().starts_with("get Connector n/c: "), "{api}");
    }
}
