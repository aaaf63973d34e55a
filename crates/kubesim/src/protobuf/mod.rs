//! Decoding Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into JSON objects.
//!
//! kubectl (≥ 1.32) and helm send built-in kinds as protobuf: the magic `k8s\0` followed by a `runtime.Unknown`
//! envelope whose `typeMeta` names the kind and whose `raw` holds the typed message. [`decode`] turns that into the
//! object the JSON API would have received, so the rest of kubesim only ever sees JSON.
//!
//! The messages come from the generated table in `schema.rs` (see `scripts/gen-protobuf-schema.py`): field tags, JSON
//! names, wire kinds and two facts from the Go types that protobuf itself does not carry:
//! - Go's marshaller writes non-pointer scalars even when they are zero (`namespace: ""`, `generation: 0`,
//!   `hostNetwork: false`), where the JSON encoder's `omitempty` drops them; such fields are flagged `OMIT_ZERO` and
//!   their zero values are dropped, while a pointer's explicit zero (`replicas: 0`) is kept;
//! - embedded `json:",inline"` structs (`Probe.handler`, `SecretKeySelector.localObjectReference`) are one protobuf
//!   field but spread their members into the parent object (`INLINE`).
//!
//! Messages with a custom JSON form (`Time`, `MicroTime`, `Duration`, `IntOrString`, `Quantity`, `RawExtension`,
//! `FieldsV1`, apiextensions' `JSON` and `JSONSchemaPropsOr*`, `[]string` wrappers) are converted as Go's
//! `MarshalJSON` does. Unknown fields are skipped as Go does; anything malformed is an `Err`, never a panic.

#[rustfmt::skip]
mod schema;
#[cfg(test)]
mod tests;

use base64::Engine;
use serde_json::{Map, Value};

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// The protobuf content type an envelope may name for its `raw` bytes (empty means the same).
const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Deepest message nesting accepted: real objects (even deep CRD schemas) stay far below it, and the bound keeps a
/// hostile body from overflowing the stack through recursion.
const MAX_DEPTH: usize = 128;

/// How a message appears in JSON when it is not a plain object of its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    /// An object of its fields.
    None,
    /// `meta.v1.Time` {seconds=1, nanos=2}: RFC 3339 with seconds precision; an empty message is `null`.
    Time,
    /// `meta.v1.MicroTime`: RFC 3339 with 6 fractional digits; an empty message is `null`.
    MicroTime,
    /// `meta.v1.Duration` {duration=1 (ns)}: Go's duration string (`1h0m0s`).
    Duration,
    /// `util.intstr.IntOrString` {type=1, intVal=2, strVal=3}: a number or a string.
    IntOrString,
    /// `api.resource.Quantity` {string=1}: the string.
    Quantity,
    /// `runtime.RawExtension`, `meta.v1.FieldsV1`, apiextensions `JSON` {raw=1}: the embedded JSON document.
    RawJson,
    /// A `[]string` type wrapped in a message {items=1} (`ExtraValue`, `Verbs`): an array of strings.
    StringList,
    /// `JSONSchemaPropsOrArray` {schema=1, jSONSchemas=2}: the array if any, else the schema.
    SchemaOrArray,
    /// `JSONSchemaPropsOrBool` {allows=1, schema=2}: the schema if any, else the boolean.
    SchemaOrBool,
    /// `JSONSchemaPropsOrStringArray` {schema=1, property=2}: the strings if any, else the schema, else `null`.
    SchemaOrStringArray,
}

/// The value type of a field (of each element for lists, of each value for maps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    Bytes,
    Bool,
    I32,
    I64,
    F64,
    /// A message, by index into [`schema::MESSAGES`].
    Message(u16),
}

/// How many values a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Card {
    One,
    List,
    /// `map<string, Kind>`, encoded as repeated {key=1, value=2} entries.
    Map,
}

/// No flag.
const NONE: u8 = 0;
/// A non-pointer `omitempty` scalar: a zero value means "absent" in JSON.
const OMIT_ZERO: u8 = 1;
/// An embedded `json:",inline"` message: its fields go into the parent object.
const INLINE: u8 = 2;

