//! [`TeacherCache`]: a teacher's soft labels computed once and kept on disk, so the teacher is
//! not in memory (nor run again every epoch) while the student trains.
//!
//! For every example and every position `p` whose next token is a target (the example's
//! `loss_mask[p + 1]`), the cache holds the teacher's `k` most likely next tokens and their
//! log-probabilities at temperature `T` (`log_softmax(z / T)`); the rest of the mass,
//! `1 - sum(exp(logprobs))`, is the estimator's one extra bucket
//! ([`divergence_top_k`](crate::distill::divergence_top_k) documents it). With the cache the
//! loss is exactly the online top-k loss on the same teacher ([`DistillConfig::loss_top_k`]).
//!
//! The file is safetensors (written atomically, read back whole): `offsets` (I64,
//! `[N + 1]`: example `e` owns rows `offsets[e]..offsets[e + 1]`), `positions` (I32, `[P]`),
//! `ids` (I32, `[P, k]`) and `logprobs` (F32, `[P, k]`), with metadata `format`
//! (`slm-teacher-topk-v1`), `top_k`, `temperature`, `vocab_size`, `teacher` (a name) and
//! `fingerprint` (xxh3 of the examples' tokens and loss masks, `k` and `T`): a cache is only
//! used with the data and settings it was built from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use safetensors::tensor::{Dtype, TensorView};
use slm_core::model::Decoder;
use slm_core::prelude::LogitsScope;
use slm_core::step::{BatchedLm, SeqChunk, SeqId};
use slm_data::inputs::{Batch, Batcher, BatcherConfig, BucketBatcher, TokenizedExample};

use crate::distill::DistillConfig;
use crate::error::{Error, Result};
use crate::forward::batch_logits;

const FORMAT: &str = "slm-teacher-topk-v1";

/// One stored position of an example: (position, top-k ids, their log-probabilities).
type StoredRow = (u32, Vec<i32>, Vec<f32>);

/// A teacher's top-k soft labels over a set of examples (see the [module docs](self)).
#[derive(Debug)]
pub struct TeacherCache {
    path: Option<PathBuf>,
    top_k: usize,
    temperature: f64,
    vocab_size: usize,
    teacher: String,
    fingerprint: String,
    offsets: Vec<usize>,
    positions: Vec<u32>,
    ids: Vec<i32>,
    logprobs: Vec<f32>,
}

/// The `top_k` and temperature of a cache for `distill` over `examples`, checked.
fn cache_settings(
    distill: &DistillConfig,
    vocab: usize,
    examples: &[TokenizedExample],
) -> Result<(usize, f64)> {
    let top_k = distill.top_k.ok_or_else(|| {
        Error::InvalidBatch(
            "a teacher cache keeps the top-k tokens; top_k None (the whole vocabulary) \
             needs the teacher online"
                .into(),
        )
    })?;
    crate::distill::check_top_k(top_k, vocab)?;
    let t = distill.temperature;
    crate::error::check(t > 0.0 && t.is_finite(), "temperature", t, "positive")?;
    if examples.is_empty() {
        return Err(Error::InvalidBatch(
            "no example to run the teacher on".into(),
        ));
    }
    Ok((top_k, t))
}

/// The fingerprint of `examples` under `top_k` and `temperature`.
fn fingerprint(examples: &[TokenizedExample], top_k: usize, temperature: f64) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(top_k as u64).to_le_bytes());
    h.update(&temperature.to_le_bytes());
    h.update(&(examples.len() as u64).to_le_bytes());
    for e in examples {
        h.update(&(e.input_ids.len() as u64).to_le_bytes());
        for (&id, &m) in e.input_ids.iter().zip(&e.loss_mask) {
            h.update(&id.to_le_bytes());
            h.update(&[m as u8]);
        }
    }
    format!("{:016x}", h.digest())
}

