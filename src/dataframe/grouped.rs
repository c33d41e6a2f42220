//! [`GroupedStreamFrame`]: a frame grouped for an aggregation (Spark's `RelationalGroupedDataset`).

use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{col, lit, Expr};

use super::frame::StreamFrame;
use super::functions::WindowGrouping;
use crate::{Result, SluiceError};

/// Rows grouped by keys, waiting for the aggregates to compute ([`Self::agg`]).
#[derive(Debug, Clone)]
pub struct GroupedStreamFrame {
    frame: StreamFrame,
    keys: Vec<Expr>,
}

impl GroupedStreamFrame {
    pub(crate) fn new(frame: StreamFrame, keys: Vec<Expr>) -> Self {
        Self { frame, keys }
    }

    /// One row per group: the grouping columns, then `aggregates` (DataFusion's aggregate
    /// functions, e.g. `count(lit(1)).alias("n")`, `sum(col("x"))`, `approx_distinct(...)`), as
    /// Spark's `agg`. A window key becomes the column `window` (`session_window` for a session
    /// window), a struct `{start, end}`; rows with a null event time belong to no window, as in
    /// Spark. On a stream the aggregation is incremental, its groups kept as state (SEMANTICS §2).
    ///
    /// # Errors
    /// [`SluiceError::Unsupported`] for two windows in one grouping; DataFusion errors naming an
    /// unknown column or an invalid aggregate.
    pub fn agg(self, aggregates: Vec<Expr>) -> Result<StreamFrame> {
        let windows: Vec<usize> =
            self.keys.iter().enumerate().filter(|(_, k)| WindowGrouping::of(k).is_some()).map(|(i, _)| i).collect();
        if windows.len() > 1 {
            return Err(SluiceError::unsupported(
                "group_by with several windows",
                "an aggregation groups by at most one event-time window",
                "group by a single window(...)",
            ));
        }
        let mut keys = self.keys;
        let window = windows.first().map(|&i| (i, WindowGrouping::of(&keys[i]).expect("found above")));
        let frame = match window {
            None => self.frame,
            Some((i, WindowGrouping::Column { name, expr, valid })) => {
                keys[i] = col(name);
                self.frame.then(|df| df.filter(valid)?.with_column(name, expr))?
            }
            Some((i, WindowGrouping::Unnested { expr, valid })) => {
                keys[i] = col("window");
                self.frame.then(|df| df.filter(valid)?.with_column("window", expr)?.unnest_columns(&["window"]))?
            }
        };
        let key_count = keys.len();
        let mut grouped = frame.then(|df| df.aggregate(keys, aggregates))?;
        grouped.keys = grouped.plan.schema().fields().iter().take(key_count).map(|f| f.name().clone()).collect();
        Ok(grouped)
    }

    /// The number of rows of each group, in a column `count` (Spark's `groupBy(...).count()`).
    ///
    /// # Errors
    /// As [`Self::agg`].
    pub fn count(self) -> Result<StreamFrame> {
        self.agg(vec![count(lit(1)).alias("count")])
    }
}
