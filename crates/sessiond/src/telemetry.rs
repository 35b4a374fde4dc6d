//! OpenTelemetry: traces exported over OTLP when the server is built with
//! the `otel` feature and `otlp_endpoint` is set. Without the feature these
//! functions do nothing, and the request span still carries the W3C trace id
//! so logs can be joined with a trace collected elsewhere.

use http::HeaderMap;

/// Makes `span` a child of the remote span named by `traceparent`.
#[cfg(feature = "otel")]
pub fn link_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    struct Headers<'a>(&'a HeaderMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }
    if headers.contains_key("traceparent") {
        let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
        let _ = span.set_parent(propagator.extract(&Headers(headers)));
    }
}

/// Makes `span` a child of the remote span named by `traceparent`.
#[cfg(not(feature = "otel"))]
pub fn link_remote_parent(_span: &tracing::Span, _headers: &HeaderMap) {}

/// A tracing layer that exports spans to `endpoint` over OTLP/gRPC.
#[cfg(feature = "otel")]
pub fn otlp_layer<S>(
    endpoint: &str,
) -> Result<impl tracing_subscriber::Layer<S>, opentelemetry_otlp::ExporterBuildError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("sessiond")
                .build(),
        )
        .build();
    let tracer = provider.tracer("sessiond");
    opentelemetry::global::set_tracer_provider(provider);
    Ok(tracing_opentelemetry::layer().with_tracer(tracer))
}
