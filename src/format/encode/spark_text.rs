//! Values as text the way Spark's JSON and CSV writers print them.
//!
//! - Doubles and floats: Java's `Double.toString` / `Float.toString` (JDK 19+), which Jackson
//!   (Spark's JSON writer) and Spark's CSV writer both call: the shortest decimal that reads back
//!   as the value, with at least one fractional digit (`1.0`, `2.5`), in plain notation for
//!   magnitudes in `[1e-3, 1e7)` and as `1.0E7`, `1.5E-4` otherwise; `NaN`, `Infinity`,
//!   `-Infinity` for the others (quoted in JSON: Jackson's `WRITE_NAN_AS_STRINGS`, on by default).
//! - Timestamps: Spark's default `timestampFormat`, `yyyy-MM-dd'T'HH:mm:ss.SSSXXX`, in the session
//!   time zone: milliseconds truncated, `Z` for a zero offset and `+01:00` otherwise.
//!
//! The digit generation is Rust's (`{:e}` is the shortest round-trip decimal, as Java's); only
//! Java's layout of those digits is written here.

use std::fmt::{LowerExp, Write as _};
use std::str::FromStr;

use arrow::array::timezone::Tz;
use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, Float64Type, Int64Type, TimeUnit};
use arrow::temporal_conversions::{
    timestamp_ms_to_datetime, timestamp_ns_to_datetime, timestamp_s_to_datetime, timestamp_us_to_datetime,
};
use chrono::{Datelike, Offset, TimeZone, Timelike};

/// Java's `Double.toString(v)`, appended to `out`.
pub(crate) fn write_double(out: &mut String, v: f64) {
    write_java(out, v, v);
}

/// Java's `Float.toString(v)`, appended to `out` (the shortest decimal that reads back as the
/// `f32`, not as the `f64` it widens to).
pub(crate) fn write_float(out: &mut String, v: f32) {
    write_java(out, v, f64::from(v));
}

/// Java's `toString` of `v`, a double or a float whose value is `wide`.
fn write_java<T: LowerExp + FromStr + PartialEq>(out: &mut String, v: T, wide: f64) {
    if !wide.is_finite() {
        out.push_str(non_finite(wide.is_nan(), wide > 0.0));
        return;
    }
    let shortest = format!("{v:e}");
    // Java's rule: when one digit is enough, the closest of the one- and two-digit decimals that
    // read back as `v` (they differ only among subnormals, e.g. 4.9E-324).
    let one_digit = shortest.trim_start_matches('-').split('e').next().is_some_and(|m| m.len() == 1);
    let two = || Some(format!("{v:.1e}")).filter(|two| two.parse::<T>().is_ok_and(|t| t == v));
    let scientific = match one_digit.then(two).flatten() {
        Some(two) => two,
        None => shortest,
    };
    java_layout(out, &scientific, wide.abs());
}

fn non_finite(nan: bool, positive: bool) -> &'static str {
    match (nan, positive) {
        (true, _) => "NaN",
        (false, true) => "Infinity",
        (false, false) => "-Infinity",
    }
}

