//! [`GgufWriter`]: GGUF v3 files, laid out byte for byte as gguf-py's `GGUFWriter` (what
//! llama.cpp's `convert_hf_to_gguf.py` and `llama-quantize` write).
//!
//! Layout: `GGUF`, version 3, tensor count (u64), metadata count (u64); the metadata in
//! insertion order (key as u64-length string, value type u32, value); one info per tensor in
//! insertion order (name, n_dims u32, `ne` as u64s, GGML type u32, data offset u64 relative to
//! the data section); zero padding to the alignment; each tensor's bytes followed by zero padding
//! to the alignment (after the last one too). The alignment is 32 unless `general.alignment`
//! says otherwise.
//!
//! Everything is validated before a byte is written (unique keys and names, homogeneous arrays,
//! 1 to 4 dims, whole blocks per row, the byte count each type needs), and [`GgufWriter::write`]
//! is atomic: a crash or a full disk leaves the old file, never a torn one.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use super::{GgmlType, GgufValue, MAX_N_DIMS};
use crate::error::{Error, Result};

/// The alignment gguf-py and llama.cpp use unless `general.alignment` is set.
pub const DEFAULT_ALIGNMENT: usize = 32;

/// Longest tensor name ggml accepts (`GGML_MAX_NAME` is 64, with the terminating NUL).
pub const MAX_TENSOR_NAME: usize = 63;

/// One tensor to write: its GGUF name, dims in `ne` order (`ne[0]` is the row length), GGML
/// type and the bytes as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensor {
    /// GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, fastest first (GGUF's `ne`; Hugging Face's shape reversed).
    pub dims: Vec<usize>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// The encoded bytes (`ggml_type.bytes_for(numel)` of them).
    pub data: Vec<u8>,
}

/// Builds a GGUF v3 file: metadata in the order it is set, tensors in the order they are added.
///
/// ```
/// use slm_core::gguf::{GgmlType, GgufFile, GgufValue, GgufWriter};
/// # fn main() -> slm_core::Result<()> {
/// let mut w = GgufWriter::new();
/// w.set("general.architecture", GgufValue::String("llama".into()));
/// let values = [0.5f32, -1.0, 2.0, 0.25];
/// let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
/// w.add_tensor("output_norm.weight", &[4], GgmlType::F32, bytes)?;
/// let file = GgufFile::from_bytes("mem.gguf", w.to_bytes()?)?;
/// assert_eq!(file.tensor_f32("output_norm.weight")?, values);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensor>,
    names: HashSet<String>,
}

