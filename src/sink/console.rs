//! The console sink: prints each micro-batch the way Spark's console sink does, so sluice's
//! output can be compared with Spark's character for character.

use std::io::Write;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use comfy_table::{CellAlignment, ColumnConstraint, Table, Width};

use super::Sink;
use crate::format::encode::strip_timezone;
use crate::{Result, SluiceError};

/// Spark's `Dataset.show` cell text for null. (Spark 3.5+ prints `NULL`; earlier versions and
/// sluice print `null`.)
const NULL: &str = "null";

/// Width (in characters) cells are truncated to when truncating, as `show(truncate = true)`.
const TRUNCATE_WIDTH: usize = 20;

/// comfy-table preset drawing `+---+` borders, `|` column separators and a `+---+` line under the
/// header, with no lines between rows (the components are listed in `comfy_table::TableComponent`
/// order).
const SPARK_PRESET: &str = "||--+-++|    ++++++";

/// Prints every batch, under a `Batch: N` banner, as Spark's `Dataset.show(num_rows, truncate)`.
pub struct ConsoleSink {
    out: Box<dyn Write + Send>,
    num_rows: usize,
    truncate: bool,
    time_zone: Option<String>,
}

impl ConsoleSink {
    /// Prints to standard output at most `num_rows` rows per batch (Spark's `numRows` option,
    /// default 20); `truncate` cuts cells to 20 characters (Spark's `truncate`, default true).
    pub fn stdout(num_rows: usize, truncate: bool) -> ConsoleSink {
        ConsoleSink::new(Box::new(std::io::stdout()), num_rows, truncate)
    }

    /// As [`ConsoleSink::stdout`], printing to `writer`.
    pub fn new(writer: Box<dyn Write + Send>, num_rows: usize, truncate: bool) -> ConsoleSink {
        ConsoleSink { out: writer, num_rows, truncate, time_zone: None }
    }

    /// Shows timestamps in `time_zone` (Spark's `spark.sql.session.timeZone`: an IANA name such
    /// as `Europe/Paris` or an offset such as `+02:00`) instead of UTC; `None` keeps UTC.
    ///
    /// # Errors
    /// [`SluiceError::Sql`] for a time zone arrow does not know.
    pub fn with_time_zone(mut self, time_zone: Option<&str>) -> Result<ConsoleSink> {
        if let Some(tz) = time_zone {
            tz.parse::<arrow::array::timezone::Tz>()
                .map_err(|e| SluiceError::sql(format!("unknown time zone '{tz}': {e}")))?;
        }
        self.time_zone = time_zone.map(str::to_string);
        Ok(self)
    }
}

impl Sink for ConsoleSink {
    /// `ConsoleSink`.
    fn description(&self) -> String {
        "ConsoleSink".to_string()
    }

    /// Prints the banner and table of the batch, then flushes the writer.
    ///
    /// Printing has no lasting effect to undo, so a replayed batch is simply printed again (as
    /// Spark does).
    fn add_batch(&mut self, batch_id: u64, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        const RULE: &str = "-------------------------------------------";
        let table = show_string(schema, batches, self.num_rows, self.truncate, self.time_zone.as_deref())?;
        // Spark: println(RULE); println(s"Batch: $id"); println(RULE); println(showString(..))
        let text = format!("{RULE}\nBatch: {batch_id}\n{RULE}\n{table}\n");
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|e| SluiceError::Sink { sink: "console".to_string(), message: e.to_string() })
    }

    /// Shows a null row of each column (see [`super::check_columns`]).
    fn check_schema(&self, schema: &SchemaRef) -> Result<()> {
        super::check_columns("console", "text", schema, |schema, batch| {
            show_string(schema, std::slice::from_ref(batch), 1, self.truncate, self.time_zone.as_deref()).map(|_| ())
        })
    }
}

