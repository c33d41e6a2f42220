//! Spark's `get_json_object(json, path)`, with Spark's own JSONPath subset and result shapes
//! (`GetJsonObjectEvaluator` in Spark's `jsonExpressions.scala`, which follows Hive's `UDFJson`):
//!
//! - paths: `$`, then `.name`, `['name']`, `[n]`, `[*]`; `.*` and `['*']` parse but match nothing;
//!   a path outside the grammar gives NULL;
//! - a string found is returned without quotes, anything else as compact JSON; inside a `[*]` match
//!   strings keep their quotes, and a `[*]` matching a single element returns it without the
//!   enclosing brackets; `[*][*]` flattens one level;
//! - a field whose value is JSON `null` does not match (the next field of that name may);
//! - NULL for a missing path, a NULL input, and JSON that is malformed up to the match (as Spark,
//!   text after the first complete JSON value is not read).
//!
//! No JSONPath crate was used: the common ones implement RFC 9535 (filters, recursive descent,
//! results as lists), not Hive's single-result shapes. Parsing is serde_json's, into an ordered tree
//! (fields keep their order and duplicates, as Spark's streaming parser sees them); numbers are
//! printed as Jackson prints them (a double as Java's `Double.toString`).

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{Array, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::format::encode::spark_text::write_double;

/// `get_json_object(json_string, path)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GetJsonObject {
    signature: Signature,
}

impl GetJsonObject {
    /// The function; both arguments are coerced to strings.
    pub fn new() -> Self {
        Self { signature: Signature::string(2, Volatility::Immutable) }
    }
}

impl Default for GetJsonObject {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for GetJsonObject {
    fn name(&self) -> &str {
        "get_json_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let json = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let paths = arrow::compute::cast(&arrays[1], &DataType::Utf8)?;
        let (json, paths) = (json.as_string::<i32>(), paths.as_string::<i32>());
        // A constant path is parsed once.
        let constant = match &args.args[1] {
            ColumnarValue::Scalar(_) if paths.is_valid(0) => Some(parse_path(paths.value(0))),
            _ => None,
        };
        let mut out = StringBuilder::with_capacity(json.len(), 0);
        for i in 0..json.len() {
            if json.is_null(i) || paths.is_null(i) {
                out.append_null();
                continue;
            }
            let parsed;
            let path = match &constant {
                Some(path) => path.as_deref(),
                None => {
                    parsed = parse_path(paths.value(i));
                    parsed.as_deref()
                }
            };
            out.append_option(path.and_then(|p| evaluate(json.value(i), p)));
        }
        let result = out.finish();
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}

/// One instruction of a parsed path (Spark's `PathInstruction`).
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Subscript,
    Wildcard,
    Key,
    Index(usize),
    Named(String),
}

/// Spark's `JsonPathParser`: `$` then `.*` | `['*']` | `.name` | `['name']` | `[*]` | `[n]`, with
/// whitespace skipped before each token (Scala's `RegexParsers`); `None` outside the grammar.
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.trim_start().strip_prefix('$')?;
    let mut steps = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Some(steps);
        }
        if let Some(r) = rest.strip_prefix(".*").or_else(|| rest.strip_prefix("['*']")) {
            steps.push(Step::Wildcard);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('.') {
            let r = r.trim_start();
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.extend([Step::Key, Step::Named(r[..end].to_string())]);
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let r = r.trim_start();
            let end = r.find('\'').filter(|&e| e > 0)?;
            steps.extend([Step::Key, Step::Named(r[..end].to_string())]);
            rest = r[end..].trim_start().strip_prefix("']")?;
        } else if let Some(r) = rest.strip_prefix('[') {
            let r = r.trim_start();
            let (step, r) = match r.strip_prefix('*') {
                Some(r) => (Step::Wildcard, r),
                None => {
                    let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
                    (Step::Index(r[..end].parse().ok()?), &r[end..])
                }
            };
            steps.extend([Step::Subscript, step]);
            rest = r.trim_start().strip_prefix(']')?;
        } else {
            return None;
        }
    }
}

