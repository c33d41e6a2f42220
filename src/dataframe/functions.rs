//! Event-time window expressions for the DataFrame API, with Spark's names: grouping by one of
//! them groups rows by window, as `GROUP BY window(...)` does in SQL.

use datafusion::logical_expr::{lit, Expr};

use crate::plan::session_window::SESSION_ROW_WINDOW;
use crate::plan::window::{window_udfs, SLIDING_WINDOWS, TUMBLE_WINDOW};

fn call(name: &str, args: Vec<Expr>) -> Expr {
    let udf = window_udfs().into_iter().find(|u| u.name() == name).expect("sluice registers its window functions");
    udf.call(args)
}

/// The tumbling event-time window of `time_column` (a TIMESTAMP column), `window_duration`
/// long (`'10 seconds'`, `'5 minutes'`, `'1 hour'`): a struct `{start, end}` (Spark's
/// `window(timeColumn, windowDuration)`). Windows start at multiples of the duration since the
/// epoch. Group by it with [`crate::StreamFrame::group_by`]; the result column is named `window`.
///
/// A malformed duration is an error when the frame using it is built.
pub fn window(time_column: Expr, window_duration: &str) -> Expr {
    call(TUMBLE_WINDOW, vec![time_column, lit(window_duration)])
}

/// The sliding event-time windows of `time_column`, `window_duration` long, one starting every
/// `slide_duration` (Spark's `window(timeColumn, windowDuration, slideDuration)`): a row belongs
/// to `window_duration / slide_duration` windows, and grouping by this expression counts it in
/// each. With equal durations it is [`window`].
pub fn window_with_slide(time_column: Expr, window_duration: &str, slide_duration: &str) -> Expr {
    if window_duration == slide_duration {
        return window(time_column, window_duration);
    }
    call(SLIDING_WINDOWS, vec![time_column, lit(window_duration), lit(slide_duration)])
}

/// The session window of `time_column` with gap `gap_duration` (Spark's
/// `session_window(timeColumn, gapDuration)`): rows of a key closer than the gap share a session.
/// Only meaningful as a grouping key; the result column is named `session_window`.
pub fn session_window(time_column: Expr, gap_duration: &str) -> Expr {
    call(SESSION_ROW_WINDOW, vec![time_column, lit(gap_duration)])
}

/// The grouping column a window expression stands for, and the rows it keeps: `None` for an
/// expression that is not one of the window functions above.
pub(crate) enum WindowGrouping {
    /// One window per row, in a column named `name`, for rows where `valid` holds.
    Column { name: &'static str, expr: Expr, valid: Expr },
    /// A list of windows per row, unnested into a column named `window`.
    Unnested { expr: Expr, valid: Expr },
}

impl WindowGrouping {
    pub(crate) fn of(expr: &Expr) -> Option<WindowGrouping> {
        let Expr::ScalarFunction(f) = expr else { return None };
        let time_valid = || f.args.first().map(|ts| ts.clone().is_not_null());
        match f.func.name() {
            TUMBLE_WINDOW => Some(WindowGrouping::Column { name: "window", expr: expr.clone(), valid: time_valid()? }),
            SLIDING_WINDOWS => Some(WindowGrouping::Unnested { expr: expr.clone(), valid: time_valid()? }),
            SESSION_ROW_WINDOW => Some(WindowGrouping::Column {
                name: "session_window",
                expr: expr.clone(),
                valid: expr.clone().is_not_null(),
            }),
            _ => None,
        }
    }
}
