//! WIT values to and from PostgreSQL's binary formats, for the types a WIT
//! `value` can carry. Other column types ask the plugin for a cast.

use crate::bindings::deployhost::plugin::sql::Value;
use std::error::Error;
use tokio_postgres::Row;
use tokio_postgres::types::{IsNull, Kind, ToSql, Type, to_sql_checked};

/// A parameter as the plugin sent it; encoded for whatever type the
/// statement expects, or refused with a hint.
#[derive(Debug)]
pub struct Param(pub Value);

type BoxError = Box<dyn Error + Sync + Send>;

fn mismatch(what: &str, ty: &Type) -> BoxError {
    format!("a {what} parameter cannot be sent as {ty}; cast it in SQL, e.g. $1::text::{ty}").into()
}

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match &self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Boolean(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            Value::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT8 => i.to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::OID => u32::try_from(*i)?.to_sql(ty, out),
                _ => Err(mismatch("integer", ty)),
            },
            Value::Float(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                Type::FLOAT8 => f.to_sql(ty, out),
                _ => Err(mismatch("float", ty)),
            },
            Value::Text(s) if is_text(ty) => s.as_str().to_sql(ty, out),
            Value::Text(s) | Value::Json(s) if *ty == Type::JSON || *ty == Type::JSONB => {
                serde_json::from_str::<serde_json::Value>(s)?.to_sql(ty, out)
            }
            Value::Bytes(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            Value::TextArray(items) if matches!(ty.kind(), Kind::Array(inner) if is_text(inner)) => {
                items.to_sql(ty, out)
            }
            Value::Boolean(_) => Err(mismatch("boolean", ty)),
            Value::Text(_) => Err(mismatch("text", ty)),
            Value::Json(_) => Err(mismatch("json", ty)),
            Value::Bytes(_) => Err(mismatch("bytes", ty)),
            Value::TextArray(_) => Err(mismatch("text[]", ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn is_text(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN)
        || matches!(ty.kind(), Kind::Enum(_))
}

/// The bytes a value takes as handed to the plugin (numbers as 8), for
/// `limits.query_result`.
pub fn value_bytes(value: &Value) -> u64 {
    match value {
        Value::Null => 1,
        Value::Boolean(_) => 1,
        Value::Int(_) | Value::Float(_) => 8,
        Value::Text(s) | Value::Json(s) => s.len() as u64,
        Value::Bytes(b) => b.len() as u64,
        Value::TextArray(items) => items.iter().map(|s| s.len() as u64 + 1).sum(),
    }
}

/// A row as WIT values; a column of a type WIT cannot carry is an error
/// naming it, so the plugin can cast it.
pub fn row_values(row: &Row) -> Result<Vec<Value>, String> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, col)| {
            let ty = col.type_();
            let got = |e: tokio_postgres::Error| format!("column `{}`: {e}", col.name());
            Ok(match *ty {
                Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(got)?.map(Value::Boolean),
                Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(got)?.map(|v| Value::Int(v.into())),
                Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(got)?.map(|v| Value::Int(v.into())),
                Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(got)?.map(Value::Int),
                Type::OID => row.try_get::<_, Option<u32>>(i).map_err(got)?.map(|v| Value::Int(v.into())),
                Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map_err(got)?.map(|v| Value::Float(v.into())),
                Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(got)?.map(Value::Float),
                Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(got)?.map(Value::Bytes),
                Type::JSON | Type::JSONB => {
                    row.try_get::<_, Option<serde_json::Value>>(i).map_err(got)?.map(|v| Value::Json(v.to_string()))
                }
                _ if is_text(ty) => row.try_get::<_, Option<String>>(i).map_err(got)?.map(Value::Text),
                _ if matches!(ty.kind(), Kind::Array(inner) if is_text(inner)) => row
                    .try_get::<_, Option<Vec<Option<String>>>>(i)
                    .map_err(got)?
                    .map(|items| Value::TextArray(items.into_iter().map(Option::unwrap_or_default).collect())),
                _ => {
                    return Err(format!(
                        "column `{}` has type {ty}, which has no plugin value; select it as {}::text",
                        col.name(),
                        col.name()
                    ));
                }
            }
            .unwrap_or(Value::Null))
        })
        .collect()
}
