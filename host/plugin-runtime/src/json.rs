//! JSON for plugin calls, in the WIT's own terms: a record is an object keyed by its WIT
//! field names (`machine-type`), an enum the string of its case (`running`), a variant
//! `{"<case>": payload}` (or `"<case>"` when the case carries nothing), an option a value
//! or `null`, a result `{"ok": …}` or `{"error": …}`, tuples and lists arrays, flags an
//! array of names. The conversion is driven by the component's own types at call time,
//! so it cannot drift from the WIT the plugin was built against.

use serde_json::{Map, Number, Value};
use wasmtime::component::{Type, Val};

/// Converts `value` to a component value of type `ty`; `at` names where it is, for the
/// error (`spec.machine-type`).
pub fn to_val(value: &Value, ty: &Type, at: &str) -> Result<Val, String> {
    let wrong = |expected: &str| {
        Err(format!(
            "{at}: expected {expected}, found {}",
            describe_json(value)
        ))
    };
    Ok(match ty {
        Type::Bool => match value {
            Value::Bool(b) => Val::Bool(*b),
            _ => return wrong("true or false"),
        },
        Type::S8 => Val::S8(integer(value, at)?),
        Type::U8 => Val::U8(integer(value, at)?),
        Type::S16 => Val::S16(integer(value, at)?),
        Type::U16 => Val::U16(integer(value, at)?),
        Type::S32 => Val::S32(integer(value, at)?),
        Type::U32 => Val::U32(integer(value, at)?),
        Type::S64 => Val::S64(integer(value, at)?),
        Type::U64 => Val::U64(integer(value, at)?),
        Type::Float32 => match value.as_f64() {
            Some(f) => Val::Float32(f as f32),
            None => return wrong("a number"),
        },
        Type::Float64 => match value.as_f64() {
            Some(f) => Val::Float64(f),
            None => return wrong("a number"),
        },
        Type::Char => match value.as_str().map(|s| {
            let mut chars = s.chars();
            (chars.next(), chars.next())
        }) {
            Some((Some(c), None)) => Val::Char(c),
            _ => return wrong("a one-character string"),
        },
        Type::String => match value {
            Value::String(s) => Val::String(s.clone()),
            _ => return wrong("a string"),
        },
        Type::List(list) => match value {
            Value::Array(items) => {
                let element = list.ty();
                Val::List(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| to_val(item, &element, &format!("{at}[{i}]")))
                        .collect::<Result<_, _>>()?,
                )
            }
            _ => return wrong("an array"),
        },
        Type::Tuple(tuple) => match value {
            Value::Array(items) if items.len() == tuple.types().len() => Val::Tuple(
                items
                    .iter()
                    .zip(tuple.types())
                    .enumerate()
                    .map(|(i, (item, ty))| to_val(item, &ty, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return wrong(&format!("an array of {} items", tuple.types().len())),
        },
        Type::Record(record) => {
            let Value::Object(object) = value else {
                return wrong("an object");
            };
            let mut fields = Vec::with_capacity(record.fields().len());
            for field in record.fields() {
                let inner = format!("{at}.{}", field.name);
                let given = object.get(field.name);
                let val = match (given, &field.ty) {
                    // An absent optional field is `none`.
                    (None, Type::Option(_)) => Val::Option(None),
                    (None, _) => return Err(format!("{inner}: missing")),
                    (Some(v), ty) => to_val(v, ty, &inner)?,
                };
                fields.push((field.name.to_string(), val));
            }
            if let Some(unknown) = object
                .keys()
                .find(|k| !record.fields().any(|f| f.name == k.as_str()))
            {
                let known: Vec<&str> = record.fields().map(|f| f.name).collect();
                return Err(format!(
                    "{at}: unknown field {unknown:?}; the fields are {}",
                    known.join(", ")
                ));
            }
            Val::Record(fields)
        }
        Type::Variant(variant) => {
            let (case, payload) = match value {
                Value::String(name) => (name.as_str(), None),
                Value::Object(object) if object.len() == 1 => {
                    let (name, payload) = object.iter().next().expect("one entry");
                    (name.as_str(), Some(payload))
                }
                _ => return wrong("a case name, or an object with one case"),
            };
            let Some(found) = variant.cases().find(|c| c.name == case) else {
                let names: Vec<&str> = variant.cases().map(|c| c.name).collect();
                return Err(format!(
                    "{at}: no case {case:?}; the cases are {}",
                    names.join(", ")
                ));
            };
            let inner = format!("{at}.{case}");
            let payload = match (&found.ty, payload) {
                (None, None | Some(Value::Null)) => None,
                (None, Some(_)) => return Err(format!("{inner}: this case carries nothing")),
                (Some(ty), Some(v)) => Some(Box::new(to_val(v, ty, &inner)?)),
                (Some(_), None) => return Err(format!("{inner}: this case carries a value")),
            };
            Val::Variant(case.to_string(), payload)
        }
        Type::Enum(enumeration) => match value {
            Value::String(name) if enumeration.names().any(|n| n == name) => {
                Val::Enum(name.clone())
            }
            _ => {
                let names: Vec<&str> = enumeration.names().collect();
                return wrong(&format!("one of {}", names.join(", ")));
            }
        },
        Type::Option(option) => match value {
            Value::Null => Val::Option(None),
            v => Val::Option(Some(Box::new(to_val(v, &option.ty(), at)?))),
        },
        Type::Result(result) => {
            let Value::Object(object) = value else {
                return wrong("{\"ok\": …} or {\"error\": …}");
            };
            let side = |ty: Option<Type>, v: &Value, inner: String| match ty {
                Some(ty) => to_val(v, &ty, &inner).map(|v| Some(Box::new(v))),
                None => Ok(None),
            };
            match (object.get("ok"), object.get("error"), object.len()) {
                (Some(v), None, 1) => Val::Result(Ok(side(result.ok(), v, format!("{at}.ok"))?)),
                (None, Some(v), 1) => {
                    Val::Result(Err(side(result.err(), v, format!("{at}.error"))?))
                }
                _ => return wrong("{\"ok\": …} or {\"error\": …}"),
            }
        }
        Type::Flags(flags) => match value {
            Value::Array(items) => {
                let mut set = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(name) if flags.names().any(|n| n == name) => {
                            set.push(name.to_string())
                        }
                        _ => {
                            let names: Vec<&str> = flags.names().collect();
                            return wrong(&format!("an array of {}", names.join(", ")));
                        }
                    }
                }
                Val::Flags(set)
            }
            _ => return wrong("an array of flag names"),
        },
        other => return Err(format!("{at}: {other:?} cannot be given as JSON")),
    })
}

