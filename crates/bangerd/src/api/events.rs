//! `GET /v1/events`: the daemon's event bus as an NDJSON stream.
//!
//! Each client gets its own receiver. Sending to the bus never waits for a
//! client; one that falls too far behind gets a final `lagged` event and
//! its stream ends (see `banger_api::events`). Streams also end when the
//! daemon stops, so they never hold up its shutdown.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use banger_api::events::{DaemonEvent, EventKind};
use banger_api::operation::NDJSON;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::StreamExt;

use crate::state::AppState;

/// Streams every event from now on, one JSON document per line.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    responses((status = 200, description = "NDJSON stream of events, from now on; ends with a `lagged` event for a client that reads too slowly",
        content_type = "application/x-ndjson", body = DaemonEvent))
)]
pub async fn stream(State(state): State<AppState>) -> Response {
    let mut receiver = state.events().subscribe();
    let mut shutdown = state.shutdown_signal();
    let (sender, lines) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                event = receiver.recv() => event,
                _ = shutdown.wait_for(|stop| *stop) => break,
                () = sender.closed() => break,
            };
            let (line, last) = match event {
                Ok(event) => (line_of(&event), false),
                Err(RecvError::Lagged(missed)) => (
                    line_of(&DaemonEvent {
                        seq: 0,
                        time_unix_ms: 0,
                        event: EventKind::Lagged { missed },
                    }),
                    true,
                ),
                Err(RecvError::Closed) => break,
            };
            // A client that stops reading fills this small buffer; the
            // broadcast receiver then lags and the stream ends, instead of
            // anyone waiting for it.
            let sent = tokio::select! {
                sent = sender.send(line) => sent.is_ok(),
                _ = shutdown.wait_for(|stop| *stop) => false,
            };
            if !sent || last {
                break;
            }
        }
    });
    let body = tokio_stream::wrappers::ReceiverStream::new(lines).map(Ok::<_, Infallible>);
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response()
}

fn line_of(event: &DaemonEvent) -> Bytes {
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}
