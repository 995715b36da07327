//! GGUF v2/v3 parsing: header, typed metadata, tensor infos and checked access to tensor data.
//!
//! Layout (little-endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata
//! count, the metadata key/value pairs, the tensor infos (name, `u32` n_dims, `u64` ne[..],
//! `u32` ggml type, `u64` offset), then padding to `general.alignment` (default 32) and the
//! tensor data, each tensor at `data_start + offset`.
//!
//! Hardening: every count and length is capped by a named constant *and* by the bytes left in
//! the file before anything is allocated (a lying count cannot make us reserve gigabytes), every
//! offset and size uses checked arithmetic and is compared with the file length, and all slicing
//! goes through `get`, so a truncated or corrupted file is an [`Error::Format`], never a panic.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::quants::{self, GgmlType};
use crate::error::{Error, Result};

/// Longest string (key or value) accepted, in bytes. The largest real strings are chat
/// templates and embedded `tokenizer.huggingface.json` files (a few MB).
pub const MAX_STRING_LEN: u64 = 64 << 20;
/// Most elements in one metadata array (vocabularies and merge lists hold 10^4..10^6).
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Deepest nesting of arrays inside arrays (an array of scalars has depth 1).
pub const MAX_ARRAY_DEPTH: usize = 4;
/// Most metadata key/value pairs.
pub const MAX_METADATA_KV: u64 = 1 << 16;
/// Most tensors.
pub const MAX_TENSORS: u64 = 1 << 20;
/// Most dimensions of one tensor (`GGML_MAX_DIMS`).
pub const MAX_N_DIMS: u32 = 4;
/// Largest `general.alignment` accepted.
const MAX_ALIGNMENT: u64 = 1 << 20;
/// `general.alignment` when the key is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
const MAGIC: &[u8; 4] = b"GGUF";

/// One metadata value. Arrays may nest (up to [`MAX_ARRAY_DEPTH`]).
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
            GgufValue::F32(v) => serde_json::Number::from_f64((*v).into()).map_or(Value::Null, Value::Number),
            GgufValue::F64(v) => serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number),
            GgufValue::Bool(v) => Value::Bool(*v),
            GgufValue::String(s) => Value::String(s.clone()),
            GgufValue::Array(a) => Value::Array(a.iter().map(GgufValue::to_json).collect()),
            GgufValue::U64(v) => Value::from(*v),
            other => other.as_i64().map_or(Value::Null, Value::from),
        }
    }
}

/// Description of one tensor, in GGUF's own conventions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// The GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in GGUF `ne` order: `dims[0]` is the fastest-varying (the row length; for a
    /// linear layer `[in_features, out_features]`).
    pub dims: Vec<usize>,
    /// The storage type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section (a multiple of the alignment).
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: usize,
}

impl GgufTensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    /// The dimensions outermost first (`dims` reversed): the row-major shape of the data,
    /// which is the Hugging Face shape (`[out, in]` for a linear weight).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

