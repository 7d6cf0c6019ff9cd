//! OpenTelemetry traces: the runner's `tracing` spans (`webhook`, `prepare`, `deliver`,
//! `reconcile`) exported over OTLP/HTTP when an endpoint is configured, and the W3C
//! trace context (`traceparent`) taken from a source's request, kept with the record in
//! the queue and sent on to its targets, so one record is one trace from the webhook to
//! the ERP, across retries and processes.
//!
//! Configured by the standard environment (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
//! `OTEL_EXPORTER_OTLP_ENDPOINT`; `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`): `docs/tracing.md`. With no endpoint no layer
//! is installed: spans cost what they cost before, and a record's `traceparent` is only
//! passed through.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::{Level, Metadata, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, filter::FilterFn, registry::LookupSpan};

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// The environment that names where traces go, the signal's own first.
const ENDPOINT_ENV: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

/// Whether spans are exported: set once, when the layer is built.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The tracer provider while traces are exported; flushed by [`Traces::shutdown`].
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Exports the spans still buffered and stops the exporter. Call once, at exit,
    /// outside the async runtime (the exporter blocks).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: traces not all exported at shutdown: {e}");
        }
    }
}

/// The OTLP endpoint configured in the environment, if any.
pub fn configured_endpoint() -> Option<String> {
    ENDPOINT_ENV
        .iter()
        .find_map(|name| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()))
}

/// The layer that turns the runner's spans into OpenTelemetry spans, and the provider
/// to flush at exit; `None` when no endpoint is configured (or the exporter cannot be
/// built: said on stderr, the runner runs without traces).
pub fn layer<S>() -> Option<(impl Layer<S>, Traces)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    configured_endpoint()?;
    // The endpoint, headers and timeout come from the standard environment.
    let exporter =
        match opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary).build() {
            Ok(exporter) => exporter,
            Err(e) => {
                eprintln!("warning: OTLP trace exporter not started, no traces are exported: {e}");
                return None;
            }
        };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("entrepot");
    }
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    let tracer = provider.tracer("entrepot");
    EXPORTING.store(true, Ordering::Relaxed);
    // Our spans (the intake's `prepare` is at debug level) and the events in them at
    // info and above, whatever `ENTREPOT_LOG` lets into the log.
    let ours = FilterFn::new(|meta: &Metadata<'_>| {
        meta.target().starts_with("entrepot") && (meta.is_span() || *meta.level() <= Level::INFO)
    });
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(ours);
    Some((layer, Traces { provider }))
}

/// A `traceparent` value as sent, checked: `Some` only for a well-formed W3C trace
/// context (version 00, non-zero ids), so nothing else is stored with a record.
pub fn valid_traceparent(value: &str) -> Option<String> {
    let cx = extract(value);
    cx.span().span_context().is_valid().then(|| value.trim().to_string())
}

/// Makes `span` (not yet entered) a child of the trace context `traceparent`, when spans
/// are exported and there is one; otherwise `span` starts a trace of its own.
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    if let Some(parent) = traceparent {
        let cx = extract(parent);
        if cx.span().span_context().is_valid() {
            // Refused only for a span filtered out or already entered: it then stays a
            // trace of its own, which is all that can be done.
            let _ = span.set_parent(cx);
        }
    }
}

/// The trace context to carry onward from `span`: its own when spans are exported, else
/// `passthrough` (the context the record came with), unchanged.
pub fn traceparent(span: &Span, passthrough: Option<&str>) -> Option<String> {
    if !EXPORTING.load(Ordering::Relaxed) {
        return passthrough.map(String::from);
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return passthrough.map(String::from);
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT).or_else(|| passthrough.map(String::from))
}

fn extract(traceparent: &str) -> opentelemetry::Context {
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.trim().to_string())]);
    TraceContextPropagator::new().extract(&carrier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_trace_context_is_kept() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(valid_traceparent(good).as_deref(), Some(good));
        assert_eq!(valid_traceparent(&good.to_uppercase()), None, "upper-case hex is refused by W3C");
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(valid_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn without_an_exporter_the_record_s_context_passes_through() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let span = tracing::info_span!("deliver");
        continue_trace(&span, Some(parent));
        assert_eq!(traceparent(&span, Some(parent)).as_deref(), Some(parent));
        assert_eq!(traceparent(&span, None), None);
    }
}
