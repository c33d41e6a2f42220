//! What arrow_json cannot be trusted with, found and fixed per record with serde_json.
//!
//! arrow_json decodes by exact key spelling and reads JSON tokens leniently: a number in a
//! timestamp field is taken as raw nanoseconds, `3.7` in an integer field becomes `3`, and an
//! object in a string field is an error. Spark instead matches keys to columns
//! case-insensitively, reads a number in a timestamp column as seconds since the epoch, refuses a
//! fraction or an out-of-range number in an integer column, and keeps an object or array in a
//! string column as its JSON text. This module reconciles the two without slowing down the usual
//! file:
//!
//! - [`is_clean`] walks a record once (serde_json, no allocation) and says whether arrow_json
//!   reads it exactly as Spark would; nearly every record of a well-formed file is clean, and its
//!   bytes go to arrow_json unchanged.
//! - [`rewrite`] re-writes any other record into JSON that arrow_json reads correctly — keys
//!   renamed to the declared spelling (an exact match wins over a case-insensitive one within one
//!   object), numbers in timestamp fields as integers of the field's unit, objects and arrays in
//!   string fields as their compact JSON text — or names the field whose value does not fit.
//!
//! Both walks follow the declared type, also into structs, lists and maps; a map's keys are data
//! and are not matched. The walk itself is hand-written serde visitors (no JSON parsing).

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use arrow::datatypes::{DataType, Fields, TimeUnit};

use crate::format::decode::sql_type_name;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Whether arrow_json decodes the JSON object `record` into `fields` exactly as Spark reads it.
///
/// `false` also for invalid JSON and for values that do not fit (so that [`rewrite`] names the
/// problem).
pub(super) fn is_clean(record: &[u8], fields: &Fields) -> bool {
    let stop = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(record);
    let seed = Node { kind: Kind::Record(fields), path: Path::None, out: None, stop: &stop, comma: false };
    seed.deserialize(&mut de).is_ok() && de.end().is_ok()
}

/// `record` re-written as a JSON object that arrow_json decodes into `fields` as Spark reads it.
///
/// # Errors
/// A message for a bad record: invalid JSON, not an object, a fraction or an out-of-range number
/// in an integer field, a number out of range for a timestamp, a number in a date field.
pub(super) fn rewrite(record: &[u8], fields: &Fields) -> Result<String, String> {
    let stop = RefCell::new(None);
    let mut out = String::with_capacity(record.len() + 16);
    let mut de = serde_json::Deserializer::from_slice(record);
    let seed = Node { kind: Kind::Record(fields), path: Path::Root, out: Some(&mut out), stop: &stop, comma: false };
    seed.deserialize(&mut de).and_then(|()| de.end()).map_err(|e| format!("invalid JSON: {e}"))?;
    match stop.into_inner() {
        Some(message) => Err(message),
        None => Ok(out),
    }
}