/// The text of Spark's `Dataset.showString(num_rows, truncate = if truncate { 20 } else { 0 })`
/// for the rows of `batches`, ending in a newline, timestamps shown in `time_zone` (UTC when
/// `None`).
///
/// Layout: columns at least 3 wide; cells right-aligned when truncating, left-aligned when not
/// (as Spark); cells longer than 20 characters cut to their first 17 plus `...` when truncating
/// (header names are never cut); control characters escaped (`\n` as `\\n`, ...); then
/// `only showing top N rows` when there are more than `num_rows` rows.
///
/// Cells: `null`; timestamps (UTC) as `yyyy-MM-dd HH:mm:ss` plus the fraction of a second without
/// trailing zeros when it is not zero; dates as `yyyy-MM-dd`; floats as Java's
/// `Double.toString` (`1.0`, `1.0E10`); structs as `{v1, v2}`; lists as `[v1, v2]`; binary as
/// `[0A FF]`; everything else as arrow displays it.
///
/// # Errors
/// [`SluiceError::Arrow`] if a column cannot be displayed.
pub fn show_string(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    num_rows: usize,
    truncate: bool,
    time_zone: Option<&str>,
) -> Result<String> {
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();

    let mut rows: Vec<Vec<String>> = Vec::with_capacity(total.min(num_rows));
    let mut left = num_rows;
    for batch in batches {
        if left == 0 {
            break;
        }
        let batch = batch.slice(0, batch.num_rows().min(left));
        left -= batch.num_rows();
        let columns = batch.columns().iter().map(|c| cells(c, time_zone)).collect::<Result<Vec<_>>>()?;
        for r in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| cut(escape(&c[r]), truncate)).collect());
        }
    }

    // comfy-table with Spark's borders and no padding produces Spark's layout exactly: widths
    // are the widest cell (header included), at least 3.
    let mut table = Table::new();
    table.load_preset(SPARK_PRESET);
    table.set_header(schema.fields().iter().map(|f| escape(f.name())));
    table.add_rows(rows);
    for column in table.column_iter_mut() {
        column.set_padding((0, 0));
        column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(3)));
        column.set_cell_alignment(if truncate { CellAlignment::Right } else { CellAlignment::Left });
    }
    let mut text = table.to_string();
    text.push('\n');
    if total > num_rows {
        let unit = if num_rows == 1 { "row" } else { "rows" };
        text.push_str(&format!("only showing top {num_rows} {unit}\n"));
    }
    Ok(text)
}

/// Spark's `SchemaUtils.escapeMetaCharacters`: control characters would break the table.
fn escape(s: &str) -> String {
    if !s.chars().any(|c| matches!(c, '\n' | '\r' | '\t' | '\u{c}' | '\u{8}' | '\u{b}' | '\u{7}')) {
        return s.to_string();
    }
    s.replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', "\\t")
        .replace('\u{c}', "\\f")
        .replace('\u{8}', "\\b")
        .replace('\u{b}', "\\v")
        .replace('\u{7}', "\\a")
}

/// A cell cut to [`TRUNCATE_WIDTH`] characters (the last three being `...`) when truncating.
fn cut(cell: String, truncate: bool) -> String {
    if !truncate || cell.chars().count() <= TRUNCATE_WIDTH {
        return cell;
    }
    let mut s: String = cell.chars().take(TRUNCATE_WIDTH - 3).collect();
    s.push_str("...");
    s
}

/// The display text of every row of `array`, as Spark's `show` writes values, timestamps in
/// `time_zone` (UTC when `None`).
fn cells(array: &ArrayRef, time_zone: Option<&str>) -> Result<Vec<String>> {
    let array = strip_timezone(array)?;
    let n = array.len();
    let mut out: Vec<String> = match array.data_type() {
        DataType::Struct(_) => {
            let children =
                array.as_struct().columns().iter().map(|c| cells(c, time_zone)).collect::<Result<Vec<_>>>()?;
            (0..n)
                .map(|r| {
                    let values: Vec<&str> = children.iter().map(|c| c[r].as_str()).collect();
                    format!("{{{}}}", values.join(", "))
                })
                .collect()
        }
        DataType::List(_) => list_cells(array.as_list::<i32>(), n, time_zone)?,
        DataType::LargeList(_) => list_cells(array.as_list::<i64>(), n, time_zone)?,
        DataType::Float64 => {
            array.as_primitive::<arrow::datatypes::Float64Type>().values().iter().map(|v| java_double(*v)).collect()
        }
        DataType::Float32 => {
            array.as_primitive::<arrow::datatypes::Float32Type>().values().iter().map(|v| java_float(*v)).collect()
        }
        DataType::Binary => hex_cells(array.as_binary::<i32>().iter()),
        DataType::LargeBinary => hex_cells(array.as_binary::<i64>().iter()),
        DataType::Timestamp(unit, _) => {
            // The instants (UTC) relabelled with the session time zone, which the formatter
            // then shows local time in. (A cast from no time zone would reinterpret the values.)
            let array = match time_zone {
                Some(tz) => cast(&cast(&array, &DataType::Int64)?, &DataType::Timestamp(*unit, Some(tz.into())))?,
                None => array.clone(),
            };
            // `%.f` prints 3, 6 or 9 digits, or nothing when the fraction is zero; Spark prints
            // the fraction without trailing zeros.
            let format = Some("%Y-%m-%d %H:%M:%S%.f");
            let options =
                FormatOptions::default().with_null(NULL).with_timestamp_format(format).with_timestamp_tz_format(format);
            let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
            (0..n).map(|r| trim_fraction(formatter.value(r).to_string())).collect()
        }
        _ => {
            let options = FormatOptions::default().with_null(NULL).with_date_format(Some("%Y-%m-%d"));
            let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
            (0..n).map(|r| formatter.value(r).to_string()).collect()
        }
    };
    for (r, cell) in out.iter_mut().enumerate() {
        if array.is_null(r) {
            *cell = NULL.to_string();
        }
    }
    Ok(out)
}

