//! The socket source (`connector = 'socket'`): UTF-8 text lines read from a TCP server, one row
//! per line in a `value STRING` column, as Spark's `socketTextStream` and
//! `spark.readStream.format("socket")` (`TextSocketMicroBatchStream`) read them. For tests and
//! demos (`nc -lk 9999`), as in Spark.
//!
//! **Not replayable.** The lines live only in this process: an offset is a count of lines, and
//! lines are released once the batch that read them commits. A query that stops or crashes loses
//! the lines received but not committed, and a restart from its checkpoint cannot read them again
//! (the uncommitted batch replays with no socket rows, and a warning names the lost range); the
//! checkpoint still restores state and the sink's progress. The source warns about this when the
//! query starts, as Spark's does.
//!
//! Behaviour at the edges (Spark's, unless said otherwise):
//! - The connection is opened when the query starts; if it cannot be (connection refused, unknown
//!   host), the query fails to start with an error naming `host:port`.
//! - When the server closes the connection (or it breaks), the lines received so far are still
//!   processed, a warning names `host:port`, and the query keeps running without new socket data;
//!   restart it to reconnect. Spark does the same.
//! - Lines end with `\n`; a `\r` before it is dropped, and a last line without `\n` before the
//!   connection closes is a line. (Spark's `readLine` also ends a line at a lone `\r`.)
//! - A line that is not valid UTF-8 follows the `bad_data` option, as a malformed record of the file
//!   sources: `fail` (default) stops the query naming `host:port`, the line number on the
//!   connection and the byte offset of the first invalid byte in the stream; `drop` skips the line
//!   and counts it in progress. (Spark's socket source replaces invalid bytes silently.)

use std::collections::VecDeque;
use std::io::BufRead;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arrow::array::{RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use serde_json::Value;

use super::{Source, SourceData};
use crate::checkpoint::CheckpointLocation;
use crate::format::BadData;
use crate::{Result, SluiceError};

/// The schema of the socket source, Spark's `TextSocketReader.SCHEMA_REGULAR`: `value STRING`.
pub fn socket_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("value", DataType::Utf8, true)]))
}

/// The options of the socket source. Spark's names are the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSourceOptions {
    /// `host`: the server's name or address.
    pub host: String,
    /// `port`: the server's TCP port.
    pub port: u16,
    /// `bad_data`: what a line that is not UTF-8 does (see the module documentation).
    pub bad_data: BadData,
}

impl SocketSourceOptions {
    /// The options of table `table` from its `WITH (...)` options (keys lower-cased; others are
    /// ignored here).
    ///
    /// # Errors
    /// [`SluiceError::Sql`] naming the option when `host` or `port` is missing, `port` is not
    /// from 1 to 65535, or `bad_data` is neither `fail` nor `drop`.
    pub fn parse(table: &str, options: &std::collections::BTreeMap<String, String>) -> Result<Self> {
        let required = |option: &str| {
            options.get(option).map(|v| v.trim()).filter(|v| !v.is_empty()).ok_or_else(|| {
                SluiceError::sql(format!(
                    "socket table '{table}' needs the option {option}, e.g. WITH (connector = 'socket', host = 'localhost', port = '9999')"
                ))
            })
        };
        let host = required("host")?.to_string();
        let port = required("port")?;
        let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            SluiceError::sql(format!("table '{table}': option port must be a TCP port from 1 to 65535, got '{port}'"))
        })?;
        let bad_data = options.get("bad_data").map(|v| BadData::parse(v)).transpose()?.unwrap_or_default();
        Ok(Self { host, port, bad_data })
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A line as received: its text, or where its first invalid UTF-8 byte is.
#[derive(Debug)]
enum Line {
    Text(String),
    NotUtf8 { byte_offset: u64 },
}

/// What the reading task received and the source has not released yet.
#[derive(Debug, Default)]
struct Received {
    /// Lines not yet released; the first is line number `released` (0-based) of the connection.
    lines: VecDeque<Line>,
    /// Lines released after committed batches read them.
    released: u64,
}

