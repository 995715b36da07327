//! GGUF, the single-file container of llama.cpp: a pure Rust reader and writer, GGML
//! dequantization and the tokenizer embedded in the metadata.
//!
//! - [`GgufFile`] parses a GGUF v2/v3 file (memory-mapped, or from bytes) into typed metadata
//!   ([`GgufValue`]) and tensor descriptions ([`GgufTensorInfo`]). Every count, length and offset
//!   of the header is checked against the file before anything is allocated or sliced, so a
//!   truncated or corrupted file is an [`Error::Format`](crate::Error::Format), never a panic.
//! - [`GgmlType`] names the GGML storage types; [`dequantize`] turns F32, F16, BF16, Q8_0, Q4_0,
//!   Q4_1, Q5_0, Q5_1, Q4_K and Q6_K blocks into `f32`, bit-exact with ggml and gguf-py (both
//!   re-exported from `slm-ggml`, the workspace's one home of GGML types and codecs).
//! - [`GgufWriter`] writes GGUF v3 laid out byte for byte as gguf-py's writer, validated first
//!   and atomically.
//! - [`export_gguf`] writes any model slm opens as GGUF, laid out as llama.cpp's converter
//!   (from Hugging Face dirs) or `llama-quantize` (from GGUF) lays it out; [`tokenizer_metadata`]
//!   rebuilds `tokenizer.ggml.*` from a `tokenizer.json`.
//! - [`tokenizer_from_gguf`] rebuilds a Hugging Face `tokenizers::Tokenizer` from the
//!   `tokenizer.ggml.*` keys of byte-level BPE (`gpt2`) vocabularies.
//!
//! Tensors keep GGUF's conventions here (dims in `ne` order, `ne[0]` fastest, llama.cpp's rotary
//! row order for Llama Q/K); [`GgufWeights`](crate::weights::GgufWeights) maps them to Hugging
//! Face names and layout.
//!
//! ```no_run
//! # fn main() -> slm_core::Result<()> {
//! use slm_core::gguf::GgufFile;
//! let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let layers = file.get_u32("llama.block_count")?;
//! let embed = file.tensor_f32("token_embd.weight")?;
//! let tokenizer = slm_core::gguf::tokenizer_from_gguf(&file)?;
//! # let _ = (layers, embed, tokenizer);
//! # Ok(())
//! # }
//! ```

mod export;
pub(crate) mod names;
mod read;
mod tokenizer;
mod value;
mod write;

pub use self::export::{
    Encoded, ExportTensor, GgufOutType, QUANTIZATION_VERSION, export_gguf, size_label,
};
pub use self::names::gguf_name as gguf_tensor_name;
pub use self::read::{
    GgufFile, GgufTensorInfo, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_METADATA_KV, MAX_N_DIMS,
    MAX_STRING_LEN, MAX_TENSORS,
};
pub use self::tokenizer::{tokenizer_from_gguf, tokenizer_metadata};
pub use self::value::GgufValue;
pub use self::write::{DEFAULT_ALIGNMENT, GgufTensor, GgufWriter, MAX_TENSOR_NAME};
pub use slm_ggml::{GgmlType, dequantize, dequantize_into};