fn list_cells<O: arrow::array::OffsetSizeTrait>(
    list: &arrow::array::GenericListArray<O>,
    n: usize,
    time_zone: Option<&str>,
) -> Result<Vec<String>> {
    (0..n)
        .map(|r| {
            let values = cells(&list.value(r), time_zone)?;
            Ok(format!("[{}]", values.join(", ")))
        })
        .collect()
}

fn hex_cells<'a>(values: impl Iterator<Item = Option<&'a [u8]>>) -> Vec<String> {
    values
        .map(|v| {
            let bytes: Vec<String> = v.unwrap_or_default().iter().map(|b| format!("{b:02X}")).collect();
            format!("[{}]", bytes.join(" "))
        })
        .collect()
}

/// `2024-01-01 00:00:00.500000` -> `2024-01-01 00:00:00.5`.
fn trim_fraction(s: String) -> String {
    match s.rfind('.') {
        Some(_) => s.trim_end_matches('0').trim_end_matches('.').to_string(),
        None => s,
    }
}

/// Java's `Double.toString`: plain notation with at least one fraction digit for magnitudes in
/// [1e-3, 1e7), computerized scientific notation (`1.0E10`) otherwise.
fn java_double(v: f64) -> String {
    java_number(v.is_nan(), v.is_infinite(), v.is_sign_negative(), v == 0.0, v.abs(), format!("{v}"), format!("{v:e}"))
}

/// Java's `Float.toString` (same rules as [`java_double`], with `f32` shortest digits).
fn java_float(v: f32) -> String {
    java_number(
        v.is_nan(),
        v.is_infinite(),
        v.is_sign_negative(),
        v == 0.0,
        v.abs() as f64,
        format!("{v}"),
        format!("{v:e}"),
    )
}