/// How a declared type reads JSON tokens.
#[derive(Clone, Copy)]
enum Kind<'s> {
    /// An integer type with its inclusive range.
    Integer(i128, i128, &'s DataType),
    /// A timestamp: strings are parsed by arrow_json, numbers are seconds since the epoch.
    Timestamp(TimeUnit, &'s DataType),
    /// A date: only strings.
    Date(&'s DataType),
    /// A string: any scalar as its text, objects and arrays as their JSON text.
    Text,
    /// A struct: an object whose keys match the fields case-insensitively.
    Struct(&'s Fields),
    /// A whole record: as a struct, but it must be an object.
    Record(&'s Fields),
    /// A list of elements of the type.
    List(&'s DataType),
    /// A map: an object whose values are of the type.
    Map(&'s DataType),
    /// Anything else: left to arrow_json.
    Other,
}

impl<'s> Kind<'s> {
    fn of(data_type: &'s DataType) -> Kind<'s> {
        use DataType::*;
        let int = |min: i128, max: i128| Kind::Integer(min, max, data_type);
        match data_type {
            Int8 => int(i8::MIN.into(), i8::MAX.into()),
            Int16 => int(i16::MIN.into(), i16::MAX.into()),
            Int32 => int(i32::MIN.into(), i32::MAX.into()),
            Int64 => int(i64::MIN.into(), i64::MAX.into()),
            UInt8 => int(0, u8::MAX.into()),
            UInt16 => int(0, u16::MAX.into()),
            UInt32 => int(0, u32::MAX.into()),
            UInt64 => int(0, u64::MAX.into()),
            Timestamp(unit, _) => Kind::Timestamp(*unit, data_type),
            Date32 | Date64 => Kind::Date(data_type),
            Utf8 | LargeUtf8 | Utf8View => Kind::Text,
            Struct(fields) => Kind::Struct(fields),
            List(f) | LargeList(f) | ListView(f) | LargeListView(f) => Kind::List(f.data_type()),
            Map(entries, _) => match entries.data_type() {
                Struct(kv) if kv.len() == 2 => Kind::Map(kv[1].data_type()),
                _ => Kind::Other,
            },
            _ => Kind::Other,
        }
    }
}

/// Where a value is, for messages; [`Path::None`] while only checking.
#[derive(Clone)]
enum Path<'p> {
    None,
    Root,
    Field(&'p Path<'p>, &'p str),
    Element(&'p Path<'p>, usize),
    MapValue(&'p Path<'p>, &'p str),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::None | Path::Root => Ok(()),
            Path::Field(Path::Root, name) => write!(f, "{name}"),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Element(parent, i) => write!(f, "{parent}[{i}]"),
            Path::MapValue(parent, key) => write!(f, "{parent}['{key}']"),
        }
    }
}

/// One value to check (`out` is `None`) or re-write into `out`.
///
/// A check stops at the first value to re-write with an empty serde error. A re-write reads the
/// whole record and keeps its first problem in `stop` (not as a serde error: serde_json would
/// append a position to the message, and a visitor that stops early leaves the rest of the
/// record unread).
struct Node<'s, 'p, 'o, 'e> {
    kind: Kind<'s>,
    path: Path<'p>,
    out: Option<&'o mut String>,
    stop: &'e RefCell<Option<String>>,
    /// Write `,` before the value (a list element after the first: written only once the
    /// element turns out to exist).
    comma: bool,
}

impl<'s, 'p, 'o, 'e> Node<'s, 'p, 'o, 'e> {
    /// A value that does not fit: ends a check; when re-writing, records `message` (the first
    /// problem wins) and goes on, so that the rest of the record is still read through.
    fn fail<E: de::Error>(&self, message: impl FnOnce() -> String) -> Result<(), E> {
        if self.out.is_none() {
            return Err(E::custom(""));
        }
        let mut stop = self.stop.borrow_mut();
        if stop.is_none() {
            *stop = Some(match self.path {
                Path::None | Path::Root => message(),
                _ => format!("field '{}': {}", self.path, message()),
            });
        }
        Ok(())
    }

    /// Ends a check (the value must be re-written); does nothing when re-writing.
    fn needs_rewrite<E: de::Error>(&self) -> Result<(), E> {
        match self.out {
            Some(_) => Ok(()),
            None => Err(E::custom("")),
        }
    }

    /// The output, after the pending comma; `None` when only checking.
    fn output(&mut self) -> Option<&mut String> {
        let out = self.out.as_deref_mut()?;
        if std::mem::take(&mut self.comma) {
            out.push(',');
        }
        Some(out)
    }

    fn write(&mut self, text: impl fmt::Display) {
        if let Some(out) = self.output() {
            let _ = write!(out, "{text}");
        }
    }

    fn write_str(&mut self, s: &str) {
        if let Some(out) = self.output() {
            write_json_string(out, s);
        }
    }

    /// An integer token in this value's place.
    fn integer<E: de::Error>(mut self, v: i128) -> Result<(), E> {
        match self.kind {
            Kind::Integer(min, max, ty) if v < min || v > max => {
                self.fail(|| format!("{v} is out of range for {}", sql_type_name(ty)))
            }
            Kind::Timestamp(unit, ty) => {
                self.needs_rewrite()?;
                match v.checked_mul(per_second(unit)).and_then(|x| i64::try_from(x).ok()) {
                    Some(x) => {
                        self.write(x);
                        Ok(())
                    }
                    None => {
                        self.fail(|| format!("{v} seconds since the epoch is out of range for {}", sql_type_name(ty)))
                    }
                }
            }
            Kind::Date(ty) => self.fail(|| number_in_date(ty)),
            _ => {
                self.write(v);
                Ok(())
            }
        }
    }

    /// Ends the walk when a whole record is `what` instead of an object.
    fn not_a_record<E: de::Error>(&self, what: &str) -> Result<(), E> {
        match self.kind {
            Kind::Record(_) => self.fail(|| format!("a record must be a JSON object, found {what}")),
            _ => Ok(()),
        }
    }

    /// A JSON text string holding the compact JSON text of the object or array `A` walks.
    fn as_json_text<E: de::Error, A>(
        mut self,
        access: A,
        copy: impl FnOnce(A, &mut String) -> Result<(), E>,
    ) -> Result<(), E> {
        self.needs_rewrite()?;
        let mut text = String::new();
        copy(access, &mut text)?;
        self.write_str(&text);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.not_a_record("a boolean")?;
        self.write(v);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.not_a_record("a number")?;
        self.integer(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.not_a_record("a number")?;
        self.integer(v.into())
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.not_a_record("a number")?;
        match self.kind {
            // `3.0`, `1e3`, `-0` (serde_json reads them as doubles) are exact integers; beyond
            // 2^53 a double is no longer exact.
            Kind::Integer(..) if v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 => {
                self.needs_rewrite()?;
                self.integer(v as i128)
            }
            Kind::Integer(min, max, ty) if v.fract() == 0.0 || !v.is_finite() || v < min as f64 || v > max as f64 => {
                self.fail(|| format!("{} is out of range for {}", json_number(v), sql_type_name(ty)))
            }
            Kind::Integer(_, _, ty) => {
                self.fail(|| format!("{} is not an integer, but the column is {}", json_number(v), sql_type_name(ty)))
            }
            Kind::Timestamp(unit, ty) => {
                self.needs_rewrite()?;
                // Spark keeps microseconds: round to them, then express in the field's unit.
                let micros = (v * 1e6).round();
                let value = (micros.abs() < 9.2e18)
                    .then(|| (i128::from(micros as i64) * per_second(unit)).div_euclid(1_000_000))
                    .and_then(|x| i64::try_from(x).ok());
                match value {
                    Some(x) => {
                        self.write(x);
                        Ok(())
                    }
                    None => self.fail(|| {
                        format!("{} seconds since the epoch is out of range for {}", json_number(v), sql_type_name(ty))
                    }),
                }
            }
            Kind::Date(ty) => self.fail(|| number_in_date(ty)),
            // arrow_json would keep the number's text as written; Spark re-formats it from the
            // double it parsed (`1.50` becomes `1.5`), as a re-written record does.
            Kind::Text => {
                self.needs_rewrite()?;
                self.write_str(&json_number(v));
                Ok(())
            }
            _ => {
                self.write(json_number(v));
                Ok(())
            }
        }
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.not_a_record("a string")?;
        self.write_str(v);
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.not_a_record("null")?;
        self.write("null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.not_a_record("an array")?;
        match self.kind {
            Kind::List(element) => {
                self.write('[');
                let mut i = 0;
                while seq.next_element_seed(self.child(Kind::of(element), |p| Path::Element(p, i), i > 0))?.is_some() {
                    i += 1;
                }
                self.write(']');
                Ok(())
            }
            Kind::Text => self.as_json_text(seq, |seq, out| Compact::seq(seq, out)),
            _ => {
                // Left to arrow_json, which reports the mismatch.
                let mut text = String::new();
                Compact::seq(seq, &mut text)?;
                self.write(text);
                Ok(())
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        match self.kind {
            Kind::Struct(fields) | Kind::Record(fields) => self.object(map, fields),
            Kind::Map(value) => self.map(map, Some(value)),
            Kind::Text => self.as_json_text(map, |map, out| Compact::map(map, out)),
            _ => self.map(map, None),
        }
    }
}

impl<'s, 'p, 'o, 'e> Node<'s, 'p, 'o, 'e> {
    /// The node of a child value, written after a `,` when `comma`.
    fn child<'c>(
        &'c mut self,
        kind: Kind<'s>,
        path: impl FnOnce(&'c Path<'p>) -> Path<'c>,
        comma: bool,
    ) -> Node<'s, 'c, 'c, 'e> {
        let path = match self.path {
            Path::None => Path::None,
            _ => path(&self.path),
        };
        Node { kind, path, out: self.out.as_deref_mut(), stop: self.stop, comma }
    }

    /// A map's entries; the keys are data, the values of type `value` (`None`: copied).
    fn map<'de, A: MapAccess<'de>>(mut self, mut map: A, value: Option<&'s DataType>) -> Result<(), A::Error> {
        let kind = value.map_or(Kind::Other, Kind::of);
        if self.out.is_none() {
            while map.next_key::<IgnoredAny>()?.is_some() {
                map.next_value_seed(Node { kind, path: Path::None, out: None, stop: self.stop, comma: false })?;
            }
            return Ok(());
        }
        self.write('{');
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            self.write(if first { "" } else { "," });
            self.write_str(&key);
            self.write(':');
            first = false;
            map.next_value_seed(self.child(kind, |p| Path::MapValue(p, &key), false))?;
        }
        self.write('}');
        Ok(())
    }

    /// An object read as a struct of `fields`: each declared field takes the value of its
    /// exactly spelled key, else of a key equal to it ignoring ASCII case (the last one, as
    /// arrow_json takes the last of duplicate keys); other keys are ignored.
    fn object<'de, A: MapAccess<'de>>(mut self, mut map: A, fields: &'s Fields) -> Result<(), A::Error> {
        if self.out.is_none() {
            return check_object(map, fields, self.stop);
        }
        // (field index, exact spelling, the value re-written or why it cannot be)
        let mut entries: Vec<(usize, bool, Result<String, String>)> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed(fields))? {
            let Some((i, exact)) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let field = &fields[i];
            let mut text = String::new();
            let stop = RefCell::new(None);
            let path = Path::Field(&self.path, field.name());
            let node =
                Node { kind: Kind::of(field.data_type()), path, out: Some(&mut text), stop: &stop, comma: false };
            map.next_value_seed(node)?;
            let value = match stop.into_inner() {
                Some(message) => Err(message),
                None => Ok(text),
            };
            entries.push((i, exact, value));
        }
        self.write('{');
        let mut first = true;
        for i in 0..fields.len() {
            let chosen =
                entries.iter().rev().find(|e| e.0 == i && e.1).or_else(|| entries.iter().rev().find(|e| e.0 == i));
            let Some((_, _, value)) = chosen else { continue };
            let text = match value {
                Ok(text) => text,
                Err(message) => {
                    self.stop.borrow_mut().get_or_insert_with(|| message.clone());
                    continue;
                }
            };
            self.write(if first { "" } else { "," });
            self.write_str(fields[i].name());
            self.write(':');
            self.write(text);
            first = false;
        }
        self.write('}');
        Ok(())
    }
}

/// [`Node::object`] when only checking: clean when every key is spelled as declared (or a
/// differently spelled one has an exactly spelled twin in the same object) and every value is
/// clean.
fn check_object<'de, A: MapAccess<'de>>(
    mut map: A,
    fields: &Fields,
    stop: &RefCell<Option<String>>,
) -> Result<(), A::Error> {
    // Bit i: field i had an exactly spelled key / a differently spelled one. More than 128
    // fields: any differently spelled key sends the record to `rewrite`.
    let (mut exact, mut folded) = (0u128, 0u128);
    while let Some(key) = map.next_key_seed(KeySeed(fields))? {
        match key {
            Some((i, true)) => {
                exact |= 1u128.checked_shl(i as u32).unwrap_or(0);
                let node =
                    Node { kind: Kind::of(fields[i].data_type()), path: Path::None, out: None, stop, comma: false };
                map.next_value_seed(node)?;
            }
            Some((i, false)) if i < 128 => {
                folded |= 1 << i;
                map.next_value::<IgnoredAny>()?;
            }
            Some((_, false)) => return Err(de::Error::custom("")),
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    if folded & !exact != 0 {
        return Err(de::Error::custom(""));
    }
    Ok(())
}

/// Reads an object key as the declared field it names: `(index, spelled exactly)`, `None` for
/// other keys. Without allocating unless the key has escapes.
struct KeySeed<'s>(&'s Fields);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<(usize, bool)>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<(usize, bool)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if let Some(i) = self.0.iter().position(|f| f.name() == key) {
            return Ok(Some((i, true)));
        }
        Ok(self.0.iter().position(|f| f.name().eq_ignore_ascii_case(key)).map(|i| (i, false)))
    }
}

/// Copies any JSON value compactly (keys in their order, numbers re-formatted), the way Spark
/// keeps an object in a string column.
struct Compact;

impl Compact {
    fn seq<'de, A: SeqAccess<'de>>(mut seq: A, out: &mut String) -> Result<(), A::Error> {
        out.push('[');
        let mut first = true;
        while let Some(text) = seq.next_element_seed(CopyToString)? {
            out.push_str(if first { "" } else { "," });
            out.push_str(&text);
            first = false;
        }
        out.push(']');
        Ok(())
    }

    fn map<'de, A: MapAccess<'de>>(mut map: A, out: &mut String) -> Result<(), A::Error> {
        out.push('{');
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            out.push_str(if first { "" } else { "," });
            write_json_string(out, &key);
            out.push(':');
            out.push_str(&map.next_value_seed(CopyToString)?);
            first = false;
        }
        out.push('}');
        Ok(())
    }
}

/// A value's compact JSON text.
struct CopyToString;

impl<'de> DeserializeSeed<'de> for CopyToString {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CopyToString {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(json_number(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        let mut out = String::new();
        write_json_string(&mut out, v);
        Ok(out)
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok("null".to_string())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<String, A::Error> {
        let mut out = String::new();
        Compact::seq(seq, &mut out)?;
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<String, A::Error> {
        let mut out = String::new();
        Compact::map(map, &mut out)?;
        Ok(out)
    }
}

/// `s` as a JSON string literal.
fn write_json_string(out: &mut String, s: &str) {
    // serde_json's own escaping; writing into a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// A (finite) double as the shortest JSON number that reads back as it: `1.5`, `1000`, `1e300`.
fn json_number(v: f64) -> String {
    if v != 0.0 && !(1e-5..1e16).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Units of a timestamp of `unit` per second.
fn per_second(unit: TimeUnit) -> i128 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

fn number_in_date(ty: &DataType) -> String {
    format!("a number cannot be read as {}; write the date as a string such as \"2024-01-01\"", sql_type_name(ty))
}