impl GgufWriter {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`: appended when new, replaced in place (keeping its position) when
    /// present.
    pub fn set(&mut self, key: impl Into<String>, value: GgufValue) -> &mut Self {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Removes `key` if present.
    pub fn remove(&mut self, key: &str) -> Option<GgufValue> {
        let at = self.metadata.iter().position(|(k, _)| k == key)?;
        Some(self.metadata.remove(at).1)
    }

    /// The metadata so far, in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    /// The tensors so far, in file order.
    pub fn tensors(&self) -> &[GgufTensor] {
        &self.tensors
    }

    /// Reorders the tensors (their data offsets follow the new order).
    pub fn sort_tensors_by(
        &mut self,
        compare: impl FnMut(&GgufTensor, &GgufTensor) -> std::cmp::Ordering,
    ) {
        self.tensors.sort_by(compare);
    }

    /// Adds a tensor after the others.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a duplicate or over-long name, no dims or more than 4, a
    /// row length (`dims[0]`) that is not a whole number of `ty`'s blocks, or `data` not holding
    /// exactly the bytes the dims need.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[usize],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<()> {
        let name = name.into();
        let bad = |why: String| Err(Error::InvalidInput(format!("GGUF tensor `{name}`: {why}")));
        if name.is_empty() || name.len() > MAX_TENSOR_NAME {
            return bad(format!(
                "names must have 1 to {MAX_TENSOR_NAME} bytes, this one has {}",
                name.len()
            ));
        }
        if self.names.contains(&name) {
            return bad("added twice".into());
        }
        if dims.is_empty() || dims.len() > MAX_N_DIMS as usize {
            return bad(format!(
                "{} dims (GGUF allows 1 to {MAX_N_DIMS})",
                dims.len()
            ));
        }
        if !dims[0].is_multiple_of(ty.block_size()) {
            return bad(format!(
                "rows of {} values are not whole {ty} blocks of {}",
                dims[0],
                ty.block_size()
            ));
        }
        let expected = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| ty.bytes_for(n));
        if expected != Some(data.len()) {
            return bad(format!(
                "{dims:?} as {ty} takes {} bytes, got {}",
                expected.map_or_else(|| "more than usize::MAX".into(), |n| n.to_string()),
                data.len()
            ));
        }
        self.names.insert(name.clone());
        self.tensors.push(GgufTensor {
            name,
            dims: dims.to_vec(),
            ggml_type: ty,
            data,
        });
        Ok(())
    }

    /// The data alignment: `general.alignment` when set, else 32.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `general.alignment` is not a u32 power of two.
    pub fn alignment(&self) -> Result<usize> {
        match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, GgufValue::U32(a))) if a.is_power_of_two() => Ok(*a as usize),
            Some((_, v)) => Err(Error::InvalidInput(format!(
                "general.alignment must be a u32 power of two, got {v:?}"
            ))),
        }
    }

    /// Checks the metadata: non-empty keys, each array's elements of one type.
    fn validate(&self) -> Result<usize> {
        let mut seen = HashSet::new();
        for (key, value) in &self.metadata {
            if key.is_empty() || !seen.insert(key.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "GGUF metadata key `{key}` is empty or set twice"
                )));
            }
            check_array(key, value)?;
        }
        self.alignment()
    }

    /// The whole file in memory.
    ///
    /// # Errors
    /// As [`GgufWriter::write`], without the I/O.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let align = self.validate()?;
        let mut out = Vec::with_capacity(self.data_len(align) + 4096);
        encode(&mut out, &self.metadata, &self.tensors, align)
            .expect("writing to a Vec cannot fail");
        Ok(out)
    }

    /// Writes the file to `path` atomically (temporary file in the same directory, synced,
    /// renamed over `path`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for invalid metadata (see [`GgufWriter::alignment`]), [`Error::Io`]
    /// naming `path` (a full disk, say); `path` is then untouched.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let align = self.validate()?;
        crate::io::write_atomic_with(path.as_ref(), |w| {
            encode(w, &self.metadata, &self.tensors, align)
        })
    }

    /// Bytes of the data section.
    fn data_len(&self, align: usize) -> usize {
        self.tensors
            .iter()
            .map(|t| t.data.len().next_multiple_of(align))
            .sum()
    }
}

/// Refuses arrays mixing element types (GGUF stores one type per array), recursively.
fn check_array(key: &str, value: &GgufValue) -> Result<()> {
    if let GgufValue::Array(items) = value {
        if let Some(first) = items.first() {
            let ty = type_id(first);
            if let Some(other) = items.iter().find(|v| type_id(v) != ty) {
                return Err(Error::InvalidInput(format!(
                    "GGUF metadata `{key}`: an array of {} holds a {}",
                    first.type_name(),
                    other.type_name()
                )));
            }
        }
        for item in items {
            check_array(key, item)?;
        }
    }
    Ok(())
}

/// GGUF's id of a value's type.
fn type_id(v: &GgufValue) -> u32 {
    match v {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn put_value(w: &mut impl Write, v: &GgufValue) -> std::io::Result<()> {
    match v {
        GgufValue::U8(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::I8(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::U16(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::I16(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::U32(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::I32(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::U64(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::I64(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::F32(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::F64(x) => w.write_all(&x.to_le_bytes()),
        GgufValue::Bool(x) => w.write_all(&[u8::from(*x)]),
        GgufValue::String(s) => put_str(w, s),
        GgufValue::Array(items) => {
            // An empty array has no element to take a type from: u8, as llama.cpp reads any.
            w.write_all(&items.first().map_or(0, type_id).to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|v| put_value(w, v))
        }
    }
}

/// Counts bytes written, to pad to the alignment without seeking.
struct Counting<W> {
    inner: W,
    written: usize,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Counting<W> {
    fn pad_to(&mut self, align: usize) -> std::io::Result<()> {
        let pad = self.written.next_multiple_of(align) - self.written;
        self.write_all(&vec![0u8; pad])
    }
}

/// Serializes metadata and tensors as given, without validation: the one GGUF encoder (the
/// parser's tests use it directly to craft malformed files).
pub(crate) fn encode(
    w: &mut impl Write,
    metadata: &[(String, GgufValue)],
    tensors: &[GgufTensor],
    align: usize,
) -> std::io::Result<()> {
    let mut w = Counting {
        inner: w,
        written: 0,
    };
    w.write_all(b"GGUF")?;
    w.write_all(&3u32.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata {
        put_str(&mut w, key)?;
        w.write_all(&type_id(value).to_le_bytes())?;
        put_value(&mut w, value)?;
    }
    let mut offset = 0usize;
    for t in tensors {
        put_str(&mut w, &t.name)?;
        w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for &d in &t.dims {
            w.write_all(&(d as u64).to_le_bytes())?;
        }
        w.write_all(&t.ggml_type.id().to_le_bytes())?;
        w.write_all(&(offset as u64).to_le_bytes())?;
        offset += t.data.len().next_multiple_of(align);
    }
    w.pad_to(align)?;
    for t in tensors {
        w.write_all(&t.data)?;
        w.pad_to(align)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn round_trips_through_the_reader() {
        let mut w = GgufWriter::new();
        w.set("general.architecture", GgufValue::String("llama".into()))
            .set("llama.block_count", GgufValue::U32(2))
            .set(
                "tokenizer.ggml.tokens",
                GgufValue::Array(vec![
                    GgufValue::String("a".into()),
                    GgufValue::String("b".into()),
                ]),
            )
            .set("llama.block_count", GgufValue::U32(3));
        let a: Vec<f32> = (0..96).map(|i| i as f32 * 0.5 - 3.0).collect();
        w.add_tensor("a", &[32, 3], GgmlType::F32, f32_bytes(&a))
            .unwrap();
        let q = slm_ggml::quantize(GgmlType::Q8_0, &a).unwrap();
        w.add_tensor("b", &[32, 3], GgmlType::Q8_0, q.clone())
            .unwrap();
        let bytes = w.to_bytes().unwrap();
        let f = GgufFile::from_bytes("t", bytes.clone()).unwrap();
        let keys: Vec<_> = f.metadata().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "general.architecture",
                "llama.block_count",
                "tokenizer.ggml.tokens"
            ]
        );
        assert_eq!(
            f.get_u32("llama.block_count").unwrap(),
            3,
            "replaced in place"
        );
        assert_eq!(f.tensor_f32("a").unwrap(), a);
        assert_eq!(f.tensor_bytes("b").unwrap(), q.as_slice());
        assert_eq!(f.tensor_info("b").unwrap().dims, [32, 3]);
        assert_eq!(
            bytes.len() % DEFAULT_ALIGNMENT,
            0,
            "padded after the last tensor"
        );
        assert_eq!(f.data_start() % DEFAULT_ALIGNMENT, 0);
    }

    #[test]
    fn alignment_follows_general_alignment() {
        let mut w = GgufWriter::new();
        w.set("general.alignment", GgufValue::U32(64));
        w.add_tensor("a", &[1], GgmlType::F32, f32_bytes(&[1.0]))
            .unwrap();
        w.add_tensor("b", &[1], GgmlType::F32, f32_bytes(&[2.0]))
            .unwrap();
        let f = GgufFile::from_bytes("t", w.to_bytes().unwrap()).unwrap();
        assert_eq!(f.alignment(), 64);
        assert_eq!(f.tensor_f32("b").unwrap(), [2.0]);
        w.set("general.alignment", GgufValue::U32(48));
        assert!(matches!(w.to_bytes(), Err(Error::InvalidInput(m)) if m.contains("power of two")));
    }

    #[test]
    fn bad_tensors_and_metadata_are_refused() {
        let mut w = GgufWriter::new();
        let err = |r: Result<()>| match r {
            Err(Error::InvalidInput(m)) => m,
            other => panic!("{other:?}"),
        };
        w.add_tensor("a", &[4], GgmlType::F32, vec![0; 16]).unwrap();
        assert!(err(w.add_tensor("a", &[4], GgmlType::F32, vec![0; 16])).contains("added twice"));
        assert!(
            err(w.add_tensor("b", &[4], GgmlType::F32, vec![0; 15]))
                .contains("takes 16 bytes, got 15")
        );
        assert!(
            err(w.add_tensor("c", &[16, 2], GgmlType::Q8_0, vec![0; 34]))
                .contains("whole Q8_0 blocks")
        );
        assert!(err(w.add_tensor("d", &[], GgmlType::F32, vec![])).contains("0 dims"));
        assert!(err(w.add_tensor("e", &[1; 5], GgmlType::F32, vec![0; 4])).contains("5 dims"));
        assert!(
            err(w.add_tensor("x".repeat(64), &[1], GgmlType::F32, vec![0; 4]))
                .contains("1 to 63 bytes")
        );
        assert!(
            err(w.add_tensor("f", &[usize::MAX, 2], GgmlType::F32, vec![])).contains("usize::MAX")
        );
        w.set(
            "mixed",
            GgufValue::Array(vec![GgufValue::U32(1), GgufValue::I32(2)]),
        );
        match w.to_bytes() {
            Err(Error::InvalidInput(m)) => {
                assert!(m.contains("an array of u32 holds a i32"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(w.tensors().len(), 1, "refused tensors are not kept");
    }

    #[test]
    fn write_is_atomic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, b"old").unwrap();
        let mut w = GgufWriter::new();
        w.add_tensor("a", &[2], GgmlType::F16, vec![0, 0x3c, 0, 0xc0])
            .unwrap();
        w.set(
            "bad",
            GgufValue::Array(vec![GgufValue::U8(1), GgufValue::Bool(true)]),
        );
        assert!(w.write(&path).is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"old",
            "a refused write leaves the old file"
        );
        w.remove("bad");
        w.write(&path).unwrap();
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.tensor_f32("a").unwrap(), [1.0, -2.0]);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}
