//! Streaming SQL beyond DataFusion's: `CREATE TABLE ... (..., WATERMARK FOR ...) WITH (...)`
//! for sources and sinks, `INSERT INTO sink SELECT ...` for continuous queries, and the AST
//! rewrites that give `window(ts, ...)` in `GROUP BY` and `explode(...)` in a select list their
//! Spark meaning, and the Spark functions DataFusion and datafusion-spark lack.

pub(crate) mod checked_sum;
pub mod date_format;
pub mod dialect;
pub mod divide;
pub mod functions;
pub mod generators;
pub mod get_json_object;
pub mod parser;
pub mod rewrite;
pub mod settings;
pub(crate) mod spark_coercion;
pub mod spelling;

pub use parser::{parse_script, WatermarkClause};