enum Backing {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file: metadata, tensor infos and (memory-mapped or owned) tensor data.
pub struct GgufFile {
    path: PathBuf,
    data: Backing,
    version: u32,
    alignment: u64,
    data_start: usize,
    metadata: Vec<(String, GgufValue)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Memory-maps and parses the GGUF file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Err(Error::format(path, "empty file, not GGUF"));
        }
        // SAFETY: the map is read-only and lives as long as `GgufFile`. Like every mmap-based
        // reader we rely on the file not being truncated or rewritten while it is open;
        // parsing itself never trusts the contents.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path.to_path_buf(), Backing::Mmap(map))
    }

    /// Parses a GGUF file held in memory; `name` is used in error messages.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: impl Into<Vec<u8>>) -> Result<Self> {
        Self::parse(name.into(), Backing::Owned(bytes.into()))
    }

    fn parse(path: PathBuf, data: Backing) -> Result<Self> {
        let header = parse_header(&path, data.bytes())?;
        Ok(GgufFile {
            path,
            data,
            version: header.version,
            alignment: header.alignment,
            data_start: header.data_start,
            metadata_index: index(header.metadata.iter().map(|(k, _)| k)),
            metadata: header.metadata,
            tensor_index: index(header.tensors.iter().map(|t| &t.name)),
            tensors: header.tensors,
        })
    }

    /// The path (or name) the file was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a string, used as `source_name` in errors.
    pub fn source_name(&self) -> String {
        self.path.display().to_string()
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of every tensor offset.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    /// A metadata value, or `None` if the key is absent.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn missing(&self, key: &str) -> Error {
        Error::MissingField {
            source_name: self.source_name(),
            field: key.to_owned(),
        }
    }

    fn typed<'a, T>(&'a self, key: &str, f: impl FnOnce(&'a GgufValue) -> Option<T>) -> Result<T> {
        self.get(key).and_then(f).ok_or_else(|| self.missing(key))
    }

    /// An integer of any width that fits `u32`; [`Error::MissingField`] if absent or not.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.typed(key, GgufValue::as_u32)
    }

    /// An integer of any width that fits `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.typed(key, GgufValue::as_u64)
    }

    /// An integer of any width that fits `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.typed(key, |v| v.as_u64().and_then(|v| usize::try_from(v).ok()))
    }

    /// An integer of any width that fits `i64`.
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.typed(key, GgufValue::as_i64)
    }

    /// A float (or integer) as `f32`.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.typed(key, GgufValue::as_f32)
    }

    /// A float (or integer) as `f64`.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.typed(key, GgufValue::as_f64)
    }

    /// A boolean.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.typed(key, GgufValue::as_bool)
    }

    /// A string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.typed(key, GgufValue::as_str)
    }

    /// An array (of any element type).
    pub fn get_array(&self, key: &str) -> Result<&[GgufValue]> {
        self.typed(key, GgufValue::as_array)
    }

    /// An array whose elements are all strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.typed(key, |v| v.as_array()?.iter().map(GgufValue::as_str).collect())
    }

    /// An array whose elements are all integers that fit `i64`.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        self.typed(key, |v| v.as_array()?.iter().map(GgufValue::as_i64).collect())
    }

    /// An array whose elements are all numbers, as `f32`.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.typed(key, |v| v.as_array()?.iter().map(GgufValue::as_f32).collect())
    }

    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// The Jinja chat template (`tokenizer.chat_template`), if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.get("tokenizer.chat_template").and_then(GgufValue::as_str)
    }

    /// Builds the Hugging Face tokenizer described by the metadata; see
    /// [`tokenizer_from_gguf`](super::tokenizer_from_gguf).
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        super::tokenizer_from_gguf(self)
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// A tensor's info, or `None` if absent.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    fn require(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.tensor_info(name).ok_or_else(|| Error::MissingTensor {
            source_name: self.source_name(),
            name: name.to_owned(),
        })
    }

    /// The raw stored bytes of a tensor (GGML blocks for quantized types).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.require(name)?;
        let bytes = usize::try_from(info.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_start))
            .and_then(|start| Some(start..start.checked_add(info.n_bytes)?))
            .and_then(|range| self.data.bytes().get(range));
        bytes.ok_or_else(|| {
            Error::format(&self.path, format!("tensor `{name}` data lies outside the file"))
        })
    }

    /// A tensor's values as `f32` (dequantized), row-major in `ne` order: `dims[0]` is the
    /// last, fastest axis, i.e. the layout of [`GgufTensorInfo::shape`].
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.require(name)?;
        let bytes = self.tensor_bytes(name)?;
        quants::dequantize(info.ggml_type, bytes, info.numel()).map_err(|e| match e {
            Error::Unsupported { .. } => Error::UnsupportedDtype {
                source_name: self.source_name(),
                name: name.to_owned(),
                dtype: info.ggml_type.name().to_owned(),
            },
            other => other,
        })
    }
}

fn index<'a>(names: impl Iterator<Item = &'a String>) -> HashMap<String, usize> {
    names.enumerate().map(|(i, n)| (n.clone(), i)).collect()
}

