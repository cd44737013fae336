//! Integration tests of chassis-telemetry: real runs (the engine, an SQLite journal, the mock
//! model over HTTP on 127.0.0.1) observed by the tracer and the metrics, spans exported to an
//! OTLP/HTTP receiver running inside the test.

mod agent;
mod grpc;
mod metrics;
mod parsers;
mod receiver;
mod spans;
mod stats;
mod traces;