impl TeacherCache {
    /// Runs `teacher` (no autodiff) over `examples`, `batch_size` at a time (rows up to
    /// `seq_len` tokens), keeping the top `top_k` softened log-probabilities at every position
    /// that predicts a target; `teacher_name` is recorded.
    ///
    /// # Errors
    /// [`Error::InvalidHyperParameter`] for `top_k` of 0 or past the vocabulary or a
    /// non-positive temperature; [`Error::InvalidBatch`] for empty data or examples longer than
    /// `seq_len`.
    pub fn build(
        teacher: &Decoder,
        examples: &[TokenizedExample],
        distill: &DistillConfig,
        batch_size: usize,
        seq_len: usize,
        teacher_name: &str,
    ) -> Result<Self> {
        let vocab = teacher.config().vocab_size;
        let (top_k, t) = cache_settings(distill, vocab, examples)?;
        let pad = teacher.config().pad_token_id.unwrap_or(0);
        let config = BatcherConfig::new(batch_size, seq_len, pad).with_shuffle(false);
        let mut batcher = BucketBatcher::new(examples.to_vec(), &config, 1)
            .map_err(|e| Error::InvalidBatch(e.to_string()))?;
        let mut rows: Vec<Vec<StoredRow>> = vec![Vec::new(); examples.len()];
        while let Some(batch) = batcher.next_batch() {
            let batch = batch.map_err(|e| Error::InvalidBatch(e.to_string()))?;
            let logits = batch_logits(teacher, &batch)?;
            let [b, len, _] = logits.dims();
            let (lp, ids) = log_softmax(logits.div_scalar(t), 2).topk_with_indices(top_k, 2);
            let lp: Vec<f32> = lp
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Backend(format!("reading teacher log-probs: {e:?}")))?;
            let ids: Vec<i32> = ids
                .try_into_vec_as::<i32>()
                .map_err(|e| Error::Backend(format!("reading teacher top-k ids: {e:?}")))?;
            for row in 0..b {
                for pos in 0..len {
                    let Some((e, p)) = locate(&batch, row, pos) else {
                        continue;
                    };
                    let example = &examples[e];
                    if !example.loss_mask.get(p + 1).copied().unwrap_or(false) {
                        continue;
                    }
                    let at = (row * len + pos) * top_k;
                    rows[e].push((
                        p as u32,
                        ids[at..at + top_k].to_vec(),
                        lp[at..at + top_k].to_vec(),
                    ));
                }
            }
        }
        Ok(Self::from_rows(
            rows,
            top_k,
            t,
            vocab,
            teacher_name,
            examples,
        ))
    }

    /// [`build`](Self::build) with any model behind slm-core's batched step API: the CPU fast
    /// path over a GGUF (a quantized or F16 teacher at its own speed, no autodiff backend), or
    /// any [`BatchedLm`]. `group` examples share each step (their prompts fed without logits,
    /// then their answers with every position's), so the teacher's weights are read once per
    /// group; the same cache as `build` up to the model's arithmetic.
    ///
    /// # Errors
    /// As [`build`](Self::build); the model's errors (a pool too small for `group` examples).
    pub fn build_stepped(
        teacher: &dyn BatchedLm,
        examples: &[TokenizedExample],
        distill: &DistillConfig,
        group: usize,
        teacher_name: &str,
    ) -> Result<Self> {
        let vocab = teacher.config().vocab_size;
        let (top_k, t) = cache_settings(distill, vocab, examples)?;
        let mut rows: Vec<Vec<StoredRow>> = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(group.max(1)) {
            // The first position whose next token is a target: everything before it is prompt.
            let firsts: Vec<usize> = chunk
                .iter()
                .map(|e| {
                    (0..e.input_ids.len().saturating_sub(1))
                        .find(|&p| e.loss_mask.get(p + 1).copied().unwrap_or(false))
                        .unwrap_or(e.input_ids.len())
                })
                .collect();
            let seqs: Vec<SeqId> = chunk.iter().map(|_| teacher.add_sequence()).collect();
            let result = (|| -> Result<()> {
                let prompts: Vec<SeqChunk<'_>> = chunk
                    .iter()
                    .zip(&seqs)
                    .zip(&firsts)
                    .filter(|(_, f)| **f > 0)
                    .map(|((e, &seq), &f)| SeqChunk {
                        seq,
                        tokens: &e.input_ids[..f.min(e.input_ids.len())],
                        logits: None,
                    })
                    .collect();
                if !prompts.is_empty() {
                    teacher.step(&prompts)?;
                }
                let answers: Vec<(usize, SeqChunk<'_>)> = chunk
                    .iter()
                    .zip(&seqs)
                    .zip(&firsts)
                    .enumerate()
                    .filter(|(_, ((e, _), f))| **f < e.input_ids.len())
                    .map(|(i, ((e, &seq), &f))| {
                        (
                            i,
                            SeqChunk {
                                seq,
                                tokens: &e.input_ids[f..],
                                logits: Some(LogitsScope::All),
                            },
                        )
                    })
                    .collect();
                let mut found: Vec<Vec<StoredRow>> = vec![Vec::new(); chunk.len()];
                if !answers.is_empty() {
                    let chunks: Vec<SeqChunk<'_>> = answers.iter().map(|(_, c)| *c).collect();
                    let logits = teacher.step(&chunks)?;
                    for (k, (i, _)) in answers.iter().enumerate() {
                        let e = &chunk[*i];
                        let values = logits.chunk(k);
                        for (r, row) in values.chunks(vocab).enumerate() {
                            let p = firsts[*i] + r;
                            if e.loss_mask.get(p + 1).copied().unwrap_or(false) {
                                let (ids, lp) = top_k_log_softmax(row, t, top_k);
                                found[*i].push((p as u32, ids, lp));
                            }
                        }
                    }
                }
                rows.extend(found);
                Ok(())
            })();
            for seq in seqs {
                teacher.release(seq);
            }
            result?;
        }
        Ok(Self::from_rows(
            rows,
            top_k,
            t,
            vocab,
            teacher_name,
            examples,
        ))
    }

    /// A cache from each example's stored rows.
    fn from_rows(
        rows: Vec<Vec<StoredRow>>,
        top_k: usize,
        t: f64,
        vocab: usize,
        teacher_name: &str,
        examples: &[TokenizedExample],
    ) -> Self {
        let mut cache = TeacherCache {
            path: None,
            top_k,
            temperature: t,
            vocab_size: vocab,
            teacher: teacher_name.to_string(),
            fingerprint: fingerprint(examples, top_k, t),
            offsets: vec![0],
            positions: Vec::new(),
            ids: Vec::new(),
            logprobs: Vec::new(),
        };
        for mut r in rows {
            r.sort_by_key(|x| x.0);
            for (p, ids, lp) in r {
                cache.positions.push(p);
                cache.ids.extend(ids);
                cache.logprobs.extend(lp);
            }
            cache.offsets.push(cache.positions.len());
        }
        cache
    }

    /// Tokens kept per position.
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// The temperature the log-probabilities are softened by.
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// The teacher's vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The teacher's name, as recorded.
    pub fn teacher(&self) -> &str {
        &self.teacher
    }

    /// Examples covered.
    pub fn examples(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Positions stored (over all examples).
    pub fn positions(&self) -> usize {
        self.positions.len()
    }

    /// Whether this cache was built from `examples` with `distill`'s `top_k` and temperature
    /// for a student of `vocab_size` tokens.
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] naming what differs (another dataset, k, T or vocabulary).
    pub fn check(
        &self,
        examples: &[TokenizedExample],
        distill: &DistillConfig,
        vocab_size: usize,
    ) -> Result<()> {
        let at = self
            .path
            .as_ref()
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default();
        if vocab_size != self.vocab_size {
            return Err(Error::InvalidBatch(format!(
                "teacher and student must share the tokenizer: the cached teacher `{}`{at} has a \
                 vocabulary of {} tokens, the student {vocab_size}",
                self.teacher, self.vocab_size
            )));
        }
        if distill.top_k != Some(self.top_k) || distill.temperature != self.temperature {
            return Err(Error::InvalidBatch(format!(
                "the teacher cache{at} holds top-{} at temperature {}, the run asks for top_k \
                 {:?} at temperature {}",
                self.top_k, self.temperature, distill.top_k, distill.temperature
            )));
        }
        if fingerprint(examples, self.top_k, self.temperature) != self.fingerprint {
            return Err(Error::InvalidBatch(format!(
                "the teacher cache{at} was built from other examples ({} of them) than these \
                 {}; rebuild it",
                self.examples(),
                examples.len()
            )));
        }
        Ok(())
    }

    /// The teacher's top-k ids and log-probabilities for `batch` (whose example indices are
    /// into the examples the cache was built from), `[B, T, k]` each on `device`, position `t`
    /// predicting `t + 1`; positions without a target get a neutral filler the loss weights
    /// by 0.
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] when a position of `batch` has a target the cache holds no
    /// teacher distribution for (a cache of other data).
    pub fn targets(&self, batch: &Batch, device: &Device) -> Result<(Tensor<3, Int>, Tensor<3>)> {
        let (b, len, k) = (batch.rows(), batch.seq_len(), self.top_k);
        let (rows, _) = crate::forward::target_rows(batch);
        let (row_ids, row_lp) = self.host_rows(batch, &rows)?;
        let filler = -((k + 1) as f32).ln();
        let mut ids = vec![0i32; b * len * k];
        let mut lp = vec![filler; b * len * k];
        for (i, &(row, pos)) in rows.iter().enumerate() {
            let at = (row * len + pos) * k;
            ids[at..at + k].copy_from_slice(&row_ids[i * k..(i + 1) * k]);
            lp[at..at + k].copy_from_slice(&row_lp[i * k..(i + 1) * k]);
        }
        Ok((
            Tensor::from_data(TensorData::new(ids, [b, len, k]), device),
            Tensor::from_data(TensorData::new(lp, [b, len, k]), device),
        ))
    }

    /// The teacher's top-k ids and log-probabilities at positions `rows` (`(row, position)` of
    /// `batch`, as [`target_logits`](crate::forward::target_logits) lists them), `[N, k]` each.
    ///
    /// # Errors
    /// [`Error::InvalidBatch`] when the cache holds no distribution for one of them.
    pub fn target_rows(
        &self,
        batch: &Batch,
        rows: &[(usize, usize)],
        device: &Device,
    ) -> Result<(Tensor<2, Int>, Tensor<2>)> {
        let (ids, lp) = self.host_rows(batch, rows)?;
        let (n, k) = (rows.len(), self.top_k);
        Ok((
            Tensor::from_data(TensorData::new(ids, [n, k]), device),
            Tensor::from_data(TensorData::new(lp, [n, k]), device),
        ))
    }

    /// The stored ids and log-probabilities of `rows`, `k` each, concatenated in order.
    fn host_rows(&self, batch: &Batch, rows: &[(usize, usize)]) -> Result<(Vec<i32>, Vec<f32>)> {
        let k = self.top_k;
        let mut ids = Vec::with_capacity(rows.len() * k);
        let mut lp = Vec::with_capacity(rows.len() * k);
        for &(row, pos) in rows {
            let r = locate(batch, row, pos)
                .and_then(|(e, p)| self.row_of(e, p))
                .ok_or_else(|| {
                    Error::InvalidBatch(format!(
                        "the teacher cache has no distribution for row {row}, position {pos} of \
                         this batch (examples {:?}): built from other data?",
                        batch.example_indices.get(row).cloned().unwrap_or_default()
                    ))
                })?;
            ids.extend_from_slice(&self.ids[r * k..(r + 1) * k]);
            lp.extend_from_slice(&self.logprobs[r * k..(r + 1) * k]);
        }
        Ok((ids, lp))
    }

    /// The stored row of example `e` at position `p`.
    fn row_of(&self, e: usize, p: usize) -> Option<usize> {
        let (lo, hi) = (*self.offsets.get(e)?, *self.offsets.get(e + 1)?);
        self.positions[lo..hi]
            .binary_search(&(p as u32))
            .ok()
            .map(|i| lo + i)
    }

    /// Writes the cache to `path` (atomically; parent folders created).
    ///
    /// # Errors
    /// I/O errors naming the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let offsets: Vec<u8> = self
            .offsets
            .iter()
            .flat_map(|&o| (o as i64).to_le_bytes())
            .collect();
        let positions: Vec<u8> = self
            .positions
            .iter()
            .flat_map(|&p| (p as i32).to_le_bytes())
            .collect();
        let ids: Vec<u8> = self.ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        let lp: Vec<u8> = self.logprobs.iter().flat_map(|v| v.to_le_bytes()).collect();
        let p = self.positions.len();
        fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>> {
            TensorView::new(dtype, shape, data)
                .map_err(|e| Error::Backend(format!("teacher cache tensor: {e}")))
        }
        let tensors = vec![
            (
                "offsets",
                view(Dtype::I64, vec![self.offsets.len()], &offsets)?,
            ),
            ("positions", view(Dtype::I32, vec![p], &positions)?),
            ("ids", view(Dtype::I32, vec![p, self.top_k], &ids)?),
            ("logprobs", view(Dtype::F32, vec![p, self.top_k], &lp)?),
        ];
        let metadata: HashMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("top_k", self.top_k.to_string()),
            ("temperature", self.temperature.to_string()),
            ("vocab_size", self.vocab_size.to_string()),
            ("teacher", self.teacher.clone()),
            ("fingerprint", self.fingerprint.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let data = safetensors::serialize(tensors, Some(metadata))
            .map_err(|e| Error::Backend(format!("serializing the teacher cache: {e}")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| crate::trainer::io(dir, e))?;
        }
        slm_core::io::write_atomic(path, &data)?;
        Ok(())
    }

    /// Reads a cache written by [`save`](Self::save), checking its structure.
    ///
    /// # Errors
    /// I/O errors, and a format error naming the file for anything that is not such a cache
    /// (other format, missing tensors or metadata, inconsistent shapes, ids outside the
    /// vocabulary, log-probabilities that are not finite and at most 0).
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |m: String| Error::Core(slm_core::Error::format(path, m));
        let map = std::fs::read(path).map_err(|e| crate::trainer::io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&map)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let field = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(format!("no `{k}` in the metadata")))
        };
        if field("format")? != FORMAT {
            return Err(bad(format!("format is not {FORMAT}")));
        }
        let number = |k: &str| -> Result<f64> {
            field(k)?
                .parse::<f64>()
                .map_err(|_| bad(format!("`{k}` is not a number")))
        };
        let top_k = number("top_k")? as usize;
        let vocab_size = number("vocab_size")? as usize;
        let temperature = number("temperature")?;
        if top_k == 0 || top_k > vocab_size || !(temperature > 0.0 && temperature.is_finite()) {
            return Err(bad(format!(
                "top_k {top_k}, vocab_size {vocab_size}, temperature {temperature} are not a \
                 valid setting"
            )));
        }
        let tensor = |name: &str, dtype: Dtype| {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("no `{name}` tensor")))?;
            if t.dtype() != dtype {
                return Err(bad(format!("`{name}` is {:?}, not {dtype:?}", t.dtype())));
            }
            Ok((t.shape().to_vec(), t.data().to_vec()))
        };
        let le4 = |d: &[u8]| -> Vec<[u8; 4]> {
            d.chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect()
        };
        let (os, od) = tensor("offsets", Dtype::I64)?;
        let offsets: Vec<i64> = od
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let (ps, pd) = tensor("positions", Dtype::I32)?;
        let positions: Vec<i32> = le4(&pd).into_iter().map(i32::from_le_bytes).collect();
        let (is, id) = tensor("ids", Dtype::I32)?;
        let ids: Vec<i32> = le4(&id).into_iter().map(i32::from_le_bytes).collect();
        let (ls, ld) = tensor("logprobs", Dtype::F32)?;
        let logprobs: Vec<f32> = le4(&ld).into_iter().map(f32::from_le_bytes).collect();
        let p = positions.len();
        if os.len() != 1
            || os[0] < 2
            || ps != [p]
            || is != [p, top_k]
            || ls != [p, top_k]
            || offsets[0] != 0
            || offsets.windows(2).any(|w| w[1] < w[0])
            || offsets.last().copied() != Some(p as i64)
        {
            return Err(bad(format!(
                "inconsistent shapes: offsets {os:?}, positions {ps:?}, ids {is:?}, logprobs \
                 {ls:?} for top_k {top_k}"
            )));
        }
        if positions.iter().any(|&x| x < 0) {
            return Err(bad("a negative position".into()));
        }
        if let Some(i) = ids.iter().find(|&&i| i < 0 || i as usize >= vocab_size) {
            return Err(bad(format!(
                "token id {i} is outside the vocabulary ({vocab_size})"
            )));
        }
        if let Some(v) = logprobs.iter().find(|v| !v.is_finite() || **v > 1e-6) {
            return Err(bad(format!("log-probability {v} is not finite and <= 0")));
        }
        Ok(TeacherCache {
            path: Some(path.to_path_buf()),
            top_k,
            temperature,
            vocab_size,
            teacher: field("teacher")?,
            fingerprint: field("fingerprint")?,
            offsets: offsets.into_iter().map(|o| o as usize).collect(),
            positions: positions.into_iter().map(|p| p as u32).collect(),
            ids,
            logprobs,
        })
    }
}

