//! Long operations streamed to the client as NDJSON progress events.
//!
//! A handler hands blocking work to [`stream_blocking`]; the work reports
//! through a [`ProgressSink`] and its result becomes the final `done` or
//! `failed` event (see `banger_api::operation`). The work runs to completion
//! even if the client disconnects, so state never depends on a client
//! staying connected.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use banger_api::operation::{NDJSON, OperationEvent, Progress};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::api::ApiFailure;

/// Where an operation reports its progress. Cheap to clone; sending never
/// fails (events for a disconnected client are dropped).
#[derive(Debug, Clone)]
pub struct ProgressSink {
    sender: Option<mpsc::UnboundedSender<Result<Bytes, Infallible>>>,
}

impl ProgressSink {
    /// A sink that discards everything (internal callers, tests).
    pub fn discard() -> Self {
        Self { sender: None }
    }

    fn send_line<T: Serialize>(&self, event: &OperationEvent<T>) {
        let Some(sender) = &self.sender else { return };
        if let Ok(mut line) = serde_json::to_vec(event) {
            line.push(b'\n');
            let _ = sender.send(Ok(Bytes::from(line)));
        }
    }

    /// Reports that the operation entered `stage`.
    pub fn stage(&self, stage: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(stage, message = %message, "progress");
        self.send_line::<()>(&OperationEvent::Progress(Progress {
            stage: stage.to_owned(),
            message,
            fraction: None,
        }));
    }

    /// Reports `done` of `total` units within `stage`.
    pub fn fraction(&self, stage: &str, message: impl Into<String>, done: u64, total: Option<u64>) {
        let fraction = total
            .filter(|total| *total > 0)
            .map(|total| (done as f64 / total as f64).min(1.0) as f32);
        self.send_line::<()>(&OperationEvent::Progress(Progress {
            stage: stage.to_owned(),
            message: message.into(),
            fraction,
        }));
    }
}

/// Runs the async `work` as its own task and streams its progress and result.
pub fn stream_async<T, F, Fut>(work: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(ProgressSink) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, ApiFailure>> + Send + 'static,
{
    let (sender, receiver) = mpsc::unbounded_channel();
    let sink = ProgressSink {
        sender: Some(sender),
    };
    tokio::spawn(async move {
        let event = match work(sink.clone()).await {
            Ok(result) => OperationEvent::Done { result },
            Err(failure) => OperationEvent::Failed {
                error: failure.into_body(),
            },
        };
        sink.send_line(&event);
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(receiver);
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(stream)).into_response()
}

/// Runs `work` on a blocking thread and streams its progress and result.
pub fn stream_blocking<T, F>(work: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&ProgressSink) -> Result<T, ApiFailure> + Send + 'static,
{
    let (sender, receiver) = mpsc::unbounded_channel();
    let sink = ProgressSink {
        sender: Some(sender),
    };
    tokio::task::spawn_blocking(move || {
        let event = match work(&sink) {
            Ok(result) => OperationEvent::Done { result },
            Err(failure) => OperationEvent::Failed {
                error: failure.into_body(),
            },
        };
        sink.send_line(&event);
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(receiver);
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(stream)).into_response()
}