/// One field of a message in the table.
#[derive(Debug)]
struct Field {
    tag: u32,
    json: &'static str,
    kind: Kind,
    card: Card,
    flags: u8,
}

/// Builds a [`Field`]; keeps the generated table to one short line per field.
const fn f(tag: u32, json: &'static str, kind: Kind, card: Card, flags: u8) -> Field {
    Field {
        tag,
        json,
        kind,
        card,
        flags,
    }
}

/// One message of the table, its fields sorted by tag.
#[derive(Debug)]
struct Msg {
    name: &'static str,
    special: Special,
    fields: &'static [Field],
}

impl Msg {
    fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }
}

fn message(index: u16) -> Result<&'static Msg, String> {
    schema::MESSAGES
        .get(usize::from(index))
        .ok_or_else(|| format!("protobuf schema table refers to missing message #{index}"))
}

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` envelope into the object as JSON (with apiVersion and kind).
///
/// The result is what the JSON encoding of the same Go object would carry. Kinds outside the generated table
/// (see `scripts/gen-protobuf-schema.py`) and malformed bodies yield an error message fit for a 400 response.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    decode_envelope(body, 0)
}

/// [`decode`] at a nesting depth (a RawExtension may embed another protobuf envelope).
fn decode_envelope(body: &[u8], depth: usize) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    let mut content_type = String::new();
    let mut r = Reader::new(envelope);
    while let Some((tag, wire)) = r.next_field()? {
        match tag {
            1 => {
                let mut tm = Reader::new(wire.bytes("runtime.Unknown.typeMeta")?);
                while let Some((tag, wire)) = tm.next_field()? {
                    match tag {
                        1 => api_version = wire.string("runtime.TypeMeta.apiVersion")?,
                        2 => kind = wire.string("runtime.TypeMeta.kind")?,
                        _ => {}
                    }
                }
            }
            2 => raw = wire.bytes("runtime.Unknown.raw")?,
            3 => content_encoding = wire.string("runtime.Unknown.contentEncoding")?,
            4 => content_type = wire.string("runtime.Unknown.contentType")?,
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(format!("unsupported protobuf content encoding {content_encoding:?}"));
    }
    if api_version.is_empty() || kind.is_empty() {
        return Err("the protobuf envelope does not name an apiVersion and kind".into());
    }
    let object = if content_type.is_empty() || content_type == PROTOBUF_CONTENT_TYPE {
        let index = lookup_kind(&api_version, &kind).ok_or_else(|| {
            format!("no protobuf schema for kind {kind:?} in {api_version:?}; send this kind as JSON")
        })?;
        decode_message(raw, index, depth)?
    } else if content_type.contains("json") {
        // The envelope may carry JSON (runtime.Unknown allows any content type); take it as the object.
        serde_json::from_slice(raw).map_err(|e| format!("invalid JSON in the protobuf envelope: {e}"))?
    } else {
        return Err(format!(
            "unsupported content type {content_type:?} in the protobuf envelope"
        ));
    };
    let Value::Object(mut out) = object else {
        return Err(format!("the {kind} message is not an object"));
    };
    out.insert("apiVersion".into(), Value::String(api_version));
    out.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(out))
}

fn lookup_kind(api_version: &str, kind: &str) -> Option<u16> {
    if let Ok(i) = schema::KINDS.binary_search_by(|(av, k, _)| (*av, *k).cmp(&(api_version, kind))) {
        return Some(schema::KINDS[i].2);
    }
    // DeleteOptions & co. travel with the apiVersion of whatever group the request is for.
    schema::ANY_VERSION_KINDS
        .binary_search_by(|(k, _)| (*k).cmp(kind))
        .ok()
        .map(|i| schema::ANY_VERSION_KINDS[i].1)
}

/// Decodes one message (`buf` is its encoded fields) into its JSON form.
fn decode_message(buf: &[u8], index: u16, depth: usize) -> Result<Value, String> {
    let msg = message(index)?;
    if depth > MAX_DEPTH {
        return Err(format!(
            "messages nested deeper than {MAX_DEPTH} levels (at {})",
            msg.name
        ));
    }
    let fields = |buf: &[u8]| -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        decode_fields(buf, msg, depth, &mut out)?;
        Ok(out)
    };
    // The special forms read their fields by tag, so they do not depend on the table's names for them.
    let take = |map: &mut Map<String, Value>, tag: u32| msg.field(tag).and_then(|f| map.remove(f.json));
    match msg.special {
        Special::None => fields(buf).map(Value::Object),
        Special::RawJson => raw_json(buf, msg, depth),
        Special::Time | Special::MicroTime => {
            if buf.is_empty() {
                // Go marshals the zero time as an empty message and shows it as null.
                return Ok(Value::Null);
            }
            let mut m = fields(buf)?;
            let seconds = take(&mut m, 1).and_then(|v| v.as_i64()).unwrap_or(0);
            let nanos = take(&mut m, 2).and_then(|v| v.as_i64()).unwrap_or(0);
            format_time(seconds, nanos, msg.special == Special::MicroTime).map(Value::String)
        }
        Special::Duration => {
            let ns = take(&mut fields(buf)?, 1).and_then(|v| v.as_i64()).unwrap_or(0);
            Ok(Value::String(go_duration(ns)))
        }
        Special::IntOrString => {
            let mut m = fields(buf)?;
            match take(&mut m, 1).and_then(|v| v.as_i64()).unwrap_or(0) {
                0 => Ok(take(&mut m, 2).unwrap_or(Value::from(0))),
                1 => Ok(take(&mut m, 3).unwrap_or(Value::String(String::new()))),
                t => Err(format!("{}: invalid type {t}", msg.name)),
            }
        }
        // A Quantity without its string is Go's zero Quantity, which prints as "0".
        Special::Quantity => Ok(take(&mut fields(buf)?, 1).unwrap_or_else(|| Value::String("0".into()))),
        Special::StringList => Ok(take(&mut fields(buf)?, 1).unwrap_or_else(|| Value::Array(Vec::new()))),
        Special::SchemaOrArray | Special::SchemaOrStringArray => {
            // Both are {schema=1, list=2}: the list wins when non-empty (absent lists are never inserted).
            let mut m = fields(buf)?;
            let list = take(&mut m, 2);
            Ok(list.or_else(|| take(&mut m, 1)).unwrap_or(Value::Null))
        }
        Special::SchemaOrBool => {
            let mut m = fields(buf)?;
            match take(&mut m, 2) {
                Some(schema) => Ok(schema),
                None => Ok(Value::Bool(take(&mut m, 1).and_then(|v| v.as_bool()).unwrap_or(false))),
            }
        }
    }
}

/// Decodes the fields of `msg` from `buf` into `out` (merging, as protobuf does when a message repeats).
fn decode_fields(buf: &[u8], msg: &Msg, depth: usize, out: &mut Map<String, Value>) -> Result<(), String> {
    let mut r = Reader::new(buf);
    while let Some((tag, wire)) = r.next_field()? {
        // Unknown fields (newer clients) are skipped, as Go's decoder does.
        let Some(field) = msg.field(tag) else {
            continue;
        };
        let ctx = || format!("{}.{}", msg.name, field_label(field));
        match field.card {
            Card::One if field.flags & INLINE != 0 => {
                let Kind::Message(sub) = field.kind else {
                    return Err(format!("{}: inline field is not a message", ctx()));
                };
                let sub_msg = message(sub)?;
                if depth >= MAX_DEPTH {
                    return Err(format!(
                        "messages nested deeper than {MAX_DEPTH} levels (at {})",
                        sub_msg.name
                    ));
                }
                decode_fields(wire.bytes(&ctx())?, sub_msg, depth + 1, out)?;
            }
            Card::One => match field.kind {
                Kind::Message(sub) if message(sub)?.special == Special::None => {
                    // Decoding into the existing object gives protobuf's merge semantics for a repeated message.
                    let slot = out.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
                    if !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    if let Value::Object(obj) = slot {
                        if depth >= MAX_DEPTH {
                            return Err(format!("messages nested deeper than {MAX_DEPTH} levels (at {})", ctx()));
                        }
                        decode_fields(wire.bytes(&ctx())?, message(sub)?, depth + 1, obj)?;
                    }
                }
                _ => {
                    let v = single(field.kind, wire, depth, &ctx)?;
                    if field.flags & OMIT_ZERO != 0 && is_zero(&v) {
                        // Last one wins in protobuf; a zero last value means "unset" for JSON.
                        out.remove(field.json);
                    } else {
                        out.insert(field.json.to_string(), v);
                    }
                }
            },
            Card::List => {
                let mut items = Vec::new();
                match (wire, field.kind) {
                    // Packed encoding of a numeric list: one length-delimited run of values.
                    (Wire::Bytes(run), Kind::Bool | Kind::I32 | Kind::I64 | Kind::F64) => {
                        let mut pr = Reader::new(run);
                        while !pr.is_empty() {
                            let w = if field.kind == Kind::F64 {
                                Wire::Fixed64(pr.fixed64()?)
                            } else {
                                Wire::Varint(pr.varint()?)
                            };
                            items.push(single(field.kind, w, depth, &ctx)?);
                        }
                    }
                    _ => items.push(single(field.kind, wire, depth, &ctx)?),
                }
                if items.is_empty() {
                    continue;
                }
                let slot = out.entry(field.json).or_insert_with(|| Value::Array(Vec::new()));
                match slot {
                    Value::Array(list) => list.extend(items),
                    other => *other = Value::Array(items),
                }
            }
            Card::Map => {
                let (key, value) = map_entry(wire.bytes(&ctx())?, field.kind, depth, &ctx)?;
                let slot = out.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
                match slot {
                    Value::Object(map) => {
                        map.insert(key, value);
                    }
                    other => *other = Value::Object(Map::from_iter([(key, value)])),
                }
            }
        }
    }
    Ok(())
}

fn field_label(field: &Field) -> String {
    if field.json.is_empty() {
        format!("#{}", field.tag)
    } else {
        field.json.to_string()
    }
}

/// Decodes one `map<string, V>` entry {key=1, value=2}; absent parts take their zero value, as in Go.
fn map_entry(buf: &[u8], kind: Kind, depth: usize, ctx: &dyn Fn() -> String) -> Result<(String, Value), String> {
    let mut key = String::new();
    let mut value = None;
    let mut r = Reader::new(buf);
    while let Some((tag, wire)) = r.next_field()? {
        match tag {
            1 => key = wire.string(&ctx())?,
            2 => value = Some(single(kind, wire, depth, ctx)?),
            _ => {}
        }
    }
    let value = match value {
        Some(v) => v,
        None => match kind {
            Kind::Str | Kind::Bytes => Value::String(String::new()),
            Kind::Bool => Value::Bool(false),
            Kind::I32 | Kind::I64 | Kind::F64 => Value::from(0),
            Kind::Message(sub) => decode_message(&[], sub, depth + 1)?,
        },
    };
    Ok((key, value))
}

/// Converts one wire value of the given kind.
fn single(kind: Kind, wire: Wire<'_>, depth: usize, ctx: &dyn Fn() -> String) -> Result<Value, String> {
    Ok(match (kind, wire) {
        // Go does not validate UTF-8 in protobuf strings; its JSON encoder then writes U+FFFD, as lossy does.
        (Kind::Str, Wire::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        // []byte is base64 (standard, padded) in JSON.
        (Kind::Bytes, Wire::Bytes(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Kind::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        // Go truncates a varint to the field's width (negative int32s arrive as 10-byte varints).
        (Kind::I32, Wire::Varint(v)) => Value::from(i64::from(v as i32)),
        (Kind::I64, Wire::Varint(v)) => Value::from(v as i64),
        (Kind::F64, Wire::Fixed64(v)) => {
            float(f64::from_bits(v)).ok_or_else(|| format!("{}: not a finite number", ctx()))?
        }
        (Kind::Message(sub), Wire::Bytes(b)) => decode_message(b, sub, depth + 1)?,
        (kind, wire) => {
            return Err(format!(
                "{}: wire type {} does not fit a {kind:?} field",
                ctx(),
                wire.type_number()
            ));
        }
    })
}

/// A float as Go's JSON encoder writes it: integral values without a fraction (`1`, not `1.0`).
fn float(x: f64) -> Option<Value> {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        Some(Value::from(x as i64))
    } else {
        serde_json::Number::from_f64(x).map(Value::Number)
    }
}

/// Whether a scalar is its type's zero value.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// {raw=1}: the embedded document, which is JSON (or, for a RawExtension, possibly a nested protobuf object).
fn raw_json(buf: &[u8], msg: &Msg, depth: usize) -> Result<Value, String> {
    let mut raw: &[u8] = &[];
    let mut r = Reader::new(buf);
    while let Some((tag, wire)) = r.next_field()? {
        if tag == 1 {
            raw = wire.bytes(msg.name)?;
        }
    }
    if raw.is_empty() {
        // Go's MarshalJSON writes null for a nil/empty Raw.
        return Ok(Value::Null);
    }
    if raw.starts_with(MAGIC) {
        if depth >= MAX_DEPTH {
            return Err(format!(
                "messages nested deeper than {MAX_DEPTH} levels (at {})",
                msg.name
            ));
        }
        return decode_envelope(raw, depth + 1);
    }
    serde_json::from_slice(raw).map_err(|e| format!("{}: embedded document is not JSON: {e}", msg.name))
}

/// Formats a `Time` (RFC 3339, whole seconds) or `MicroTime` (6 fractional digits) in UTC, as Go does.
fn format_time(seconds: i64, nanos: i64, micro: bool) -> Result<String, String> {
    // time.Unix normalises nanoseconds outside [0, 1e9) into the seconds.
    let secs = seconds
        .checked_add(nanos.div_euclid(1_000_000_000))
        .ok_or_else(|| format!("timestamp {seconds}s out of range"))?;
    let nsec = nanos.rem_euclid(1_000_000_000) as u32;
    let t = chrono::DateTime::from_timestamp(secs, nsec).ok_or_else(|| format!("timestamp {seconds}s out of range"))?;
    if !(0..=9999).contains(&chrono::Datelike::year(&t)) {
        return Err(format!("timestamp {seconds}s is outside years 0..9999"));
    }
    let fmt = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(t.format(fmt).to_string())
}

/// Go's `time.Duration.String()`: `0s`, `1.5µs`, `100ms`, `1m30s`, `1h0m0s`, `-2s`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    // `frac(v, p)` splits v / 10^p into the integer part and ".digits" without trailing zeros.
    let frac = |v: u64, prec: u32| -> (u64, String) {
        let p = 10u64.pow(prec);
        let rest = v % p;
        if rest == 0 {
            return (v / p, String::new());
        }
        let digits = format!("{rest:0width$}", width = prec as usize);
        (v / p, format!(".{}", digits.trim_end_matches('0')))
    };
    if u < 1_000_000_000 {
        let (unit, prec) = match u {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let (int, fraction) = frac(u, prec);
        return format!("{sign}{int}{fraction}{unit}");
    }
    let (secs, fraction) = frac(u, 9);
    let (s, minutes) = (secs % 60, secs / 60);
    if minutes == 0 {
        return format!("{sign}{s}{fraction}s");
    }
    let (m, hours) = (minutes % 60, minutes / 60);
    if hours == 0 {
        return format!("{sign}{m}m{s}{fraction}s");
    }
    format!("{sign}{hours}h{m}m{s}{fraction}s")
}

/// One field's value as it sits on the wire.
#[derive(Clone, Copy, Debug)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    /// Four bytes no Kubernetes field uses; read only to be skipped.
    Fixed32,
}

impl<'a> Wire<'a> {
    fn type_number(&self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) => 2,
            Wire::Fixed32 => 5,
        }
    }

    fn bytes(self, what: &str) -> Result<&'a [u8], String> {
        match self {
            Wire::Bytes(b) => Ok(b),
            other => Err(format!(
                "{what}: wire type {} where length-delimited bytes belong",
                other.type_number()
            )),
        }
    }

    fn string(self, what: &str) -> Result<String, String> {
        self.bytes(what).map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// A cursor over protobuf wire data; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("truncated field")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| "truncated fixed64")?))
    }

    /// The next (tag, value), or `None` at the end of the buffer.
    fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3)
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| format!("invalid field tag {}", key >> 3))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(self.fixed64()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            // Groups (3, 4) are not used by Kubernetes; 6 and 7 do not exist.
            w => return Err(format!("unsupported wire type {w} for field {tag}")),
        };
        Ok(Some((tag, wire)))
    }
}