/// Test helpers shared by the GGUF and weights tests: fixture paths and a minimal GGUF writer.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    use super::{GgmlType, GgufFile, GgufTensor, GgufValue};

    /// A path under the reference fixtures (`fixtures/` at the workspace root, or
    /// `$SLM_FIXTURES`); panics naming the path when it is missing.
    pub(crate) fn fixture(rel: &str) -> PathBuf {
        let root = std::env::var_os("SLM_FIXTURES")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"));
        let path = root.join(rel);
        assert!(path.exists(), "fixture {} is missing", path.display());
        path
    }

    /// The SmolLM2-135M-Instruct Q4_1 GGUF ([`crate::cache::smollm2_gguf`]). `None` (with a note on
    /// stderr) when absent, unless `SLM_REQUIRE_SMOLLM2=1`, which makes absence a failure.
    pub(crate) fn smollm2_gguf() -> Option<PathBuf> {
        let path = crate::cache::smollm2_gguf_if_present().unwrap_or_else(|e| panic!("{e}"));
        if path.is_none() {
            eprintln!("skipping: SmolLM2 GGUF not found (scripts/fetch-smollm2.sh)");
        }
        path
    }

    /// One tensor for [`write_gguf`]: name, dims in `ne` order, type, raw bytes.
    pub(crate) type RawTensor = (String, Vec<usize>, GgmlType, Vec<u8>);

    /// Serializes a GGUF v3 file through the writer's encoder without its validation, so tests
    /// can craft malformed files (alignment from `general.alignment`, default 32).
    pub(crate) fn write_gguf(metadata: &[(String, GgufValue)], tensors: &[RawTensor]) -> Vec<u8> {
        let align = metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(32) as usize;
        let tensors: Vec<GgufTensor> = tensors
            .iter()
            .map(|(name, dims, ty, data)| GgufTensor {
                name: name.clone(),
                dims: dims.clone(),
                ggml_type: *ty,
                data: data.clone(),
            })
            .collect();
        let mut out = Vec::new();
        super::write::encode(&mut out, metadata, &tensors, align).expect("in memory");
        out
    }

    /// Re-serializes `file` after `edit` changed its metadata (tensors copied as stored).
    pub(crate) fn rewrite(
        file: &GgufFile,
        edit: impl FnOnce(&mut Vec<(String, GgufValue)>),
    ) -> Vec<u8> {
        let mut metadata = file.metadata().to_vec();
        edit(&mut metadata);
        let tensors: Vec<RawTensor> = file
            .tensors()
            .iter()
            .map(|t| {
                let bytes = file.tensor_bytes(&t.name).expect("tensor bytes").to_vec();
                (t.name.clone(), t.dims.clone(), t.ggml_type, bytes)
            })
            .collect();
        write_gguf(&metadata, &tensors)
    }
}

/// Parser hardening: malformed headers are typed errors, and no input (random, truncated or
/// corrupted) makes parsing, dequantizing, tokenizer building or weight mapping panic.
#[cfg(test)]
mod hardening_tests {
    use super::test_support::{RawTensor, fixture, write_gguf};
    use super::*;
    use crate::error::{Error, Result};
    use proptest::prelude::*;

