//! Hugging Face safetensors checkpoints: one `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, memory-mapped and read lazily tensor by tensor.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::{RawTensor, RowOrder, SharedBytes, StorageDtype, TensorInfo, WeightSource};
use crate::error::{Error, Result};
use crate::gguf::GgmlType;

/// One safetensors file, mapped into memory.
#[derive(Debug)]
struct Shard {
    path: PathBuf,
    mmap: Arc<Mmap>,
    /// Where the data section starts (8 + header length).
    data_start: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    shard: usize,
    info: TensorInfo,
    /// Byte range inside the shard's data section.
    start: usize,
    end: usize,
}

/// A safetensors checkpoint (single file or sharded), validated on open.
#[derive(Debug)]
pub struct SafetensorsWeights {
    name: String,
    shards: Vec<Shard>,
    entries: BTreeMap<String, Entry>,
}

impl SafetensorsWeights {
    /// Opens a model directory (`model.safetensors` or `model.safetensors.index.json`), or one
    /// `.safetensors` file.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_file() {
            return Self::from_files(&path.display().to_string(), &[path.to_path_buf()], None);
        }
        let index = path.join("model.safetensors.index.json");
        if index.is_file() {
            return Self::open_index(&index);
        }
        let single = path.join("model.safetensors");
        if single.is_file() {
            return Self::from_files(&single.display().to_string(), &[single], None);
        }
        Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no model.safetensors or model.safetensors.index.json",
            ),
        ))
    }

    fn open_index(index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: index.to_path_buf(),
            source: e,
        })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::format(index, "no `weight_map` object"))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut files: Vec<String> = Vec::new();
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| {
                Error::format(index, format!("weight_map[{tensor}] is not a string"))
            })?;
            if file.contains('/') || file.contains('\\') || file.starts_with("..") {
                return Err(Error::format(
                    index,
                    format!("shard name `{file}` is not a plain file name"),
                ));
            }
            if !files.iter().any(|f| f == file) {
                files.push(file.to_string());
            }
            expected.insert(tensor.clone(), file.to_string());
        }
        files.sort();
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        Self::from_files(&index.display().to_string(), &paths, Some(expected))
    }

    fn from_files(
        name: &str,
        paths: &[PathBuf],
        expected: Option<BTreeMap<String, String>>,
    ) -> Result<Self> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut entries = BTreeMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the map is read-only; a file changed underneath us can only yield wrong
            // values, which the format checks below bound (no out-of-range reads are possible
            // because every range is checked against the mapped length).
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            let (header_len, meta) = SafeTensors::read_metadata(&mmap)
                .map_err(|e| Error::format(path, format!("invalid safetensors: {e}")))?;
            let data_start = 8usize
                .checked_add(header_len)
                .filter(|&s| s <= mmap.len())
                .ok_or_else(|| Error::format(path, "header length exceeds the file"))?;
            let data_len = mmap.len() - data_start;
            for (tname, ti) in meta.tensors() {
                let (start, end) = ti.data_offsets;
                if start > end || end > data_len {
                    return Err(Error::format(
                        path,
                        format!(
                            "tensor `{tname}` has data offsets {start}..{end} beyond the {data_len}-byte data section"
                        ),
                    ));
                }
                let dtype = match ti.dtype {
                    Dtype::F32 => StorageDtype::F32,
                    Dtype::F16 => StorageDtype::F16,
                    Dtype::BF16 => StorageDtype::BF16,
                    other => {
                        return Err(Error::UnsupportedDtype {
                            source_name: path.display().to_string(),
                            name: tname.clone(),
                            dtype: format!("{other:?}"),
                        });
                    }
                };
                let numel = ti
                    .shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| {
                        Error::format(path, format!("tensor `{tname}` shape overflows"))
                    })?;
                let width = if dtype == StorageDtype::F32 { 4 } else { 2 };
                if numel.checked_mul(width) != Some(end - start) {
                    return Err(Error::format(
                        path,
                        format!(
                            "tensor `{tname}` holds {} bytes, its shape {:?} needs {}",
                            end - start,
                            ti.shape,
                            numel * width
                        ),
                    ));
                }
                if let Some(exp) = &expected {
                    let want = exp.get(&tname).map(String::as_str);
                    let here = path.file_name().and_then(|f| f.to_str());
                    if want != here {
                        return Err(Error::format(
                            path,
                            format!("tensor `{tname}` is not listed for this shard in the index"),
                        ));
                    }
                }
                let entry = Entry {
                    shard: i,
                    info: TensorInfo {
                        shape: ti.shape.clone(),
                        dtype,
                    },
                    start,
                    end,
                };
                if entries.insert(tname.clone(), entry).is_some() {
                    return Err(Error::format(
                        path,
                        format!("tensor `{tname}` appears in two shards"),
                    ));
                }
            }
            shards.push(Shard {
                path: path.clone(),
                mmap: Arc::new(mmap),
                data_start,
            });
        }
        if let Some(exp) = &expected
            && let Some(absent) = exp.keys().find(|k| !entries.contains_key(*k))
        {
            return Err(Error::MissingTensor {
                source_name: name.to_string(),
                name: absent.clone(),
            });
        }
        Ok(Self {
            name: name.to_string(),
            shards,
            entries,
        })
    }

    /// The files backing this checkpoint.
    pub fn files(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// The raw little-endian bytes of a tensor.
    pub fn raw_bytes(&self, name: &str) -> Result<&[u8]> {
        let e = self.entry(name)?;
        let shard = &self.shards[e.shard];
        Ok(&shard.mmap[shard.data_start + e.start..shard.data_start + e.end])
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            source_name: self.name.clone(),
            name: name.to_string(),
        })
    }
}

/// Converts little-endian f32/f16/bf16 bytes to f32.
pub(crate) fn le_bytes_to_f32(bytes: &[u8], dtype: StorageDtype) -> Vec<f32> {
    match dtype {
        StorageDtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        StorageDtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        StorageDtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        StorageDtype::Ggml(_) => unreachable!("safetensors never stores GGML blocks"),
    }
}

impl WeightSource for SafetensorsWeights {
    fn source_name(&self) -> String {
        self.name.clone()
    }

    fn tensor_names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn storage_order(&self) -> Vec<String> {
        let mut names: Vec<(usize, &String)> =
            self.entries.iter().map(|(n, e)| (e.shard, n)).collect();
        names.sort();
        names.into_iter().map(|(_, n)| n.clone()).collect()
    }

    fn tensor_info(&self, name: &str) -> Option<TensorInfo> {
        self.entries.get(name).map(|e| e.info.clone())
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let dtype = self.entry(name)?.info.dtype;
        Ok(le_bytes_to_f32(self.raw_bytes(name)?, dtype))
    }

    fn read_raw(&self, name: &str) -> Result<RawTensor> {
        let e = self.entry(name)?;
        let shard = &self.shards[e.shard];
        let range = shard.data_start + e.start..shard.data_start + e.end;
        let data = SharedBytes::mapped(shard.mmap.clone())
            .slice(range)
            .expect("entries were checked against the shard on open");
        Ok(RawTensor {
            ty: match e.info.dtype {
                StorageDtype::F32 => GgmlType::F32,
                StorageDtype::F16 => GgmlType::F16,
                StorageDtype::BF16 => GgmlType::BF16,
                StorageDtype::Ggml(t) => t,
            },
            shape: e.info.shape.clone(),
            row_order: RowOrder::Hf,
            data,
        })
    }
}
