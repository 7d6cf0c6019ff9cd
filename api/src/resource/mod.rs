//! The user-facing resource specs: Connector, Mapping, SyncFlow and ReconcileSchedule.
//!
//! They are defined once, here, with serde and schemars derives. The operator wraps them
//! in `CustomResource` structs, so the doc comments on every field below are what
//! `kubectl explain` prints: they are written for the platform engineer reading them.

mod connector;
mod duration;
mod mapping;
mod reconcile_schedule;
mod source;
mod sync_flow;
mod target;

pub use connector::{
    BasicAuth, ClientAuth, ConnectorAuth, ConnectorLimits, ConnectorSpec, ConnectorType, DatabaseOptions, HeaderAuth,
    OAuth2ClientCredentials, OperationLimit, SecretKeySelector, SignatureScheme, SslMode, WebhookVerification,
};
pub use duration::Duration;
pub use mapping::{CanonicalRef, MappingSpec, MappingTest};
pub use reconcile_schedule::{CompareSpec, ConcurrencyPolicy, ListingSpec, ReconcileAction, ReconcileScheduleSpec};
pub use source::{
    FileFormat, FileTrigger, Pagination, PollTrigger, Refetch, SourceSpec, TriggerSpec, Watermark, WebhookTrigger,
};
pub use sync_flow::{
    DeadLetterSpec, DeliverySpec, EmbeddedQueueSpec, FlowMode, JetStreamQueueSpec, Priority, QueueSpec, RetrySpec,
    RunnerSpec, SyncFlowSpec,
};
pub use target::{ChannelAvailability, GraphqlWrite, Operation, TableSpec, TargetSpec};

/// Schema for a free-form JSON value (a mapping test's input, say): any JSON is accepted
/// and kept as written by the API server.
pub(crate) fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}