/// The `k` largest of `log_softmax(row / t)`, largest first, with their ids (ties to the
/// lower id).
fn top_k_log_softmax(row: &[f32], t: f64, k: usize) -> (Vec<i32>, Vec<f32>) {
    let scaled: Vec<f64> = row.iter().map(|&z| z as f64 / t).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_z = max + scaled.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
    let mut order: Vec<usize> = (0..row.len()).collect();
    let by_value = |a: &usize, b: &usize| scaled[*b].total_cmp(&scaled[*a]).then(a.cmp(b));
    if k < order.len() {
        order.select_nth_unstable_by(k, by_value);
        order.truncate(k);
    }
    order.sort_by(by_value);
    let ids = order.iter().map(|&i| i as i32).collect();
    let lp = order.iter().map(|&i| (scaled[i] - log_z) as f32).collect();
    (ids, lp)
}

/// The example (index into the batcher's examples) and position within it of token `pos` of
/// row `row`, if it is not padding.
fn locate(batch: &Batch, row: usize, pos: usize) -> Option<(usize, usize)> {
    let seg = batch.segment_ids[row][pos] as usize;
    if seg == 0 {
        return None;
    }
    let e = *batch.example_indices[row].get(seg - 1)?;
    Some((e, batch.position_ids[row][pos] as usize))
}
