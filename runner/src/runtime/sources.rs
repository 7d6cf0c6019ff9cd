//! Starting a flow's source: the poller for a poll trigger, the file source for a file
//! trigger (a webhook source is the runtime's router). Here rather than in `flow`, since
//! the sources read the flow.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::{
    flow::{Flow, SourceMode, Workers},
    source::{file, poll::Poller},
    supervisor::{Lifetime, Supervisor},
};

/// Starts `flow`'s source, supervised; in [`SourceMode::Once`] it ends after its pass.
pub(super) fn spawn(
    flow: &Arc<Flow>,
    poller: Option<&Poller>,
    workers: &Workers,
    mode: SourceMode,
    supervisor: &Supervisor,
) -> Vec<JoinHandle<()>> {
    let lifetime = match mode {
        SourceMode::Continuous => Lifetime::UntilShutdown,
        SourceMode::Once => Lifetime::MayEnd,
    };
    let name = flow.name();
    let mut sources = Vec::new();
    if let Some(trigger) = flow.config.spec.source.trigger.file.clone() {
        let task = file::run(flow.clone(), trigger, workers.clone(), mode);
        sources.push(supervisor.spawn(Some(name), "file source", lifetime, workers.shutdown.clone(), task));
    }
    if let Some(poller) = poller {
        let task = poller.clone().run(workers.shutdown.clone(), mode);
        sources.push(supervisor.spawn(Some(name), "poll source", lifetime, workers.shutdown.clone(), task));
    }
    sources
}
