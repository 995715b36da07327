//! GGUF metadata values and their typed accessors.

/// One metadata value. Arrays may nest (up to [`MAX_ARRAY_DEPTH`](super::MAX_ARRAY_DEPTH)).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// GGUF type 0.
    U8(u8),
    /// GGUF type 1.
    I8(i8),
    /// GGUF type 2.
    U16(u16),
    /// GGUF type 3.
    I16(i16),
    /// GGUF type 4.
    U32(u32),
    /// GGUF type 5.
    I32(i32),
    /// GGUF type 10.
    U64(u64),
    /// GGUF type 11.
    I64(i64),
    /// GGUF type 6.
    F32(f32),
    /// GGUF type 12.
    F64(f64),
    /// GGUF type 7.
    Bool(bool),
    /// GGUF type 8 (UTF-8; invalid bytes are replaced by U+FFFD).
    String(String),
    /// GGUF type 9: elements all of one type.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// GGUF's name of the value's type (`u32`, `string`, `array`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "u8",
            GgufValue::I8(_) => "i8",
            GgufValue::U16(_) => "u16",
            GgufValue::I16(_) => "i16",
            GgufValue::U32(_) => "u32",
            GgufValue::I32(_) => "i32",
            GgufValue::U64(_) => "u64",
            GgufValue::I64(_) => "i64",
            GgufValue::F32(_) => "f32",
            GgufValue::F64(_) => "f64",
            GgufValue::Bool(_) => "bool",
            GgufValue::String(_) => "string",
            GgufValue::Array(_) => "array",
        }
    }

    /// An integer of any width as `i128` (lossless), `None` for other types.
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            GgufValue::U8(v) => v.into(),
            GgufValue::I8(v) => v.into(),
            GgufValue::U16(v) => v.into(),
            GgufValue::I16(v) => v.into(),
            GgufValue::U32(v) => v.into(),
            GgufValue::I32(v) => v.into(),
            GgufValue::U64(v) => v.into(),
            GgufValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// An integer of any width that fits `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// An integer of any width that fits `u32`.
    pub fn as_u32(&self) -> Option<u32> {
        self.as_i128().and_then(|v| u32::try_from(v).ok())
    }

    /// An integer of any width that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// A float (`f32` or `f64`) or an integer, as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    /// A float or an integer, as `f32` (an `f32` value is returned unchanged).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            GgufValue::F32(v) => Some(v),
            _ => self.as_f64().map(|v| v as f32),
        }
    }

    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// A string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array's elements.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value as JSON (floats widened to `f64` exactly), for inspection and tests.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            GgufValue::F32(v) => {
                serde_json::Number::from_f64((*v).into()).map_or(Value::Null, Value::Number)
            }
            GgufValue::F64(v) => {
                serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number)
            }
            GgufValue::Bool(v) => Value::Bool(*v),
            GgufValue::String(s) => Value::String(s.clone()),
            GgufValue::Array(a) => Value::Array(a.iter().map(GgufValue::to_json).collect()),
            GgufValue::U64(v) => Value::from(*v),
            other => other.as_i64().map_or(Value::Null, Value::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conversions() {
        assert_eq!(GgufValue::I8(-1).as_u32(), None);
        assert_eq!(GgufValue::I8(-1).as_i64(), Some(-1));
        assert_eq!(GgufValue::U64(1 << 40).as_u32(), None);
        assert_eq!(GgufValue::U64(1 << 40).as_u64(), Some(1 << 40));
        assert_eq!(GgufValue::U16(3).as_f32(), Some(3.0));
        assert_eq!(GgufValue::F64(0.1).as_f32(), Some(0.1f32));
        assert_eq!(GgufValue::F32(0.1).as_f64(), Some(f64::from(0.1f32)));
        assert_eq!(GgufValue::Bool(true).as_u32(), None);
        assert_eq!(GgufValue::String("x".into()).as_str(), Some("x"));
        assert_eq!(GgufValue::U8(1).as_str(), None);
        assert_eq!(GgufValue::Array(vec![]).as_array(), Some(&[][..]));
        assert_eq!(GgufValue::I16(-2).type_name(), "i16");
    }

    #[test]
    fn to_json() {
        let v = GgufValue::Array(vec![
            GgufValue::F32(1e-5),
            GgufValue::I32(-3),
            GgufValue::U64(u64::MAX),
            GgufValue::Bool(true),
            GgufValue::String("s".into()),
            GgufValue::F64(f64::NAN),
        ]);
        let want = json!([9.999999747378752e-06, -3, u64::MAX, true, "s", null]);
        assert_eq!(v.to_json(), want);
    }
}