fn integer<T: TryFrom<i128>>(value: &Value, at: &str) -> Result<T, String> {
    let n: Option<i128> = match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    };
    n.and_then(|n| T::try_from(n).ok()).ok_or_else(|| {
        format!(
            "{at}: expected an integer in range, found {}",
            describe_json(value)
        )
    })
}

fn describe_json(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

/// A component value as JSON, in the same terms [`to_val`] reads.
pub fn from_val(val: &Val) -> Value {
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => Value::from(*n),
        Val::U8(n) => Value::from(*n),
        Val::S16(n) => Value::from(*n),
        Val::U16(n) => Value::from(*n),
        Val::S32(n) => Value::from(*n),
        Val::U32(n) => Value::from(*n),
        Val::S64(n) => Value::from(*n),
        Val::U64(n) => Value::from(*n),
        Val::Float32(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        Val::Float64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(from_val).collect())
        }
        Val::Map(pairs) => Value::Array(
            pairs
                .iter()
                .map(|(k, v)| Value::Array(vec![from_val(k), from_val(v)]))
                .collect(),
        ),
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), from_val(v)))
                .collect::<Map<_, _>>(),
        ),
        Val::Variant(case, None) => Value::String(case.clone()),
        Val::Variant(case, Some(payload)) => {
            let mut object = Map::new();
            object.insert(case.clone(), from_val(payload));
            Value::Object(object)
        }
        Val::Enum(case) => Value::String(case.clone()),
        Val::Option(None) => Value::Null,
        Val::Option(Some(v)) => from_val(v),
        Val::Result(result) => {
            let (side, v) = match result {
                Ok(v) => ("ok", v),
                Err(v) => ("error", v),
            };
            let mut object = Map::new();
            object.insert(side.to_string(), v.as_deref().map_or(Value::Null, from_val));
            Value::Object(object)
        }
        Val::Flags(names) => Value::Array(names.iter().cloned().map(Value::String).collect()),
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => {
            Value::String("<handle>".to_string())
        }
    }
}
