//! Long operations streamed to the client as NDJSON progress events.
//!
//! A handler hands the work to [`stream_async`] or [`stream_blocking`]; the
//! work reports through a [`ProgressSink`] and its result becomes the final
//! `done` or `failed` event (see `banger_api::operation`). The work runs to
//! completion even if the client disconnects, so state never depends on a
//! client staying connected.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use banger_api::operation::{NDJSON, OperationEvent};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::ApiFailure;
use crate::progress::{EventLine, ProgressSink};

/// Runs the async `work` as its own task and streams its progress and result.
pub fn stream_async<T, F, Fut>(work: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(ProgressSink) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, ApiFailure>> + Send + 'static,
{
    let (sink, receiver) = ProgressSink::channel();
    tokio::spawn(async move {
        let result = work(sink.clone()).await;
        sink.send_event(&final_event(result));
    });
    ndjson_response(receiver)
}

/// Runs `work` on a blocking thread and streams its progress and result.
pub fn stream_blocking<T, F>(work: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&ProgressSink) -> Result<T, ApiFailure> + Send + 'static,
{
    let (sink, receiver) = ProgressSink::channel();
    tokio::task::spawn_blocking(move || {
        let result = work(&sink);
        sink.send_event(&final_event(result));
    });
    ndjson_response(receiver)
}

fn final_event<T>(result: Result<T, ApiFailure>) -> OperationEvent<T> {
    match result {
        Ok(result) => OperationEvent::Done { result },
        Err(failure) => OperationEvent::Failed {
            error: failure.into_body(),
        },
    }
}

fn ndjson_response(receiver: mpsc::UnboundedReceiver<EventLine>) -> Response {
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(receiver)
        .map(|line| Ok::<_, Infallible>(Bytes::from(line)));
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(stream)).into_response()
}
