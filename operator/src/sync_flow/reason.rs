//! The reasons a SyncFlow's `Ready` condition gives, as one enum: the status writes them
//! and the Events read them back, so both sides name them from here.

/// Why a SyncFlow is, or is not, `Ready` (the condition's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Every runner pod asked for runs the current configuration.
    RunnerAvailable,
    /// The runner is rolling out, or its pods are not available yet.
    RunnerNotAvailable,
    /// `spec.suspend` is true.
    Suspended,
    /// A batch flow's CronJob runs it on its schedule.
    Scheduled,
    /// A target refuses the runner's credentials.
    TargetAuthFailing,
    /// The oldest pending record is older than the freshness budget.
    BacklogOverBudget,
    /// A referenced Connector does not exist.
    ConnectorNotFound,
    /// A referenced Mapping does not exist.
    MappingNotFound,
    /// A referenced Mapping does not compile.
    MappingInvalid,
    /// A referenced Mapping's declared tests fail.
    MappingTestsFailing,
    /// The flow cannot be run as written.
    InvalidSpec,
    /// The NATS servers of a JetStream flow cannot be reached, or refuse the operator.
    QueueUnreachable,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Self; 12] = [
        Self::RunnerAvailable,
        Self::RunnerNotAvailable,
        Self::Suspended,
        Self::Scheduled,
        Self::TargetAuthFailing,
        Self::BacklogOverBudget,
        Self::ConnectorNotFound,
        Self::MappingNotFound,
        Self::MappingInvalid,
        Self::MappingTestsFailing,
        Self::InvalidSpec,
        Self::QueueUnreachable,
    ];

    /// The condition reason as written in the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunnerAvailable => "RunnerAvailable",
            Self::RunnerNotAvailable => "RunnerNotAvailable",
            Self::Suspended => "Suspended",
            Self::Scheduled => "Scheduled",
            Self::TargetAuthFailing => "TargetAuthFailing",
            Self::BacklogOverBudget => "BacklogOverBudget",
            Self::ConnectorNotFound => "ConnectorNotFound",
            Self::MappingNotFound => "MappingNotFound",
            Self::MappingInvalid => "MappingInvalid",
            Self::MappingTestsFailing => "MappingTestsFailing",
            Self::InvalidSpec => "InvalidSpec",
            Self::QueueUnreachable => "QueueUnreachable",
        }
    }

    /// The reason a status holds; `None` for one this operator does not write (an older
    /// or newer operator's).
    pub fn parse(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == reason)
    }

    /// The reason of the Warning Event raised when `Ready` turns False for this reason;
    /// `None` for a state that is no failure (a rollout, a suspension). Event reasons are
    /// a fixed set (alerts match on them): whatever makes the spec unusable is
    /// `InvalidSpec`.
    pub fn warning(self) -> Option<&'static str> {
        match self {
            Self::RunnerAvailable | Self::Scheduled | Self::RunnerNotAvailable | Self::Suspended => None,
            Self::TargetAuthFailing
            | Self::BacklogOverBudget
            | Self::MappingTestsFailing
            | Self::ConnectorNotFound
            | Self::MappingNotFound
            | Self::QueueUnreachable => Some(self.as_str()),
            Self::MappingInvalid | Self::InvalidSpec => Some(Self::InvalidSpec.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_as_itself() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("SomethingNew"), None);
    }
}