struct Header {
    version: u32,
    alignment: u64,
    data_start: usize,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensorInfo>,
}

/// A bounds-checked little-endian cursor; every read that would run past the end is an error.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::format(self.path, reason.into())
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.err(format!(
                "truncated GGUF: {what} needs {n} bytes at offset {}, {} left",
                self.pos,
                self.remaining()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A `u64` count, capped by `cap` and by the bytes left (each item needs `min_size`).
    fn count(&mut self, what: &str, cap: u64, min_size: usize) -> Result<usize> {
        let n = self.u64(what)?;
        if n > cap {
            return Err(self.err(format!("{what} {n} exceeds the limit {cap}")));
        }
        let n = usize::try_from(n).map_err(|_| self.err(format!("{what} {n} overflows usize")))?;
        match n.checked_mul(min_size) {
            Some(need) if need <= self.remaining() => Ok(n),
            _ => Err(self.err(format!(
                "{what} {n} cannot fit in the {} bytes left at offset {}",
                self.remaining(),
                self.pos
            ))),
        }
    }

    fn raw_string(&mut self, what: &str) -> Result<&'a [u8]> {
        let len = self.count(what, MAX_STRING_LEN, 1)?;
        self.take(len, what)
    }

    fn key(&mut self) -> Result<String> {
        let at = self.pos;
        let raw = self.raw_string("metadata key")?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| self.err(format!("metadata key at offset {at} is not UTF-8")))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let raw = self.raw_string(what)?;
        Ok(match String::from_utf8(raw.to_vec()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), "GGUF {what} is not valid UTF-8");
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        })
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<GgufValue> {
        const V: &str = "metadata value";
        Ok(match ty {
            0 => GgufValue::U8(u8::from_le_bytes(self.array(V)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array(V)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(V)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(V)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(V)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(V)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(V)?)),
            7 => match self.array::<1>(V)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.err(format!("invalid bool byte {b}"))),
            },
            8 => GgufValue::String(self.string("string value")?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
                let elem = self.u32("array element type")?;
                let min_size = value_min_size(elem)
                    .ok_or_else(|| self.err(format!("unknown array element type {elem}")))?;
                let n = self.count("array length", MAX_ARRAY_LEN, min_size)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.array(V)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(V)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(V)?)),
            other => return Err(self.err(format!("unknown metadata value type {other}"))),
        })
    }
}

/// Fewest bytes one value of GGUF type `ty` occupies, or `None` for an unknown type.
fn value_min_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 | 8 => 8,
        9 => 12,
        _ => return None,
    })
}

/// Prepends `context` to the reason of a [`Error::Format`].
fn with_context(e: Error, context: impl FnOnce() -> String) -> Error {
    match e {
        Error::Format { path, reason } => Error::Format {
            path,
            reason: format!("{}: {reason}", context()),
        },
        other => other,
    }
}