fn java_number(
    nan: bool,
    infinite: bool,
    negative: bool,
    zero: bool,
    magnitude: f64,
    plain: String,
    scientific: String,
) -> String {
    if nan {
        return "NaN".to_string();
    }
    if infinite {
        return if negative { "-Infinity" } else { "Infinity" }.to_string();
    }
    if zero || (1e-3..1e7).contains(&magnitude) {
        return if plain.contains('.') { plain } else { format!("{plain}.0") };
    }
    // Rust's `{:e}` gives the shortest digits as `1.5e-5` / `1e10`.
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
    format!("{mantissa}E{exponent}")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use arrow::array::{
        BinaryArray, Date32Array, Float64Array, Int64Array, ListArray, StringArray, StructArray,
        TimestampMicrosecondArray, TimestampNanosecondArray,
    };
    use arrow::datatypes::{Field, Fields, Int32Type, Schema, TimeUnit};

    use super::*;

    const T0_US: i64 = 1_704_067_200_000_000; // 2024-01-01 00:00:00 UTC

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn wstart_batch(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("wstart", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
            Field::new("key", DataType::Utf8, true),
            Field::new("cnt", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![T0_US; n]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec!["a"; n])),
                Arc::new(Int64Array::from(vec![4; n])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn timestamps_show_in_the_session_time_zone() {
        let b = wstart_batch(1);
        let show = |tz| show_string(&b.schema(), std::slice::from_ref(&b), 20, false, tz).unwrap();
        assert!(show(None).contains("|2024-01-01 00:00:00|"), "{}", show(None));
        assert!(show(Some("Europe/Paris")).contains("|2024-01-01 01:00:00|"), "{}", show(Some("Europe/Paris")));
        assert!(show(Some("-05:00")).contains("|2023-12-31 19:00:00|"), "{}", show(Some("-05:00")));
        assert!(ConsoleSink::stdout(20, true).with_time_zone(Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn prints_batches_like_spark_console_sink() {
        let out = Shared::default();
        let mut sink = ConsoleSink::new(Box::new(out.clone()), 20, true);
        let b = wstart_batch(1);
        sink.add_batch(0, &b.schema(), std::slice::from_ref(&b)).unwrap();
        sink.add_batch(1, &b.schema(), &[]).unwrap();
        assert_eq!(
            out.text(),
            "-------------------------------------------\n\
             Batch: 0\n\
             -------------------------------------------\n\
             +-------------------+---+---+\n\
             |             wstart|key|cnt|\n\
             +-------------------+---+---+\n\
             |2024-01-01 00:00:00|  a|  4|\n\
             +-------------------+---+---+\n\
             \n\
             -------------------------------------------\n\
             Batch: 1\n\
             -------------------------------------------\n\
             +------+---+---+\n\
             |wstart|key|cnt|\n\
             +------+---+---+\n\
             +------+---+---+\n\
             \n"
        );
    }

    #[test]
    fn empty_single_column_table() {
        let schema = Arc::new(Schema::new(vec![Field::new("cnt", DataType::Int64, false)]));
        assert_eq!(show_string(&schema, &[], 20, true, None).unwrap(), "+---+\n|cnt|\n+---+\n+---+\n");
    }

    #[test]
    fn more_rows_than_num_rows_across_batches() {
        let b = wstart_batch(2);
        let text = show_string(&b.schema(), &[b.clone(), b.clone()], 3, true, None).unwrap();
        assert_eq!(text.matches("|2024-01-01 00:00:00|").count(), 3);
        assert!(text.ends_with("+\nonly showing top 3 rows\n"), "{text}");
        let one = show_string(&b.schema(), std::slice::from_ref(&b), 1, true, None).unwrap();
        assert!(one.ends_with("only showing top 1 row\n"), "{one}");
        let all = show_string(&b.schema(), &[b.clone(), b], 4, true, None).unwrap();
        assert!(!all.contains("only showing"));
    }

    #[test]
    fn truncation_and_alignment() {
        let schema =
            Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true), Field::new("n", DataType::Int64, true)]));
        let long = "abcdefghijklmnopqrstuvwxyz";
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some(long), Some("x\ny"), None])),
                Arc::new(Int64Array::from(vec![Some(1), None, Some(-20)])),
            ],
        )
        .unwrap();
        assert_eq!(
            show_string(&schema, std::slice::from_ref(&b), 20, true, None).unwrap(),
            "+--------------------+----+\n\
             |                   s|   n|\n\
             +--------------------+----+\n\
             |abcdefghijklmnopq...|   1|\n\
             |                x\\ny|null|\n\
             |                null| -20|\n\
             +--------------------+----+\n"
        );
        assert_eq!(
            show_string(&schema, &[b], 20, false, None).unwrap(),
            "+--------------------------+----+\n\
             |s                         |n   |\n\
             +--------------------------+----+\n\
             |abcdefghijklmnopqrstuvwxyz|1   |\n\
             |x\\ny                      |null|\n\
             |null                      |-20 |\n\
             +--------------------------+----+\n"
        );
    }

    #[test]
    fn value_text_matches_spark() {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let window_fields = Fields::from(vec![Field::new("start", ts.clone(), true), Field::new("end", ts, true)]);
        let window = StructArray::new(
            window_fields.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(vec![T0_US, T0_US])) as ArrayRef,
                Arc::new(TimestampMicrosecondArray::from(vec![T0_US + 3_600_000_000, T0_US + 500_000])),
            ],
            Some(vec![true, false].into()),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("window", DataType::Struct(window_fields), true),
            Field::new("ns", DataType::Timestamp(TimeUnit::Nanosecond, Some("+02:00".into())), true),
            Field::new("d", DataType::Float64, true),
            Field::new("day", DataType::Date32, true),
            Field::new_list("l", Field::new("item", DataType::Int32, true), true),
            Field::new("b", DataType::Binary, true),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(window),
                Arc::new(
                    TimestampNanosecondArray::from(vec![T0_US * 1000 + 120_000_000, T0_US * 1000 + 1])
                        .with_timezone("+02:00"),
                ),
                Arc::new(Float64Array::from(vec![Some(1.0), Some(1e10)])),
                Arc::new(Date32Array::from(vec![Some(19723), None])),
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), None]), None])),
                Arc::new(BinaryArray::from(vec![Some(&b"\x0a\xff"[..]), None])),
            ],
        )
        .unwrap();
        let text = show_string(&schema, &[b], 20, false, None).unwrap();
        let cells = |line: &str| -> Vec<String> {
            line.trim_matches('|').split('|').map(|c| c.trim_end().to_string()).collect()
        };
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            cells(lines[3]),
            [
                "{2024-01-01 00:00:00, 2024-01-01 01:00:00}",
                "2024-01-01 00:00:00.12",
                "1.0",
                "2024-01-01",
                "[1, null]",
                "[0A FF]"
            ]
        );
        assert_eq!(cells(lines[4]), ["null", "2024-01-01 00:00:00.000000001", "1.0E10", "null", "null", "null"]);
    }

    #[test]
    fn java_number_text() {
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(2.5), "2.5");
        assert_eq!(java_double(-0.0), "-0.0");
        assert_eq!(java_double(1234567.0), "1234567.0");
        assert_eq!(java_double(12345678.0), "1.2345678E7");
        assert_eq!(java_double(0.001), "0.001");
        assert_eq!(java_double(0.0001), "1.0E-4");
        assert_eq!(java_double(1.5e-5), "1.5E-5");
        assert_eq!(java_double(f64::NAN), "NaN");
        assert_eq!(java_double(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(java_float(0.1), "0.1");
    }
}