impl Received {
    fn count(&self) -> u64 {
        self.released + self.lines.len() as u64
    }
}

/// The socket source. See the module documentation.
#[derive(Debug)]
pub struct SocketSource {
    name: String,
    schema: SchemaRef,
    options: SocketSourceOptions,
    received: Arc<Mutex<Received>>,
    /// The connection, shut down when the source is dropped, which ends the reading thread.
    connection: Option<TcpStream>,
    /// The offset of the connection's first line: 0 for a new query; after a restart, the start
    /// of the first batch planned (`None` until then), as the lines of earlier runs are gone.
    base: Option<u64>,
    /// Under `available-now`: how many of the connection's lines later batches may take.
    frozen: Option<u64>,
}

impl SocketSource {
    /// A socket source `name` of `schema` ([`socket_schema`]); it connects when the query starts
    /// ([`Source::restore`]).
    pub fn new(name: &str, schema: SchemaRef, options: SocketSourceOptions) -> Self {
        Self {
            name: name.to_string(),
            schema,
            options,
            received: Arc::default(),
            connection: None,
            base: None,
            frozen: None,
        }
    }

    fn received(&self) -> MutexGuard<'_, Received> {
        // The reading task only appends whole lines: a panic elsewhere leaves it consistent.
        self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn error(&self, message: String) -> SluiceError {
        SluiceError::Source { source_name: self.name.clone(), message }
    }

    fn as_index(&self, offset: &Value) -> Result<u64> {
        offset.as_u64().ok_or_else(|| SluiceError::Checkpoint {
            location: "offsets".into(),
            message: format!("socket source '{}' offset {offset} is not a line count", self.name),
        })
    }

    /// Connects and starts the thread that appends every line received to `self.received`.
    ///
    /// The blocking `std::net` socket runs on its own thread: tokio's `net` feature is not
    /// enabled, and enabling it would rebuild every DataFusion crate.
    async fn connect(&mut self) -> Result<()> {
        let (host, port) = (self.options.host.clone(), self.options.port);
        let address = self.options.address();
        let connected = tokio::task::spawn_blocking(move || connect(&host, port)).await;
        let stream = connected.map_err(|e| std::io::Error::other(e.to_string())).and_then(|c| c).map_err(|e| {
            self.error(format!(
                "cannot connect to {address}: {e}; start the server first (for a test: nc -lk {port}) or fix the host and port options"
            ))
        })?;
        let reading = stream.try_clone().map_err(|e| self.error(format!("{address}: {e}")))?;
        let (received, name) = (Arc::clone(&self.received), self.name.clone());
        std::thread::Builder::new()
            .name(format!("socket source {}", self.name))
            .spawn(move || read_lines(reading, received, &name, &address))
            .map_err(|e| self.error(format!("cannot start the thread reading the socket: {e}")))?;
        self.connection = Some(stream);
        Ok(())
    }

    /// The rows of the connection's lines `from..to`, with the number of lines dropped.
    fn rows(&self, from: u64, to: u64) -> Result<(RecordBatch, u64)> {
        let received = self.received();
        if from < received.released || to > received.count() {
            return Err(self.error(format!(
                "lines {from}..{to} of the connection were never received or already committed ({} released, {} received)",
                received.released,
                received.count()
            )));
        }
        let mut values = StringBuilder::new();
        let mut dropped = 0;
        let skip = usize::try_from(from - received.released).unwrap_or(usize::MAX);
        let take = usize::try_from(to - from).unwrap_or(usize::MAX);
        for (i, line) in received.lines.iter().skip(skip).take(take).enumerate() {
            match (line, self.options.bad_data) {
                (Line::Text(text), _) => values.append_value(text),
                (Line::NotUtf8 { .. }, BadData::Drop) => dropped += 1,
                (Line::NotUtf8 { byte_offset }, BadData::Fail) => {
                    return Err(SluiceError::MalformedRecord {
                        path: PathBuf::from(format!("socket {}", self.options.address())),
                        line: from + i as u64 + 1,
                        message: format!(
                        "the line is not valid UTF-8 (first invalid byte at byte offset {byte_offset} of the stream)"
                    ),
                    })
                }
            }
        }
        Ok((RecordBatch::try_new(self.schema.clone(), vec![Arc::new(values.finish())])?, dropped))
    }
}