/// Lays out Rust's scientific form (`-1.25e-4`, `3e0`) of a finite value of magnitude `abs` as
/// Java prints it.
fn java_layout(out: &mut String, scientific: &str, abs: f64) {
    let (negative, unsigned) = match scientific.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, scientific),
    };
    let (mantissa, exponent) = unsigned.split_once('e').unwrap_or((unsigned, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    if negative {
        out.push('-');
    }
    if abs == 0.0 {
        out.push_str("0.0");
    } else if (1e-3..1e7).contains(&abs) {
        if exponent >= 0 {
            let point = exponent as usize + 1;
            if digits.len() > point {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            } else {
                out.push_str(digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
            out.push_str(digits);
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        out.push_str(if digits.len() > 1 { &digits[1..] } else { "0" });
        let _ = write!(out, "E{exponent}");
    }
}

/// A timestamp as Spark's default `timestampFormat` prints it in `time_zone`; `None` when the
/// value is outside chrono's range of dates.
pub(crate) fn write_timestamp(out: &mut String, unit: TimeUnit, value: i64, time_zone: &Tz) -> Option<()> {
    let utc = match unit {
        TimeUnit::Second => timestamp_s_to_datetime(value),
        TimeUnit::Millisecond => timestamp_ms_to_datetime(value),
        TimeUnit::Microsecond => timestamp_us_to_datetime(value),
        TimeUnit::Nanosecond => timestamp_ns_to_datetime(value),
    }?;
    let local = time_zone.from_utc_datetime(&utc);
    if (0..=9999).contains(&local.year()) {
        // chrono's `format` parses its pattern on every call; this is the same text, written directly.
        let (date, time) = (local.date_naive(), local.time());
        let millis = time.nanosecond() % 1_000_000_000 / 1_000_000;
        let (y, mo, d) = (date.year(), date.month(), date.day());
        let (h, mi, s) = (time.hour(), time.minute(), time.second());
        let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}");
    } else {
        let _ = write!(out, "{}", local.format("%Y-%m-%dT%H:%M:%S%.3f"));
    }
    if local.offset().fix().local_minus_utc() == 0 {
        out.push('Z');
    } else {
        let _ = write!(out, "{}", local.format("%:z"));
    }
    Some(())
}

/// `array` (a top-level column) with floats and timestamps replaced by their Spark text, for
/// writers that print strings as they are (CSV); other columns are returned unchanged.
///
/// # Errors
/// An arrow error naming the value when a timestamp is outside the range of dates.
pub(crate) fn as_spark_text(array: &ArrayRef, time_zone: &Tz) -> arrow::error::Result<ArrayRef> {
    let text = |f: &mut dyn FnMut(usize, &mut String) -> arrow::error::Result<()>| {
        let mut values = StringBuilder::with_capacity(array.len(), array.len() * 8);
        let mut cell = String::new();
        for i in 0..array.len() {
            if array.is_null(i) {
                values.append_null();
            } else {
                cell.clear();
                f(i, &mut cell)?;
                values.append_value(&cell);
            }
        }
        Ok(std::sync::Arc::new(values.finish()) as ArrayRef)
    };
    match array.data_type() {
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            text(&mut |i, out| {
                write_double(out, a.value(i));
                Ok(())
            })
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            text(&mut |i, out| {
                write_float(out, a.value(i));
                Ok(())
            })
        }
        DataType::Timestamp(unit, _) => {
            let unit = *unit;
            let values = cast(array, &DataType::Int64)?;
            let values = values.as_primitive::<Int64Type>().values();
            text(&mut |i, out| {
                write_timestamp(out, unit, values[i], time_zone).ok_or_else(|| out_of_range(values[i], unit))
            })
        }
        _ => Ok(array.clone()),
    }
}

/// The error for a timestamp value chrono cannot represent.
pub(crate) fn out_of_range(value: i64, unit: TimeUnit) -> arrow::error::ArrowError {
    arrow::error::ArrowError::CastError(format!("timestamp {value} ({unit:?} since the epoch) is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(v: f64) -> String {
        let mut s = String::new();
        write_double(&mut s, v);
        s
    }

    fn float(v: f32) -> String {
        let mut s = String::new();
        write_float(&mut s, v);
        s
    }

    /// Expected strings are what `Double.toString` prints on JDK 21 (the javadoc's examples and
    /// its plain / computerized-scientific boundary at 1e-3 and 1e7).
    #[test]
    fn doubles_as_java_prints_them() {
        for (v, java) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (2.5, "2.5"),
            (-3.25, "-3.25"),
            (100.0, "100.0"),
            (0.1, "0.1"),
            (0.001, "0.001"),
            (0.000_999, "9.99E-4"),
            (1.0e-4, "1.0E-4"),
            (1_234_567.0, "1234567.0"),
            (9_999_999.5, "9999999.5"),
            (1.0e7, "1.0E7"),
            (12_345_678.9, "1.23456789E7"),
            (1.0e23, "1.0E23"),
            (2.0e-3, "0.002"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::MAX, "1.7976931348623157E308"),
            (f64::MIN_POSITIVE, "2.2250738585072014E-308"),
            (5e-324, "4.9E-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(double(v), java, "{v:e}");
        }
    }

    #[test]
    fn floats_as_java_prints_them() {
        for (v, java) in [
            (0.1f32, "0.1"),
            (1.0f32, "1.0"),
            (16_777_216.0f32, "1.6777216E7"),
            (3.4028235e38f32, "3.4028235E38"),
            (1.4e-45f32, "1.4E-45"),
            (f32::NAN, "NaN"),
        ] {
            assert_eq!(float(v), java, "{v:e}");
        }
    }

    #[test]
    fn every_double_reads_back() {
        let mut bits: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            bits = bits.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = f64::from_bits(bits);
            if v.is_finite() {
                assert_eq!(double(v).replace('E', "e").parse::<f64>().unwrap(), v, "{v:e}");
            }
        }
    }

    #[test]
    fn timestamps_in_the_session_time_zone() {
        let t0 = 1_704_067_200_123_456i64; // 2024-01-01T00:00:00.123456Z in microseconds
        let cases = [("UTC", "2024-01-01T00:00:00.123Z"), ("+05:30", "2024-01-01T05:30:00.123+05:30")];
        for (tz, expected) in cases {
            let mut s = String::new();
            write_timestamp(&mut s, TimeUnit::Microsecond, t0, &tz.parse().unwrap()).unwrap();
            assert_eq!(s, expected);
        }
        // London is at offset zero in winter, so Spark's XXX prints Z; in summer +01:00.
        let london: Tz = "Europe/London".parse().unwrap();
        let mut s = String::new();
        write_timestamp(&mut s, TimeUnit::Second, 1_719_792_000, &london).unwrap();
        assert_eq!(s, "2024-07-01T01:00:00.000+01:00");
        s.clear();
        write_timestamp(&mut s, TimeUnit::Second, 1_704_067_200, &london).unwrap();
        assert_eq!(s, "2024-01-01T00:00:00.000Z");
        // Before the epoch milliseconds truncate toward the earlier instant, as Spark's SSS.
        s.clear();
        write_timestamp(&mut s, TimeUnit::Microsecond, -1, &"UTC".parse().unwrap()).unwrap();
        assert_eq!(s, "1969-12-31T23:59:59.999Z");
    }

    /// The pattern-free path writes what chrono's `%Y-%m-%dT%H:%M:%S%.3f` writes, from year 0 to
    /// 9999 (chrono's own formatting is kept outside).
    #[test]
    fn timestamps_match_chronos_pattern_over_the_years() {
        let utc: Tz = "UTC".parse().unwrap();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // From year -1000 to 11000, in ms.
            let ms = (state % 378_000_000_000_000) as i64 - 93_700_000_000_000;
            let mut fast = String::new();
            write_timestamp(&mut fast, TimeUnit::Millisecond, ms, &utc).unwrap();
            let expected = chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%dT%H:%M:%S%.3fZ");
            assert_eq!(fast, expected.to_string(), "{ms} ms");
        }
    }
}
