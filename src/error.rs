//! The one error type of sluice: every failure names what is wrong, where, and what to do.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Result alias used throughout sluice.
pub type Result<T, E = SluiceError> = std::result::Result<T, E>;

/// Everything that can stop a streaming query or refuse to start one.
///
/// Messages are written for the user of `sluice run`: they name the file, line or offset and, where
/// there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum SluiceError {
    /// The SQL text could not be parsed or planned (invalid syntax, unknown table or option).
    #[error("SQL error: {0}")]
    Sql(String),
    /// The SQL text does not parse; the position is where the parser stopped. `sluice run`
    /// prefixes it with the file name as `FILE:LINE:COLUMN: ...`.
    #[error("SQL syntax error: {message}")]
    SqlSyntax {
        /// 1-based line in the script.
        line: u64,
        /// 1-based column in the line.
        column: u64,
        /// What the parser expected and found, without the position.
        message: String,
    },
    /// A query the chosen output mode or the streaming engine cannot run, refused before it starts
    /// (Spark's `UnsupportedOperationChecker` is the reference list).
    #[error("unsupported streaming query: {operator}: {reason}. {fix}")]
    Unsupported {
        /// The operator or clause at fault, e.g. `aggregation on window(ts)`.
        operator: String,
        /// Why it cannot run.
        reason: String,
        /// What the user should change.
        fix: String,
    },
    /// A record of an input file that does not match the declared schema.
    #[error("malformed record in {path} at line {line}: {message}. Fix the record, or set the source option bad_data = 'drop' to skip such records")]
    MalformedRecord {
        /// The input file.
        path: PathBuf,
        /// 1-based line number of the record (for Parquet: 1-based row number).
        line: u64,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A source that cannot be read (missing directory, unreadable file, bad option).
    #[error("source '{source_name}': {message}")]
    Source {
        /// The source table name.
        source_name: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A sink that cannot be written.
    #[error("sink '{sink}': {message}")]
    Sink {
        /// The sink table name or kind.
        sink: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A checkpoint that is unreadable, corrupted or written by an incompatible query.
    #[error("checkpoint {location}: {message}")]
    Checkpoint {
        /// The checkpoint file or directory.
        location: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// An error raised inside DataFusion while planning or executing.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// An error raised by arrow (encoding, decoding, casting).
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// A local I/O error, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A streaming query that cannot do what was asked: it failed earlier (a failed query runs
    /// no more batches; start it again from its checkpoint), or it is already running.
    #[error("query '{query}': {message}")]
    Query {
        /// The query's name.
        query: String,
        /// What happened, and the error that stopped it if it failed.
        message: String,
    },
    /// The HTTP server of the metrics endpoint or the web UI cannot serve on the address asked for.
    #[error("{server} {address}: {message}")]
    Http {
        /// What was to be served there: `metrics endpoint`, `web UI` or both.
        server: String,
        /// The address, as given (e.g. `127.0.0.1:9090`).
        address: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl SluiceError {
    /// Shorthand for an [`SluiceError::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SluiceError::Io { path: path.into(), source }
    }

    /// Shorthand for a [`SluiceError::Sql`].
    pub fn sql(message: impl Into<String>) -> Self {
        SluiceError::Sql(message.into())
    }

    /// Shorthand for a [`SluiceError::Unsupported`] refusal.
    pub fn unsupported(operator: impl Into<String>, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        SluiceError::Unsupported { operator: operator.into(), reason: reason.into(), fix: fix.into() }
    }
}

impl From<SluiceError> for DataFusionError {
    fn from(e: SluiceError) -> Self {
        match e {
            SluiceError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