impl Drop for SocketSource {
    /// A stopped query closes its connection, which ends the reading thread.
    fn drop(&mut self) {
        // Let go of the lines first: the reading thread, alone with them, ends without a warning.
        drop(std::mem::take(&mut self.received));
        if let Some(connection) = &self.connection {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

/// How long connecting to one of the host's addresses may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the first of `host`'s addresses that accepts.
fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut last = None;
    for address in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")))
}

/// Reads `stream` line by line into `received` until the server closes it, it fails, or the
/// source shuts it down; then warns (unless the source is gone).
fn read_lines(stream: TcpStream, received: Arc<Mutex<Received>>, name: &str, address: &str) {
    let mut reader = std::io::BufReader::new(stream);
    let mut buffer = Vec::new();
    let mut byte_offset = 0u64;
    let end = loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) => break "the server closed the connection".to_string(),
            Ok(n) => {
                let line_start = byte_offset;
                byte_offset += n as u64;
                let text = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                let line = match std::str::from_utf8(text) {
                    Ok(text) => Line::Text(text.to_string()),
                    Err(e) => Line::NotUtf8 { byte_offset: line_start + e.valid_up_to() as u64 },
                };
                received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).lines.push_back(line);
            }
            Err(e) => break format!("reading failed: {e}"),
        }
    };
    if Arc::strong_count(&received) == 1 {
        return; // The source is gone: the query stopped and closed the connection.
    }
    let lines = received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).count();
    tracing::warn!(
        source = %name,
        "{address}: {end} after {lines} lines; the query keeps running without new lines from it, restart it to reconnect"
    );
}

#[async_trait]
impl Source for SocketSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn initial_offset(&self) -> Value {
        Value::from(0u64)
    }

    /// Connects to the server, and warns that the source cannot replay its lines.
    async fn restore(&mut self, location: &CheckpointLocation, through_batch: Option<u64>) -> Result<()> {
        tracing::warn!(
            source = %self.name,
            "the socket source ({}) cannot replay its input: lines received but not committed when the query stops \
             or fails are lost; the checkpoint {} restores state and sink progress, not those lines. Use it for tests \
             and demos only, as Spark's socket source",
            self.options.address(),
            location.display()
        );
        self.base = through_batch.is_none().then_some(0);
        self.connect().await
    }

    async fn freeze_available(&mut self) -> Result<()> {
        let count = self.received().count();
        self.frozen = Some(count);
        Ok(())
    }

    async fn plan_batch(&mut self, _location: &CheckpointLocation, _batch_id: u64, start: &Value) -> Result<Value> {
        let start = self.as_index(start)?;
        let base = *self.base.get_or_insert(start);
        let count = self.received().count();
        let available = self.frozen.map_or(count, |f| f.min(count));
        Ok(Value::from((base + available).max(start)))
    }

    async fn read(&mut self, start: &Value, end: &Value) -> Result<SourceData> {
        let (start, end) = (self.as_index(start)?, self.as_index(end)?);
        let base = self.base.unwrap_or(u64::MAX);
        if start < base.min(end) {
            tracing::warn!(
                source = %self.name,
                "lines {start}..{} were received by an earlier run of the query and are lost: the socket source cannot replay them",
                base.min(end)
            );
        }
        if end <= base {
            return Ok(SourceData::default());
        }
        let (batch, dropped_records) = self.rows(start.max(base) - base, end - base)?;
        Ok(SourceData { batches: vec![batch], dropped_records })
    }

    async fn commit(&mut self, _location: &CheckpointLocation, _batch_id: u64, end: &Value) -> Result<()> {
        let end = self.as_index(end)?;
        let Some(base) = self.base else { return Ok(()) };
        let mut received = self.received();
        while received.released + base < end && received.lines.pop_front().is_some() {
            received.released += 1;
        }
        Ok(())
    }
}
