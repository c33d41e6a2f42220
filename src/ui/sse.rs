//! A query's event stream: Server-Sent Events (`text/event-stream`), one `progress` event per
//! batch, and `started`, `idle` and `terminated`.
//!
//! Each response carries the events after the one the browser last saw (`Last-Event-ID`, or
//! `?after=` for the first connection), waiting up to [`STREAM_WAIT`] for the first, then ends; the
//! browser's `EventSource` reconnects [`RETRY_MS`] later. A stream that never ended would keep a
//! headless browser waiting forever for the network to be idle (Chromium's
//! `--virtual-time-budget`, used to take screenshots). Written by hand over the raw connection in
//! chunked transfer encoding, each event flushed as it is written: `tiny_http`'s responses buffer
//! their body.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use tiny_http::Request;

use super::live::{Event, LiveUi, STREAM_WAIT};

/// The reconnection delay the stream asks of the browser, ms.
const RETRY_MS: u64 = 250;

/// Answers `request` with the events of query `id` after event `after`, on a thread of its own.
pub(crate) fn stream(ui: Arc<LiveUi>, request: Request, id: String, after: u64) {
    let spawned = std::thread::Builder::new().name("sluice-ui-events".into()).spawn(move || {
        let mut writer = request.into_writer();
        if let Err(e) = write_stream(&mut writer, &ui, &id, after) {
            tracing::debug!("UI event stream ended: {e}");
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a UI event stream: {e}");
    }
}

fn write_stream(writer: &mut dyn Write, ui: &LiveUi, id: &str, after: u64) -> std::io::Result<()> {
    writer.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    )?;
    write_chunk(writer, format!("retry: {RETRY_MS}\n\n").as_bytes())?;
    for event in ui.events_after(id, after, Instant::now() + STREAM_WAIT) {
        write_chunk(writer, format(&event).as_bytes())?;
    }
    writer.write_all(b"0\r\n\r\n")?;
    writer.flush()
}

/// `event` in the `text/event-stream` format (its data is one line of JSON).
pub(crate) fn format(event: &Event) -> String {
    format!("id: {}\nevent: {}\ndata: {}\n\n", event.id, event.kind, event.data)
}

fn write_chunk(writer: &mut dyn Write, bytes: &[u8]) -> std::io::Result<()> {
    write!(writer, "{:x}\r\n", bytes.len())?;
    writer.write_all(bytes)?;
    writer.write_all(b"\r\n")?;
    writer.flush()
}
