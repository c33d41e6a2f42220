//! Spark's `date_format(ts, pattern)`: the pattern, written with Spark's datetime pattern letters
//! (<https://spark.apache.org/docs/latest/sql-ref-datetime-pattern.html>), is translated when the
//! query is planned to a chrono format, and the call becomes DataFusion's `to_char` over the
//! timestamp shown in the session time zone (`spark.sql.session.timeZone`).
//!
//! DataFusion's own `date_format` is an alias of `to_char` taking chrono's `%` patterns: sluice's
//! replaces it, as a Spark pattern given to it would come back as its own letters. `to_char`
//! keeps chrono's patterns. A pattern letter sluice cannot translate exactly is a planning error
//! naming it, never a different output.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{plan_datafusion_err, plan_err, Result, ScalarValue};
use datafusion::functions::datetime::expr_fn::to_char;
use datafusion::functions::datetime::to_char::ToCharFunc;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    cast, lit, ColumnarValue, Documentation, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The zone a TIMESTAMP without time zone is read in (sluice's timestamps are UTC instants).
const UTC: &str = "+00:00";

/// `date_format(timestamp | date | string, pattern)` with Spark's pattern letters.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DateFormat {
    signature: Signature,
}

impl DateFormat {
    /// The function.
    pub fn new() -> Self {
        Self { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl Default for DateFormat {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for DateFormat {
    fn name(&self) -> &str {
        "date_format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        match &types[0] {
            DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Date64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Null => Ok(DataType::Utf8),
            other => plan_err!("date_format takes a timestamp, date or string, not {other}"),
        }
    }

    /// Never reached: [`Self::simplify`] replaces every call when the query is optimized.
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        plan_err!("date_format is planned as to_char by the optimizer's simplification, which did not run")
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let [value, pattern] =
            <[Expr; 2]>::try_from(args).map_err(|_| plan_datafusion_err!("date_format takes 2 arguments"))?;
        let pattern = match &pattern {
            Expr::Literal(ScalarValue::Utf8(p) | ScalarValue::LargeUtf8(p) | ScalarValue::Utf8View(p), _) => p.clone(),
            Expr::Literal(ScalarValue::Null, _) => None,
            other => {
                return plan_err!(
                    "date_format's pattern must be a constant string (sluice translates it when planning), got {other}"
                )
            }
        };
        let Some(pattern) = pattern else { return Ok(ExprSimplifyResult::Simplified(lit(ScalarValue::Utf8(None)))) };
        let format = chrono_format(&pattern)?;
        let zone = info.config_options().execution.time_zone.clone().unwrap_or_else(|| UTC.to_string());
        let in_zone = |unit: TimeUnit| DataType::Timestamp(unit, Some(zone.as_str().into()));
        let instant = match info.get_data_type(&value)? {
            // An instant in UTC; relabelling it with the session zone keeps the instant.
            DataType::Timestamp(unit, None) => {
                cast(cast(value, DataType::Timestamp(unit, Some(UTC.into()))), in_zone(unit))
            }
            DataType::Timestamp(unit, Some(_)) => cast(value, in_zone(unit)),
            // Midnight of the date in the session zone, as Spark casts a DATE to a TIMESTAMP.
            DataType::Date32 | DataType::Date64 => {
                cast(cast(value, DataType::Timestamp(TimeUnit::Microsecond, None)), in_zone(TimeUnit::Microsecond))
            }
            DataType::Null => return Ok(ExprSimplifyResult::Simplified(lit(ScalarValue::Utf8(None)))),
            // A string without an offset is read in the session zone.
            _ => cast(value, in_zone(TimeUnit::Microsecond)),
        };
        Ok(ExprSimplifyResult::Simplified(to_char(instant, lit(format))))
    }
}

/// DataFusion's `to_char` without its `date_format` alias, which would otherwise take the name
/// back from [`DateFormat`] whenever a session state is rebuilt from its functions.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct ToChar(ToCharFunc);

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn signature(&self) -> &Signature {
        self.0.signature()
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        self.0.return_type(types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.0.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.0.documentation()
    }
}

/// Translates a Spark datetime pattern to a chrono format string.
///
/// # Errors
/// A planning error naming the pattern letter (and its count) chrono cannot print as Spark does,
/// an unclosed quote, or a reserved character.
pub fn chrono_format(pattern: &str) -> Result<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let literal = |out: &mut String, c: char| match c {
        '%' => out.push_str("%%"),
        c => out.push(c),
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // 'text' is literal text; '' is a quote, inside or outside quoted text.
            if chars.get(i + 1) == Some(&'\'') {
                literal(&mut out, '\'');
                i += 2;
                continue;
            }
            i += 1;
            loop {
                match chars.get(i) {
                    None => return plan_err!("date_format pattern '{pattern}': a quote (') is not closed"),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        literal(&mut out, '\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        literal(&mut out, c);
                        i += 1;
                    }
                }
            }
            continue;
        }
        if c.is_ascii_alphabetic() {
            let count = chars[i..].iter().take_while(|&&d| d == c).count();
            out.push_str(letter(pattern, c, count)?);
            i += count;
            continue;
        }
        match c {
            // Optional sections: a timestamp has every field, so their content is always printed.
            '[' | ']' => {}
            '#' | '{' | '}' => {
                return plan_err!(
                    "date_format pattern '{pattern}': '{c}' is reserved in Spark's patterns; quote it as '{c}'"
                )
            }
            c => literal(&mut out, c),
        }
        i += 1;
    }
    Ok(out)
}

