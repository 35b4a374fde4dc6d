//! Trace export (feature `otel`): the spans a login produces, read from
//! OpenTelemetry's in-memory exporter in place of the OTLP one.
//! `.ci/run` runs this with `cargo test -p sessiond --features otel --test otel`:
//! a binary of its own, because it installs the process-wide tracing
//! subscriber and needs the feature.
#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "it/common/mod.rs"]
mod common;

use common::*;
use opentelemetry::trace::TracerProvider as _;
use reqwest::StatusCode;
use serde_json::json;
use sessiond::StoreHandle;
use tracing_subscriber::prelude::*;

#[tokio::test]
async fn a_request_continues_the_callers_trace_with_store_and_password_spans_inside() {
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporterBuilder::new().build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    // The same layer and filter main() installs, with the in-memory exporter.
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("sessiond"))
                .with_filter(tracing_subscriber::EnvFilter::new(
                    "info,sessiond=debug,sessiond_core=debug",
                )),
        )
        .init();

    let dir = tempfile::tempdir().unwrap();
    let mut config = file_config(dir.path());
    // Turns the request spans on; main() would export to it.
    config.observability.otlp_endpoint = Some("http://127.0.0.1:4317".into());
    let app = spawn_app_on(StoreHandle::open(&config).await.unwrap(), config).await;
    let r = reqwest::Client::new()
        .post(format!("{}/login", app.base))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let in_trace: Vec<_> = spans
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == "4bf92f3577b34da6a3ce929d0e0e4736")
        .collect();
    let request = in_trace
        .iter()
        .find(|s| s.name == "request")
        .unwrap_or_else(|| {
            panic!(
                "no request span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(request.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(
        request.parent_span_is_remote,
        "the caller's span is the parent"
    );
    let names: Vec<&str> = in_trace.iter().map(|s| s.name.as_ref()).collect();
    assert!(
        names.contains(&"store"),
        "store calls are spans of the trace: {names:?}"
    );
    assert!(
        names.contains(&"password_hash"),
        "password hashing is a span of the trace: {names:?}"
    );
    let store = in_trace.iter().find(|s| s.name == "store").unwrap();
    let attributes: Vec<String> = store
        .attributes
        .iter()
        .map(|kv| kv.key.to_string())
        .collect();
    assert!(attributes.contains(&"op".to_owned()) && attributes.contains(&"backend".to_owned()));
}
