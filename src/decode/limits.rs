//! What an input may hold (README "Guarantees"): JSON without duplicate keys or NUL
//! characters, identifiers of at most [`MAX_ID_BYTES`] without control characters, short values
//! of at most [`MAX_VALUE_BYTES`]. Anything else is the input's fault and goes to the DLQ at
//! decode, before a store could refuse it and fail a whole batch.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::DecodeError;

pub use crate::text::{shorten, MAX_ID_BYTES};
/// Short values: names, phones, e-mails, custom field and contact values.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Message and comment texts: a chat message is at most a few thousand characters (Telegram
/// and WhatsApp stop at 4096); an e-mail body beyond this is an attachment's job. Bounds every
/// event that carries a text well under a broker's 1 MB record limit, even escaped.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Custom fields one visitor may carry in one message.
pub const MAX_FIELDS: usize = 64;
/// Nesting depth of an input's JSON (serde_json stops at 128 anyway; inputs need 4).
const MAX_DEPTH: usize = 32;

/// A JSON value read strictly: a key repeated in one object is an error, not last-wins (two
/// people's messages must not collapse into one), and so is nesting beyond [`MAX_DEPTH`].
pub fn parse(text: &str) -> Result<Value, DecodeError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict::deserialize(&mut de).and_then(|v| de.end().map(|()| v.0));
    value.map_err(|e| {
        let message = e.to_string();
        // Named by its field, as every other refusal of a value is.
        match message.contains("NUL").then(|| nul_path(text)).flatten() {
            Some(path) => DecodeError::new(format!("`{}`: a NUL character", shorten(&path))),
            None => DecodeError::new(format!("not JSON: {message}")),
        }
    })
}

/// Where the first NUL character of a document sits (`visitor.name`, `contacts.0.value`),
/// read leniently: only asked once the strict read refused the text.
fn nul_path(text: &str) -> Option<String> {
    fn find(value: &Value, path: &mut Vec<String>) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, v)| {
                path.push(i.to_string());
                find(v, path) || path.pop().is_none()
            }),
            Value::Object(map) => map.iter().any(|(k, v)| {
                path.push(k.clone());
                k.contains('\0') || find(v, path) || path.pop().is_none()
            }),
            _ => false,
        }
    }
    let value: Value = serde_json::from_str(text).ok()?;
    let mut path = Vec::new();
    find(&value, &mut path).then(|| path.join("."))
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor { depth: 0 })
    }
}

/// Reads one nested value one level deeper.
struct Nested(usize);

impl<'de> de::DeserializeSeed<'de> for Nested {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor { depth: self.0 }).map(|s| s.0)
    }
}

struct StrictVisitor {
    depth: usize,
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Strict, E> {
        self.visit_string(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Strict, E> {
        if v.contains('\0') {
            return Err(E::custom("a string holds a NUL character"));
        }
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let depth = self.deeper()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Nested(depth))? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let depth = self.deeper()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key.contains('\0') {
                return Err(de::Error::custom("a key holds a NUL character"));
            }
            let value = map.next_value_seed(Nested(depth))?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{}`", crate::text::shorten(&key))));
            }
            out.insert(key, value);
        }
        Ok(Strict(Value::Object(out)))
    }
}

impl StrictVisitor {
    fn deeper<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(self.depth + 1)
    }
}

/// An identifier a later stage keys on: see [`crate::text::check_id`].
pub fn id(field: &str, value: &str) -> Result<(), DecodeError> {
    crate::text::check_id(value).map_err(|why| DecodeError::new(format!("`{field}` {why}")))
}

/// An optional identifier.
pub fn opt_id(field: &str, value: Option<&str>) -> Result<(), DecodeError> {
    value.map_or(Ok(()), |v| id(field, v))
}

/// A short value (a name, a phone, a field value): at most [`MAX_VALUE_BYTES`].
pub fn value(field: &str, value: &str) -> Result<(), DecodeError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(too_long(field, value.len(), MAX_VALUE_BYTES));
    }
    Ok(())
}

/// An optional text (a message, a comment): at most [`MAX_TEXT_BYTES`].
pub fn opt_text(field: &str, v: Option<&str>) -> Result<(), DecodeError> {
    match v {
        Some(text) if text.len() > MAX_TEXT_BYTES => Err(too_long(field, text.len(), MAX_TEXT_BYTES)),
        _ => Ok(()),
    }
}

/// An optional short value.
pub fn opt_value(field: &str, v: Option<&str>) -> Result<(), DecodeError> {
    v.map_or(Ok(()), |v| value(field, v))
}

fn too_long(field: &str, len: usize, max: usize) -> DecodeError {
    DecodeError::new(format!("`{field}` is {len} bytes, the limit is {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_repeated_in_one_object_is_refused_and_one_repeated_across_objects_is_not() {
        let e = parse(r#"{"a":{"b":1},"a":2}"#).unwrap_err();
        assert!(e.reason.contains("duplicate key `a`"), "{}", e.reason);
        assert!(parse(r#"{"a":{"x":1},"b":{"x":2}}"#).is_ok());
        assert!(parse(r#"{"visitor":{"id":"1","id":"2"}}"#)
            .unwrap_err()
            .reason
            .contains("duplicate key `id`"));
    }

    #[test]
    fn nul_characters_and_deep_nesting_are_refused() {
        let nested = parse(r#"{"visitor":{"id":"1","tags":["a","b\u0000"]}}"#).unwrap_err();
        assert_eq!(nested.reason, "`visitor.tags.1`: a NUL character");
        assert!(parse(r#"{"a":"x\u0000y"}"#).unwrap_err().reason.contains("NUL"));
        assert!(parse(r#"{"a\u0000":1}"#).unwrap_err().reason.contains("NUL"));
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        assert!(parse(&deep).unwrap_err().reason.contains("nested deeper"));
    }

    #[test]
    fn the_strict_reader_reads_what_serde_json_reads() {
        let text =
            r#"{"n":-1,"u":18446744073709551615,"f":1.5,"s":"é\n","b":true,"z":null,"l":[1,{"k":[]}]}"#;
        assert_eq!(parse(text).unwrap(), serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn ids_are_bounded_and_free_of_control_characters() {
        assert!(id("visitor.id", &"x".repeat(MAX_ID_BYTES)).is_ok());
        assert!(id("visitor.id", &"x".repeat(MAX_ID_BYTES + 1))
            .unwrap_err()
            .reason
            .contains("the limit is 256"));
        assert!(id("message_id", "a\u{1f}b").unwrap_err().reason.contains("control character"));
        assert!(id("message_id", " ").is_err());
    }
}