fn parse_header(path: &Path, buf: &[u8]) -> Result<Header> {
    let mut r = Reader { buf, pos: 0, path };
    let magic = r.array::<4>("magic")?;
    if &magic != MAGIC {
        return Err(r.err(format!("not a GGUF file (magic {magic:02x?})")));
    }
    let version = r.u32("version")?;
    match version {
        2 | 3 => {}
        1 => return Err(r.err("GGUF version 1 is not supported (only 2 and 3)")),
        v if matches!(v.swap_bytes(), 2 | 3) => {
            return Err(r.err("big-endian GGUF is not supported"));
        }
        v => return Err(r.err(format!("unsupported GGUF version {v}"))),
    }
    // A tensor info is at least 24 bytes (empty name, 0 dims), a key/value pair at least 13.
    let n_tensors = r.count("tensor count", MAX_TENSORS, 24)?;
    let n_kv = r.count("metadata count", MAX_METADATA_KV, 13)?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut seen = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = r.key().map_err(|e| with_context(e, || format!("metadata #{i}")))?;
        let value = r
            .u32("value type")
            .and_then(|ty| r.value(ty, 0))
            .map_err(|e| with_context(e, || format!("metadata `{key}`")))?;
        if seen.insert(key.clone(), i).is_some() {
            return Err(r.err(format!("duplicate metadata key `{key}`")));
        }
        metadata.push((key, value));
    }

    let alignment = match seen.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(&i) => match metadata[i].1.as_u64() {
            Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => a,
            _ => {
                return Err(r.err(format!(
                    "general.alignment {:?} is not a power of two <= {MAX_ALIGNMENT}",
                    metadata[i].1
                )));
            }
        },
    };

    let mut tensors = Vec::with_capacity(n_tensors);
    let mut names = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let info = tensor_info(&mut r, alignment)
            .map_err(|e| with_context(e, || format!("tensor info #{i}")))?;
        if names.insert(info.name.clone(), i).is_some() {
            return Err(r.err(format!("duplicate tensor `{}`", info.name)));
        }
        tensors.push(info);
    }

    // The data section starts at the next multiple of the alignment.
    let align = alignment as usize; // <= MAX_ALIGNMENT, fits
    let data_start = r
        .pos
        .checked_next_multiple_of(align)
        .ok_or_else(|| r.err("data section offset overflows"))?;
    for t in &tensors {
        let end = usize::try_from(t.offset)
            .ok()
            .and_then(|o| o.checked_add(data_start))
            .and_then(|s| s.checked_add(t.n_bytes));
        match end {
            Some(end) if end <= buf.len() => {}
            _ => {
                return Err(r.err(format!(
                    "tensor `{}` data (offset {} + {} bytes after data start {data_start}) lies \
                     outside the file ({} bytes)",
                    t.name,
                    t.offset,
                    t.n_bytes,
                    buf.len()
                )));
            }
        }
    }
    Ok(Header {
        version,
        alignment,
        data_start,
        metadata,
        tensors,
    })
}

fn tensor_info(r: &mut Reader<'_>, alignment: u64) -> Result<GgufTensorInfo> {
    let name = r.string("tensor name")?;
    let n_dims = r.u32("n_dims")?;
    if n_dims > MAX_N_DIMS {
        return Err(r.err(format!("tensor `{name}`: {n_dims} dimensions (at most {MAX_N_DIMS})")));
    }
    let mut raw_dims = [0u64; MAX_N_DIMS as usize];
    for d in raw_dims.iter_mut().take(n_dims as usize) {
        *d = r.u64("dimension")?;
    }
    let ty = r.u32("ggml type")?;
    let offset = r.u64("tensor offset")?;

    let path = r.path;
    let ctx = |reason: String| Error::format(path, format!("tensor `{name}`: {reason}"));
    // ggml stores ne as int64_t.
    let dims = raw_dims[..n_dims as usize]
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| i64::try_from(d).is_ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| ctx(format!("dimensions {:?} are too large", &raw_dims[..n_dims as usize])))?;
    let ggml_type = GgmlType::from_u32(ty).ok_or_else(|| Error::UnsupportedDtype {
        source_name: path.display().to_string(),
        name: name.clone(),
        dtype: format!("unknown ggml type id {ty}"),
    })?;
    let numel = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| i64::try_from(n).is_ok())
        .ok_or_else(|| ctx(format!("element count of {dims:?} overflows")))?;
    let row = dims.first().copied().unwrap_or(1);
    if row % ggml_type.block_size() != 0 {
        return Err(ctx(format!(
            "row length {row} is not a multiple of the {} block size {}",
            ggml_type.name(),
            ggml_type.block_size()
        )));
    }
    let n_bytes = (numel / ggml_type.block_size())
        .checked_mul(ggml_type.type_size())
        .ok_or_else(|| ctx(format!("byte size of {dims:?} overflows")))?;
    if offset % alignment != 0 {
        return Err(ctx(format!("offset {offset} is not a multiple of the alignment {alignment}")));
    }
    Ok(GgufTensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_bytes,
    })
}
