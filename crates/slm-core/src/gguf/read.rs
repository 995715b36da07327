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
use std::sync::Arc;

use super::GgmlType;
use super::value::GgufValue;
use crate::error::{Error, Result};
use crate::weights::SharedBytes;

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

impl AsRef<[u8]> for Backing {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

/// A parsed GGUF file: metadata, tensor infos and (memory-mapped or owned) tensor data.
pub struct GgufFile {
    path: PathBuf,
    data: Arc<Backing>,
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
            data: Arc::new(data),
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
        self.typed(key, |v| {
            v.as_array()?.iter().map(GgufValue::as_str).collect()
        })
    }

    /// An array whose elements are all integers that fit `i64`.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        self.typed(key, |v| {
            v.as_array()?.iter().map(GgufValue::as_i64).collect()
        })
    }

    /// An array whose elements are all numbers, as `f32`.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.typed(key, |v| {
            v.as_array()?.iter().map(GgufValue::as_f32).collect()
        })
    }

    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// The Jinja chat template (`tokenizer.chat_template`), if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.get("tokenizer.chat_template")
            .and_then(GgufValue::as_str)
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
        let range = self.tensor_range(name)?;
        Ok(&self.data.bytes()[range])
    }

    /// [`GgufFile::tensor_bytes`] as bytes that share the file's memory map and keep it alive
    /// (for models that compute on the stored blocks).
    pub fn tensor_shared(&self, name: &str) -> Result<SharedBytes> {
        let range = self.tensor_range(name)?;
        let whole = match *self.data {
            Backing::Mmap(_) => SharedBytes::mapped(self.data.clone()),
            Backing::Owned(_) => SharedBytes::new(self.data.clone()),
        };
        Ok(whole.slice(range).expect("tensor_range checked the bounds"))
    }

    fn tensor_range(&self, name: &str) -> Result<std::ops::Range<usize>> {
        let info = self.require(name)?;
        let range = usize::try_from(info.offset)
            .ok()
            .and_then(|o| o.checked_add(self.data_start))
            .and_then(|start| Some(start..start.checked_add(info.n_bytes)?))
            .filter(|range| range.end <= self.data.bytes().len());
        range.ok_or_else(|| {
            Error::format(
                &self.path,
                format!("tensor `{name}` data lies outside the file"),
            )
        })
    }

    /// A tensor's values as `f32` (dequantized), row-major in `ne` order: `dims[0]` is the
    /// last, fastest axis, i.e. the layout of [`GgufTensorInfo::shape`].
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.require(name)?;
        let bytes = self.tensor_bytes(name)?;
        slm_ggml::dequantize(info.ggml_type, bytes, info.numel()).map_err(|e| match e {
            slm_ggml::Error::Unsupported { .. } => Error::UnsupportedDtype {
                source_name: self.source_name(),
                name: name.to_owned(),
                dtype: info.ggml_type.name().to_owned(),
            },
            other => other.into(),
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
        let key = r
            .key()
            .map_err(|e| with_context(e, || format!("metadata #{i}")))?;
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

/// The longest tensor name ggml accepts (`GGML_MAX_NAME` is 64 bytes with the final NUL);
/// llama.cpp refuses longer ones too.
pub const MAX_TENSOR_NAME_LEN: usize = 63;

fn tensor_info(r: &mut Reader<'_>, alignment: u64) -> Result<GgufTensorInfo> {
    let name = r.string("tensor name")?;
    if name.len() > MAX_TENSOR_NAME_LEN {
        return Err(r.err(format!(
            "a tensor name of {} bytes (ggml allows at most {MAX_TENSOR_NAME_LEN}), starting {:?}",
            name.len(),
            name.chars().take(32).collect::<String>()
        )));
    }
    let n_dims = r.u32("n_dims")?;
    if n_dims > MAX_N_DIMS {
        return Err(r.err(format!(
            "tensor `{name}`: {n_dims} dimensions (at most {MAX_N_DIMS})"
        )));
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
        .map(|&d| {
            usize::try_from(d)
                .ok()
                .filter(|&d| i64::try_from(d).is_ok())
        })
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| {
            ctx(format!(
                "dimensions {:?} are too large",
                &raw_dims[..n_dims as usize]
            ))
        })?;
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
        return Err(ctx(format!(
            "offset {offset} is not a multiple of the alignment {alignment}"
        )));
    }
    Ok(GgufTensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::test_support::{RawTensor, fixture, write_gguf};

    fn tiny(kind: &str) -> GgufFile {
        GgufFile::open(fixture(&format!("quant/gguf/llama-tiny.{kind}.gguf"))).unwrap()
    }

    fn md(pairs: Vec<(&str, GgufValue)>) -> Vec<(String, GgufValue)> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Metadata and tensor table of both llama-tiny GGUFs equal what gguf-py listed.
    #[test]
    fn llama_tiny_matches_gguf_json() {
        let listing: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("quant/gguf/gguf.json")).unwrap())
                .unwrap();
        for kind in ["f32", "q8_0"] {
            let file = tiny(kind);
            let spec = &listing["files"][kind];
            assert_eq!(file.version(), 3);
            let want = spec["metadata"].as_object().unwrap();
            assert_eq!(file.metadata().len(), want.len(), "{kind}: metadata count");
            for (key, want) in want {
                let got = file
                    .get(key)
                    .unwrap_or_else(|| panic!("{kind}: {key} missing"));
                match want.get("len") {
                    Some(len) => {
                        let items = got.as_array().unwrap();
                        assert_eq!(items.len() as u64, len.as_u64().unwrap(), "{key}");
                        for (g, w) in items.iter().zip(want["first"].as_array().unwrap()) {
                            assert_eq!(&g.to_json(), w, "{kind}: {key}");
                        }
                    }
                    None => assert_eq!(&got.to_json(), want, "{kind}: {key}"),
                }
            }
            let tensors = spec["tensors"].as_array().unwrap();
            assert_eq!(file.tensors().len(), tensors.len());
            for (t, w) in file.tensors().iter().zip(tensors) {
                assert_eq!(t.name, w["name"].as_str().unwrap());
                assert_eq!(t.ggml_type.name(), w["type"].as_str().unwrap());
                let ne: Vec<usize> = serde_json::from_value(w["ne"].clone()).unwrap();
                assert_eq!(t.dims, ne, "{}", t.name);
                assert_eq!(t.n_bytes as u64, w["n_bytes"].as_u64().unwrap());
                let abs = file.data_start() as u64 + t.offset;
                assert_eq!(abs, w["data_offset"].as_u64().unwrap(), "{}", t.name);
                assert_eq!(file.tensor_bytes(&t.name).unwrap().len(), t.n_bytes);
            }
        }
    }

    #[test]
    fn typed_getters() {
        let file = tiny("f32");
        assert_eq!(file.architecture().unwrap(), "llama");
        assert_eq!(file.get_u32("llama.block_count").unwrap(), 2);
        assert_eq!(file.get_u64("llama.embedding_length").unwrap(), 64);
        assert_eq!(file.get_usize("llama.vocab_size").unwrap(), 768);
        assert_eq!(file.get_i64("tokenizer.ggml.bos_token_id").unwrap(), 0);
        assert_eq!(
            file.get_f32("llama.attention.layer_norm_rms_epsilon")
                .unwrap(),
            1e-5
        );
        assert_eq!(file.get_f64("llama.rope.freq_base").unwrap(), 10000.0);
        assert!(file.get_bool("tokenizer.ggml.add_bos_token").unwrap());
        assert_eq!(
            file.get_str_array("tokenizer.ggml.tokens").unwrap()[3],
            "<|eot_id|>"
        );
        assert_eq!(
            file.get_i64_array("tokenizer.ggml.token_type").unwrap()[..5],
            [3, 3, 3, 3, 1]
        );
        assert_eq!(file.get_array("tokenizer.ggml.merges").unwrap().len(), 508);
        assert_eq!(file.alignment(), 32);
        assert_eq!(file.chat_template(), None);
        for err in [
            file.get_u32("no.such.key").map(drop),
            file.get_u32("general.name").map(drop),
            file.get_str("llama.block_count").map(drop),
            file.get_bool("llama.block_count").map(drop),
            file.get_str_array("tokenizer.ggml.token_type").map(drop),
        ] {
            assert!(matches!(err, Err(Error::MissingField { .. })), "{err:?}");
        }
        assert!(matches!(
            file.tensor_bytes("nope"),
            Err(Error::MissingTensor { .. })
        ));
        assert!(matches!(
            file.tensor_f32("nope"),
            Err(Error::MissingTensor { .. })
        ));
    }

    #[test]
    fn integer_getters_accept_every_width() {
        let ints = [
            GgufValue::U8(7),
            GgufValue::I8(7),
            GgufValue::U16(7),
            GgufValue::I16(7),
            GgufValue::U32(7),
            GgufValue::I32(7),
            GgufValue::U64(7),
            GgufValue::I64(7),
        ];
        let meta: Vec<_> = ints
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("k{i}"), v.clone()))
            .collect();
        let file = GgufFile::from_bytes("ints", write_gguf(&meta, &[])).unwrap();
        for i in 0..ints.len() {
            assert_eq!(file.get_u32(&format!("k{i}")).unwrap(), 7);
            assert_eq!(file.get_i64(&format!("k{i}")).unwrap(), 7);
            assert_eq!(file.get_f32(&format!("k{i}")).unwrap(), 7.0);
        }
        let neg = md(vec![
            ("n", GgufValue::I32(-1)),
            ("big", GgufValue::U64(u64::MAX)),
        ]);
        let file = GgufFile::from_bytes("neg", write_gguf(&neg, &[])).unwrap();
        assert!(file.get_u32("n").is_err());
        assert_eq!(file.get_i64("n").unwrap(), -1);
        assert!(file.get_u32("big").is_err() && file.get_i64("big").is_err());
        assert_eq!(file.get_u64("big").unwrap(), u64::MAX);
    }

    /// The f32 GGUF's tensor data is returned as stored.
    #[test]
    fn tensor_f32_of_f32_file() {
        let file = tiny("f32");
        let t = file.tensor_info("blk.0.ffn_down.weight").unwrap();
        assert_eq!(
            (t.dims.as_slice(), t.shape()),
            (&[128, 64][..], vec![64, 128])
        );
        let raw = file.tensor_bytes(&t.name).unwrap();
        let values = file.tensor_f32(&t.name).unwrap();
        assert_eq!(values.len(), t.numel());
        assert_eq!(values[5].to_le_bytes(), raw[20..24]);
    }

    #[test]
    fn round_trips_values_alignment_and_nesting() {
        let nested = GgufValue::Array(vec![
            GgufValue::Array(vec![GgufValue::I16(-3), GgufValue::I16(4)]),
            GgufValue::Array(vec![GgufValue::I16(5)]),
        ]);
        let meta = md(vec![
            ("general.alignment", GgufValue::U32(64)),
            ("f", GgufValue::F64(0.1)),
            ("b", GgufValue::Bool(false)),
            ("s", GgufValue::String("héllo".into())),
            ("nested", nested.clone()),
            ("empty", GgufValue::Array(vec![])),
        ]);
        let q8 = vec![0u8; 34 * 2];
        let tensors: Vec<RawTensor> = vec![
            (
                "a".into(),
                vec![3],
                GgmlType::F32,
                1f32.to_le_bytes().repeat(3),
            ),
            ("b".into(), vec![32, 2], GgmlType::Q8_0, q8),
            (
                "scalar".into(),
                vec![],
                GgmlType::F32,
                2f32.to_le_bytes().to_vec(),
            ),
            ("empty".into(), vec![0, 4], GgmlType::F16, vec![]),
            ("q3k".into(), vec![256], GgmlType::Q3_K, vec![0; 110]),
        ];
        let file = GgufFile::from_bytes("mem", write_gguf(&meta, &tensors)).unwrap();
        assert_eq!(file.metadata(), meta.as_slice());
        assert_eq!(file.alignment(), 64);
        assert_eq!(file.data_start() % 64, 0);
        assert_eq!(file.tensor_info("b").unwrap().offset, 64);
        assert_eq!(file.tensor_f32("a").unwrap(), [1.0; 3]);
        assert_eq!(file.tensor_f32("b").unwrap(), [0.0; 64]);
        assert_eq!(file.tensor_f32("scalar").unwrap(), [2.0]);
        assert!(file.tensor_f32("empty").unwrap().is_empty());
        assert_eq!(file.tensor_bytes("q3k").unwrap().len(), 110);
        match file.tensor_f32("q3k") {
            Err(Error::UnsupportedDtype { name, dtype, .. }) => {
                assert_eq!((&*name, &*dtype), ("q3k", "Q3_K"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            format!("{file:?}"),
            "GgufFile { path: \"mem\", version: 3, metadata: 6, tensors: 5, .. }"
        );
    }
}
