//! The operator's reconcile errors and the fixed categories they fall into. Each
//! controller's own errors (what validation refused, what could not be built) convert
//! into [`Error::Refused`] with their category, next to where they are defined, so this
//! module depends on no controller.

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
    /// The resource cannot be run as written (reported as `Stalled` on it), or its
    /// children cannot be built.
    #[error("{reason}")]
    Refused {
        /// What kind of refusal it is.
        category: Category,
        /// The controller's own error, which names the resource and the field.
        reason: Box<dyn std::error::Error + Send + Sync>,
    },
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
    /// A flow's queue in NATS JetStream could not be provisioned, read or deleted.
    QueueUnreachable,
}

impl Category {
    /// Every category, in a fixed order.
    pub const ALL: [Self; 6] = [
        Self::KubeApi,
        Self::ReferenceMissing,
        Self::InvalidSpec,
        Self::Serialize,
        Self::InvalidObject,
        Self::QueueUnreachable,
    ];

    /// The label value: `kube_api`, `reference_missing`, `invalid_spec`, `serialize`,
    /// `invalid_object` or `queue_unreachable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KubeApi => "kube_api",
            Self::ReferenceMissing => "reference_missing",
            Self::InvalidSpec => "invalid_spec",
            Self::Serialize => "serialize",
            Self::InvalidObject => "invalid_object",
            Self::QueueUnreachable => "queue_unreachable",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// A refusal of `category`, for `reason`.
    pub fn refused(category: Category, reason: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Refused { category, reason: Box::new(reason) }
    }

    /// The category this error falls into.
    pub fn category(&self) -> Category {
        match self {
            Self::KubeApi { .. } => Category::KubeApi,
            Self::Refused { category, .. } => *category,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_its_own_label() {
        let labels: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            labels,
            ["kube_api", "reference_missing", "invalid_spec", "serialize", "invalid_object", "queue_unreachable"]
        );
    }

    #[test]
    fn a_refusal_keeps_its_category_and_its_message() {
        let api = Error::KubeApi {
            action: "get",
            kind: "Connector".into(),
            namespace: "n".into(),
            name: "c".into(),
            source: kube::Error::LinesCodecMaxLineLengthExceeded,
        };
        assert_eq!(api.category(), Category::KubeApi);
        assert!(api.to_string().starts_with("get Connector n/c: "), "{api}");
        let refused = Error::refused(Category::InvalidSpec, std::io::Error::other("SyncFlow f: spec.targets: empty"));
        assert_eq!(refused.category(), Category::InvalidSpec);
        assert_eq!(refused.to_string(), "SyncFlow f: spec.targets: empty");
    }
}
