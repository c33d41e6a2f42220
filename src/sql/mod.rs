//! Streaming SQL beyond DataFusion's: `CREATE TABLE ... (..., WATERMARK FOR ...) WITH (...)`
//! for sources and sinks, `INSERT INTO sink SELECT ...` for continuous queries, and the AST
//! rewrite that gives `window(ts, ...)` in `GROUP BY` its Spark meaning.

pub mod dialect;
pub mod functions;
pub mod parser;
pub mod rewrite;
pub mod settings;
pub mod spelling;

pub use parser::{parse_script, CreateStreamTable, SluiceStatement, WatermarkClause};