/// A JSON value with its object fields in document order, duplicates kept.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> std::result::Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> std::result::Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> std::result::Result<Json, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> std::result::Result<Json, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> std::result::Result<Json, E> {
        serde_json::Number::from_f64(n).map(Json::Number).ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, s: &str) -> std::result::Result<Json, E> {
        Ok(Json::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> std::result::Result<Json, E> {
        Ok(Json::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Json, A::Error> {
        let mut fields = Vec::new();
        while let Some(field) = map.next_entry()? {
            fields.push(field);
        }
        Ok(Json::Object(fields))
    }
}

/// How a match is written (Spark's `WriteStyle`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Style {
    /// A string without quotes.
    Raw,
    /// JSON text (within `[*]`).
    Quoted,
    /// Arrays flattened into the enclosing array (`[*][*]`).
    Flatten,
}

/// The JSON text written so far, with commas between the values of open arrays (Jackson's
/// generator contexts).
#[derive(Default)]
struct Generator {
    out: String,
    /// Per open array: whether it has a value yet.
    arrays: Vec<bool>,
}

impl Generator {
    fn separate(&mut self) {
        if let Some(has_value) = self.arrays.last_mut() {
            if *has_value {
                self.out.push(',');
            }
            *has_value = true;
        }
    }

    fn raw(&mut self, text: &str) {
        self.out.push_str(text);
    }

    fn raw_value(&mut self, text: &str) {
        self.separate();
        self.out.push_str(text);
    }

    fn copy(&mut self, value: &Json) {
        self.separate();
        write_json(value, &mut self.out);
    }

    fn start_array(&mut self) {
        self.separate();
        self.out.push('[');
        self.arrays.push(false);
    }

    fn end_array(&mut self) {
        self.arrays.pop();
        self.out.push(']');
    }
}

/// `get_json_object(json, path)` for one row; `None` is NULL.
fn evaluate(json: &str, path: &[Step]) -> Option<String> {
    // The first JSON value only, as Spark's streaming parser reads no further.
    let value = Json::deserialize(&mut serde_json::Deserializer::from_str(json)).ok()?;
    let mut generator = Generator::default();
    evaluate_path(&value, Style::Raw, path, &mut generator).then_some(generator.out)
}

/// Spark's `evaluatePath`: writes the matches of `path` in `value`; whether anything matched.
fn evaluate_path(value: &Json, style: Style, path: &[Step], g: &mut Generator) -> bool {
    use Step::*;
    match (value, path) {
        (Json::String(s), []) if style == Style::Raw => {
            g.raw(s);
            true
        }
        (Json::Array(items), []) if style == Style::Flatten => {
            items.iter().fold(false, |dirty, item| evaluate_path(item, style, &[], g) | dirty)
        }
        (_, []) => {
            g.copy(value);
            true
        }
        (Json::Object(fields), [Key, Named(name), rest @ ..]) => fields
            .iter()
            .any(|(field, v)| field == name && !matches!(v, Json::Null) && evaluate_path(v, style, rest, g)),
        (Json::Array(items), [Subscript, Wildcard, Subscript, Wildcard, rest @ ..]) => {
            g.start_array();
            let dirty = items.iter().fold(false, |dirty, item| evaluate_path(item, Style::Flatten, rest, g) | dirty);
            g.end_array();
            dirty
        }
        (Json::Array(items), [Subscript, Wildcard, rest @ ..]) if style != Style::Quoted => {
            let next = if style == Style::Flatten { Style::Flatten } else { Style::Quoted };
            let mut buffer = Generator::default();
            buffer.start_array();
            let matched = items.iter().filter(|item| evaluate_path(item, next, rest, &mut buffer)).count();
            buffer.end_array();
            match matched {
                0 => {}
                // A single match is written without the array around it.
                1 => g.raw_value(&buffer.out[1..buffer.out.len() - 1]),
                _ => g.raw_value(&buffer.out),
            }
            matched > 0
        }
        (Json::Array(items), [Subscript, Wildcard, rest @ ..]) => {
            g.start_array();
            let dirty = items.iter().fold(false, |dirty, item| evaluate_path(item, Style::Quoted, rest, g) | dirty);
            g.end_array();
            dirty
        }
        (Json::Array(items), [Subscript, Index(i), rest @ ..]) => {
            let style = if matches!(rest, [Subscript, Wildcard, ..]) { Style::Quoted } else { style };
            items.get(*i).is_some_and(|item| evaluate_path(item, style, rest, g))
        }
        _ => false,
    }
}

/// Compact JSON as Jackson's generator writes it.
fn write_json(value: &Json, out: &mut String) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match n.as_f64().filter(|_| n.is_f64()) {
            Some(f) => write_double(out, f),
            None => out.push_str(&n.to_string()),
        },
        Json::String(s) => write_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Json::Object(fields) => {
            out.push('{');
            for (i, (name, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(name, out);
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string with Jackson's escapes (short ones for `\b \t \n \f \r`, `\u00XX` in upper case
/// for the other control characters).
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(json: &str, path: &str) -> Option<String> {
        evaluate(json, &parse_path(path)?)
    }

    #[test]
    fn spark_documentation_examples() {
        // Spark's SQL function reference: get_json_object('{"a":"b"}', '$.a') is b.
        assert_eq!(get(r#"{"a":"b"}"#, "$.a").as_deref(), Some("b"));
        // Spark's JsonExpressionsSuite (the Hive store document).
        let store = r#"{"store":{"fruit":[{"weight":8,"type":"apple"},{"weight":9,"type":"pear"}],
            "basket":[[1,2,{"b":"y","a":"x"}],[3,4],[5,6]],"book":[{"author":"Nigel Rees",
            "title":"Sayings of the Century","category":"reference","price":8.95},{"author":"Herman Melville",
            "title":"Moby Dick","category":"fiction","price":8.99,"isbn":"0-553-21311-3"}],
            "bicycle":{"price":19.95,"color":"red"}},"email":"amy@only_for_json_udf_test.net",
            "owner":"amy","zip code":"94025","fb:testid":"1234"}"#;
        assert_eq!(get(store, "$.owner").as_deref(), Some("amy"));
        assert_eq!(get(store, "$.store.bicycle").as_deref(), Some(r#"{"price":19.95,"color":"red"}"#));
        assert_eq!(get(store, "$['store'].fruit[0]").as_deref(), Some(r#"{"weight":8,"type":"apple"}"#));
        assert_eq!(get(store, "$.store.fruit[*].weight").as_deref(), Some("[8,9]"));
        assert_eq!(get(store, "$.store.fruit[*].type").as_deref(), Some(r#"["apple","pear"]"#));
        assert_eq!(get(store, "$.store.book[*].isbn").as_deref(), Some(r#""0-553-21311-3""#));
        assert_eq!(get(store, "$.store.basket[*]").as_deref(), Some(r#"[[1,2,{"b":"y","a":"x"}],[3,4],[5,6]]"#));
        assert_eq!(get(store, "$.store.basket[*][0]").as_deref(), Some("[1,3,5]"));
        assert_eq!(get(store, "$.store.basket[*][*]").as_deref(), Some(r#"[1,2,{"b":"y","a":"x"},3,4,5,6]"#));
        assert_eq!(get(store, "$.store.basket[0][2].b").as_deref(), Some("y"));
        assert_eq!(get(store, "$['zip code']").as_deref(), Some("94025"));
        assert_eq!(get(store, "$.fb:testid").as_deref(), Some("1234"));
        assert_eq!(get(store, "$.store.bicycle.price").as_deref(), Some("19.95"));
        assert_eq!(get(store, "$.non_exist_key"), None);
        assert_eq!(get(store, "$.store.book[10]"), None);
        assert_eq!(get(store, "$.store.*"), None);
        assert_eq!(get(store, "store.bicycle"), None);
        assert_eq!(get("{\"a\":", "$.a"), None);
        assert_eq!(get(r#"{"a":null,"a":2}"#, "$.a").as_deref(), Some("2"));
        assert_eq!(get(r#"{"a":1} trailing"#, "$.a").as_deref(), Some("1"));
    }

    #[test]
    fn doubles_print_as_java_does() {
        assert_eq!(get(r#"{"a":1e7,"b":-123.25}"#, "$").as_deref(), Some(r#"{"a":1.0E7,"b":-123.25}"#));
        assert_eq!(get(r#"{"a":1E2,"b":"x\u0001"}"#, "$").as_deref(), Some(r#"{"a":100.0,"b":"x\u0001"}"#));
    }
}