    fn md(pairs: Vec<(&str, GgufValue)>) -> Vec<(String, GgufValue)> {
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn assert_reason(r: Result<GgufFile>, needle: &str) {
        match r {
            Err(Error::Format { reason, .. }) => {
                assert!(reason.contains(needle), "`{reason}` lacks `{needle}`");
            }
            other => panic!("expected a format error with `{needle}`, got {other:?}"),
        }
    }

    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(version.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b
    }

    #[test]
    fn rejects_bad_headers() {
        let from = |b: Vec<u8>| GgufFile::from_bytes("bad", b);
        assert_reason(from(b"GGUX\x03\0\0\0".to_vec()), "not a GGUF file");
        assert_reason(from(b"GG".to_vec()), "truncated");
        assert_reason(from(header(1, 0, 0)), "version 1");
        assert_reason(from(header(3u32.swap_bytes(), 0, 0)), "big-endian");
        assert_reason(from(header(9, 0, 0)), "version 9");
        assert_reason(from(header(3, MAX_TENSORS + 1, 0)), "limit");
        assert_reason(from(header(3, 1000, 0)), "cannot fit");
        assert_reason(from(header(3, 0, u64::MAX)), "limit");

        // A key whose length exceeds the file, and one over the cap.
        let mut b = header(3, 0, 1);
        b.extend(1000u64.to_le_bytes());
        b.extend([0; 16]);
        assert_reason(from(b), "metadata #0: metadata key 1000 cannot fit");
        let mut b = header(3, 0, 1);
        b.extend((MAX_STRING_LEN + 1).to_le_bytes());
        b.extend([0; 16]);
        assert_reason(from(b), "metadata key 67108865 exceeds the limit");

        // An array claiming 2^40 u32 elements, and an unknown value type.
        let kv = |ty: u32, payload: &[u8]| {
            let mut b = header(3, 0, 1);
            b.extend(1u64.to_le_bytes());
            b.push(b'k');
            b.extend(ty.to_le_bytes());
            b.extend(payload);
            b
        };
        let mut arr = 4u32.to_le_bytes().to_vec();
        arr.extend((1u64 << 40).to_le_bytes());
        assert_reason(from(kv(9, &arr)), "array length");
        assert_reason(from(kv(13, &[0; 8])), "unknown metadata value type 13");
        assert_reason(from(kv(7, &[2])), "invalid bool");
        let mut deep = Vec::new();
        for _ in 0..=MAX_ARRAY_DEPTH {
            deep.extend(9u32.to_le_bytes());
            deep.extend(1u64.to_le_bytes());
        }
        assert_reason(from(kv(9, &deep)), "nested deeper");
    }

    #[test]
    fn rejects_lying_tensor_infos() {
        let f32s = |n: usize| vec![0u8; 4 * n];
        let build = |meta: Vec<(String, GgufValue)>, tensors: Vec<RawTensor>| {
            GgufFile::from_bytes("t", write_gguf(&meta, &tensors))
        };
        let ok = build(vec![], vec![("a".into(), vec![4], GgmlType::F32, f32s(4))]).unwrap();
        assert_eq!(ok.tensors().len(), 1);

        let dup = vec![
            ("a".into(), vec![1], GgmlType::F32, f32s(1)),
            ("a".into(), vec![1], GgmlType::F32, f32s(1)),
        ];
        assert_reason(build(vec![], dup), "duplicate tensor");
        let dup_kv = md(vec![("k", GgufValue::U8(1)), ("k", GgufValue::U8(2))]);
        assert_reason(build(dup_kv, vec![]), "duplicate metadata key");
        let bad_align = md(vec![("general.alignment", GgufValue::U32(48))]);
        assert_reason(build(bad_align, vec![]), "power of two");
        let q = vec![("q".into(), vec![16, 2], GgmlType::Q8_0, vec![0; 34])];
        assert_reason(build(vec![], q), "block size");

        // Patch fields of a valid one-tensor file: n_dims, type, offset, dims.
        let base = write_gguf(&[], &[("a".into(), vec![4], GgmlType::F32, f32s(4))]);
        let at = 24 + 8 + 1; // header, name length, name
        let patched = |off: usize, bytes: &[u8]| {
            let mut b = base.clone();
            b[off..off + bytes.len()].copy_from_slice(bytes);
            GgufFile::from_bytes("t", b)
        };
        assert_reason(patched(at, &5u32.to_le_bytes()), "dimensions");
        match patched(at + 12, &99u32.to_le_bytes()) {
            Err(Error::UnsupportedDtype { name, dtype, .. }) => {
                assert_eq!(
                    (name.as_str(), dtype.as_str()),
                    ("a", "unknown ggml type id 99")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_reason(patched(at + 16, &8u64.to_le_bytes()), "alignment");
        assert_reason(
            patched(at + 16, &(1u64 << 62).to_le_bytes()),
            "outside the file",
        );
        assert_reason(
            patched(at + 4, &(1u64 << 40).to_le_bytes()),
            "outside the file",
        );
        assert_reason(patched(at + 4, &u64::MAX.to_le_bytes()), "too large");
    }

    /// Everything a caller can do with a parsed file; must never panic.
    fn exercise(bytes: Vec<u8>) {
        let Ok(file) = GgufFile::from_bytes("fuzz", bytes) else {
            return;
        };
        for t in file.tensors() {
            let _ = file.tensor_f32(&t.name);
        }
        let _ = file.tokenizer();
        if let Ok(w) = crate::weights::GgufWeights::new(file) {
            use crate::weights::WeightSource;
            for name in w.tensor_names() {
                let _ = w.read_f32(&name);
            }
        }
    }

    fn tiny_bytes(kind: &str) -> Vec<u8> {
        std::fs::read(fixture(&format!("quant/gguf/llama-tiny.{kind}.gguf"))).unwrap()
    }

    /// Every prefix of the q8_0 file's header and first tensor fails cleanly.
    #[test]
    fn every_header_truncation_fails_cleanly() {
        let bytes = tiny_bytes("q8_0");
        let file = GgufFile::from_bytes("full", bytes.clone()).unwrap();
        let end = file.data_start() + 64;
        for len in 0..end {
            assert!(
                GgufFile::from_bytes("cut", &bytes[..len]).is_err(),
                "prefix {len} parsed"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            exercise(bytes.clone());
            let mut with_magic = header(3, 2, 3);
            with_magic.extend(bytes);
            exercise(with_magic);
        }

        #[test]
        fn truncations_never_panic(frac in 0.0f64..1.0) {
            let bytes = tiny_bytes("f32");
            let len = (bytes.len() as f64 * frac) as usize;
            prop_assert!(GgufFile::from_bytes("cut", &bytes[..len]).is_err());
        }

        #[test]
        fn header_corruptions_never_panic(
            edits in proptest::collection::vec((0usize..20_512, any::<u8>()), 1..8),
        ) {
            let mut bytes = tiny_bytes("f32");
            for (at, v) in edits {
                bytes[at] = v;
            }
            exercise(bytes);
        }
    }
}