/// The chrono item for `count` repetitions of the Spark pattern letter `c`.
fn letter(pattern: &str, c: char, count: usize) -> Result<&'static str> {
    let item = match (c, count) {
        ('y', 1) => "%-Y",
        ('y', 2) => "%y",
        ('y', 4) => "%Y",
        ('M' | 'L', 1) => "%-m",
        ('M' | 'L', 2) => "%m",
        ('M' | 'L', 3) => "%b",
        ('M' | 'L', 4) => "%B",
        ('d', 1) => "%-d",
        ('d', 2) => "%d",
        ('D', 1) => "%-j",
        ('D', 3) => "%j",
        ('E', 1..=3) => "%a",
        ('E', 4) => "%A",
        ('a', 1) => "%p",
        ('H', 1) => "%-H",
        ('H', 2) => "%H",
        ('h', 1) => "%-I",
        ('h', 2) => "%I",
        ('m', 1) => "%-M",
        ('m', 2) => "%M",
        ('s', 1) => "%-S",
        ('s', 2) => "%S",
        ('S', 3) => "%3f",
        ('S', 6) => "%6f",
        ('S', 9) => "%9f",
        ('Z', 1..=3) | ('x', 2) => "%z",
        ('x', 3) => "%:z",
        _ => {
            let hint = if pattern.contains('%') {
                "; this is Spark's date_format, for chrono's %-patterns use to_char"
            } else {
                ""
            };
            return plan_err!(
                "date_format pattern '{pattern}': the pattern letter '{}' is not supported by sluice \
                 (supported: y yy yyyy, M..MMMM, L..LLLL, d dd, D DDD, E..EEEE, a, H HH, h hh, m mm, s ss, \
                 SSS SSSSSS SSSSSSSSS, Z..ZZZ, xx xxx; quote literal text as 'text'){hint}",
                c.to_string().repeat(count)
            );
        }
    };
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_patterns_become_chrono_formats() {
        assert_eq!(chrono_format("yyyy-MM-dd HH:mm:ss.SSS").unwrap(), "%Y-%m-%d %H:%M:%S.%3f");
        assert_eq!(chrono_format("EEEE, d MMMM yy h:mm a").unwrap(), "%A, %-d %B %y %-I:%M %p");
        assert_eq!(chrono_format("yyyy-MM-dd'T'HH:mm:ssxxx").unwrap(), "%Y-%m-%dT%H:%M:%S%:z");
        assert_eq!(chrono_format("'at' h 'o''clock' 100%").unwrap(), "at %-I o'clock 100%%");
        assert_eq!(chrono_format("''yyyy''").unwrap(), "'%Y'");
        assert_eq!(chrono_format("yyyy[-MM]").unwrap(), "%Y-%m");
    }

    #[test]
    fn untranslatable_letters_are_named() {
        for (pattern, named) in
            [("yyyy-ww", "'ww'"), ("G yyyy", "'G'"), ("HH:mm:ss.SS", "'SS'"), ("QQQ", "'QQQ'"), ("z", "'z'")]
        {
            let err = chrono_format(pattern).unwrap_err().to_string();
            assert!(err.contains(named) && err.contains(pattern), "{pattern}: {err}");
        }
        let err = chrono_format("%Y-%m-%d").unwrap_err().to_string();
        assert!(err.contains("to_char"), "{err}");
        assert!(chrono_format("yyyy 'unclosed").unwrap_err().to_string().contains("not closed"));
        assert!(chrono_format("yyyy {").unwrap_err().to_string().contains("reserved"));
    }
}
