//! Knowledge-distillation losses between student and teacher logits `[B, T, V]` over the
//! positions whose label is not -100 (labels aligned with the logits, no shift: the caller
//! passes the logits and labels of the positions to distil), differentiable in the student:
//!
//! - [`DistillLoss::ForwardKl`]: `T^2 * mean KL(p_teacher || p_student)` with both softened
//!   by temperature `T` (Hinton et al.; what `F.kl_div(log_softmax(s/T), log_softmax(t/T),
//!   log_target=True)` gives, times `T^2` so gradients keep their scale);
//! - [`DistillLoss::ReverseKl`]: `T^2 * mean KL(p_student || p_teacher)` (mode-seeking);
//! - [`DistillLoss::Jsd`]: TRL GKD's generalized Jensen-Shannon divergence with `beta`
//!   (`m = beta * p_t + (1 - beta) * p_s`, `beta * KL(p_t || m) + (1 - beta) * KL(p_s || m)`,
//!   no `T^2`, as `GKDTrainer.generalized_jsd_loss`);
//! - hard cross-entropy on the labels, mixed in by `alpha` ([`distill_loss`]).
//!
//! The teacher's logits are constants (computed without autodiff).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};
use slm_data::inputs::IGNORE_INDEX;

use crate::error::{Error, Result};

/// Which divergence pulls the student to the teacher.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DistillLoss {
    /// `KL(teacher || student)`, times `T^2`.
    ForwardKl,
    /// `KL(student || teacher)`, times `T^2`.
    ReverseKl,
    /// Generalized JSD with weight `beta` on the teacher (TRL GKD), no `T^2`.
    Jsd {
        /// The teacher's weight in the mixture, in `(0, 1)`.
        beta: f64,
    },
}

/// Position weights `[B, T, 1]` (1 where the label is not -100) and their count.
fn valid_positions(
    labels: &[Vec<i64>],
    dims: [usize; 3],
    device: &Device,
) -> Result<(Tensor<3>, usize)> {
    let [b, t, _] = dims;
    if labels.len() != b || labels.iter().any(|r| r.len() != t) {
        return Err(Error::InvalidBatch(format!(
            "labels are not {b} x {t} like the logits"
        )));
    }
    let w: Vec<f32> = labels
        .iter()
        .flatten()
        .map(|&l| if l == IGNORE_INDEX { 0.0 } else { 1.0 })
        .collect();
    let n = w.iter().filter(|&&x| x > 0.0).count();
    if n == 0 {
        return Err(Error::InvalidBatch(
            "no position to distil (every label is -100)".into(),
        ));
    }
    Ok((Tensor::from_data(TensorData::new(w, [b, t, 1]), device), n))
}

/// Checks a student/teacher pair (same shape, positive temperature) and returns the position
/// weights with their count.
fn checked_pair(
    student: &Tensor<3>,
    teacher: &Tensor<3>,
    labels: &[Vec<i64>],
    temperature: f64,
) -> Result<(Tensor<3>, usize)> {
    crate::error::check(
        temperature > 0.0 && temperature.is_finite(),
        "temperature",
        temperature,
        "positive",
    )?;
    if student.dims() != teacher.dims() {
        return Err(Error::InvalidBatch(format!(
            "student logits {:?} and teacher logits {:?} differ (do they share a tokenizer?)",
            student.dims(),
            teacher.dims()
        )));
    }
    valid_positions(labels, student.dims(), &student.device())
}

/// The divergence `loss` between `student` and `teacher` logits at temperature `temperature`,
/// averaged over the positions whose label is not -100; a `[1]` tensor.
///
/// # Errors
/// [`Error::InvalidBatch`] for mismatched shapes or no valid position;
/// [`Error::InvalidHyperParameter`] for a non-positive temperature or a beta outside (0, 1).
pub fn divergence(
    student: Tensor<3>,
    teacher: Tensor<3>,
    labels: &[Vec<i64>],
    loss: DistillLoss,
    temperature: f64,
) -> Result<Tensor<1>> {
    let (w, n) = checked_pair(&student, &teacher, labels, temperature)?;
    let ls = log_softmax(student.div_scalar(temperature), 2);
    let lt = log_softmax(teacher.div_scalar(temperature), 2);
    let per_token = bucket_divergence(ls, lt, loss, temperature)?;
    Ok((per_token * w).sum().div_scalar(n as f64).reshape([1]))
}

/// [`divergence`] over the teacher's `k` most likely tokens plus one bucket holding the rest
/// of the probability mass, per position: the estimator a top-k teacher cache allows.
///
/// With `p` the teacher's and `q` the student's softened distributions and `K` the teacher's
/// top-k ids at a position, both become `k + 1` buckets, `(p_i)_{i in K}` and
/// `1 - sum_{i in K} p_i` (the student's the same at the same ids), and the divergence is taken
/// between those. It equals the full divergence when `k` is the vocabulary size, and
/// otherwise coarsens the tail into one bucket (a lower bound on the KL, by the data-processing
/// inequality), which is tight when the teacher's top-k holds nearly all its mass.
///
/// # Errors
/// As [`divergence`]; `k` of 0 or beyond the vocabulary.
pub fn divergence_top_k(
    student: Tensor<3>,
    teacher: Tensor<3>,
    labels: &[Vec<i64>],
    loss: DistillLoss,
    temperature: f64,
    k: usize,
) -> Result<Tensor<1>> {
    check_top_k(k, student.dims()[2])?;
    let (w, n) = checked_pair(&student, &teacher, labels, temperature)?;
    let lt_full = log_softmax(teacher.div_scalar(temperature), 2);
    let (lt_top, ids) = lt_full.topk_with_indices(k, 2);
    divergence_at_ids(student, ids, lt_top, (w, n), loss, temperature)
}

/// [`Error::InvalidHyperParameter`] unless `1 <= k <= vocab`.
pub(crate) fn check_top_k(k: usize, vocab: usize) -> Result<()> {
    crate::error::check(
        k > 0 && k <= vocab,
        "top_k",
        k as f64,
        "between 1 and the vocabulary size",
    )
}

/// `log(1 - sum(exp(top)))` appended to `top` `[B, T, k]`: the rest bucket.
fn with_rest(top: Tensor<3>) -> Tensor<3> {
    let rest = top
        .clone()
        .exp()
        .sum_dim(2)
        .neg()
        .add_scalar(1.0)
        .clamp_min(1e-12)
        .log();
    Tensor::cat(vec![top, rest], 2)
}

/// The top-k estimator of [`divergence_top_k`] from the teacher's softened log-probabilities
/// `teacher_top` at token ids `ids` (both `[B, T, k]`: computed now, or read from a
/// [`TeacherCache`](crate::TeacherCache)), weighted by the position weights `(w, n)`.
fn divergence_at_ids(
    student: Tensor<3>,
    ids: Tensor<3, Int>,
    teacher_top: Tensor<3>,
    (w, n): (Tensor<3>, usize),
    loss: DistillLoss,
    temperature: f64,
) -> Result<Tensor<1>> {
    let ls_full = log_softmax(student.div_scalar(temperature), 2);
    let ls = with_rest(ls_full.gather(2, ids));
    let per_token = bucket_divergence(ls, with_rest(teacher_top), loss, temperature)?;
    Ok((per_token * w).sum().div_scalar(n as f64).reshape([1]))
}

/// The per-position divergence `[B, T, 1]` between student and teacher log-distributions
/// over the same buckets (the vocabulary, or top-k plus the rest).
fn bucket_divergence(
    ls: Tensor<3>,
    lt: Tensor<3>,
    loss: DistillLoss,
    temperature: f64,
) -> Result<Tensor<3>> {
    Ok(match loss {
        DistillLoss::ForwardKl => (lt.clone().exp() * (lt - ls))
            .sum_dim(2)
            .mul_scalar(temperature * temperature),
        DistillLoss::ReverseKl => (ls.clone().exp() * (ls - lt))
            .sum_dim(2)
            .mul_scalar(temperature * temperature),
        DistillLoss::Jsd { beta } => {
            crate::error::check(beta > 0.0 && beta < 1.0, "beta", beta, "a number in (0, 1)")?;
            // log m = logsumexp(log p_s + log(1 - beta), log p_t + log(beta)), elementwise.
            let a = ls.clone().add_scalar((1.0 - beta).ln());
            let b = lt.clone().add_scalar(beta.ln());
            let hi = a.clone().max_pair(b.clone());
            let lm = hi.clone() + ((a - hi.clone()).exp() + (b - hi).exp()).log();
            let kl_t = (lt.clone().exp() * (lt - lm.clone())).sum_dim(2);
            let kl_s = (ls.clone().exp() * (ls - lm)).sum_dim(2);
            kl_t.mul_scalar(beta) + kl_s.mul_scalar(1.0 - beta)
        }
    })
}

/// Mean cross-entropy of `logits` against `labels` at the same positions (no shift), over the
/// labels that are not -100.
///
/// # Errors
/// [`Error::InvalidBatch`] for mismatched shapes, labels outside the vocabulary or none valid.
pub fn hard_ce(logits: Tensor<3>, labels: &[Vec<i64>]) -> Result<Tensor<1>> {
    let dims = logits.dims();
    let (w, n) = valid_positions(labels, dims, &logits.device())?;
    let v = dims[2];
    let mut index = Vec::with_capacity(dims[0] * dims[1]);
    for &l in labels.iter().flatten() {
        if l != IGNORE_INDEX && (l < 0 || l as usize >= v) {
            return Err(Error::InvalidBatch(format!(
                "label {l} is outside the vocabulary ({v})"
            )));
        }
        index.push(l.max(0) as i32);
    }
    let index = Tensor::<3, Int>::from_data(
        TensorData::new(index, [dims[0], dims[1], 1]),
        &logits.device(),
    );
    let picked = log_softmax(logits, 2).gather(2, index) * w;
    Ok(picked.sum().neg().div_scalar(n as f64).reshape([1]))
}

/// `alpha * divergence + (1 - alpha) * hard CE`: the usual distillation objective (alpha 1 is
/// pure distillation, 0 plain fine-tuning on the labels).
///
/// # Errors
/// As [`divergence`] and [`hard_ce`]; alpha outside `[0, 1]`.
pub fn distill_loss(
    student: Tensor<3>,
    teacher: Tensor<3>,
    labels: &[Vec<i64>],
    loss: DistillLoss,
    temperature: f64,
    alpha: f64,
) -> Result<Tensor<1>> {
    crate::error::check(
        (0.0..=1.0).contains(&alpha),
        "alpha",
        alpha,
        "a number in [0, 1]",
    )?;
    let soft = divergence(student.clone(), teacher, labels, loss, temperature)?;
    let hard = hard_ce(student, labels)?;
    Ok(soft.mul_scalar(alpha) + hard.mul_scalar(1.0 - alpha))
}

/// How a student learns from its teacher in [`Trainer`](crate::Trainer): the divergence, the
/// temperature, the weight `alpha` of the soft targets against the hard labels, and whether
/// the divergence uses the teacher's top-k tokens plus a rest bucket ([`divergence_top_k`]) or
/// its whole distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// The divergence.
    pub loss: DistillLoss,
    /// Softening temperature `T`.
    pub temperature: f64,
    /// Weight of the divergence; `1 - alpha` goes to the hard labels.
    pub alpha: f64,
    /// Teacher tokens kept per position (`None`: the whole vocabulary).
    pub top_k: Option<usize>,
}

impl Default for DistillConfig {
    fn default() -> Self {
        DistillConfig {
            loss: DistillLoss::ForwardKl,
            temperature: 2.0,
            alpha: 0.5,
            top_k: Some(64),
        }
    }
}

impl DistillConfig {
    /// The loss of `student` against `teacher` logits `[B, T, V]` with causal-LM labels `[B][T]`
    /// (aligned with the inputs, -100 where there is no target): position `t` is scored on the
    /// label at `t + 1`, as in [`causal_lm_loss`](crate::causal_lm_loss).
    ///
    /// # Errors
    /// As [`divergence`], [`divergence_top_k`] and [`hard_ce`].
    pub fn loss(
        &self,
        student: Tensor<3>,
        teacher: Tensor<3>,
        labels: &[Vec<i64>],
    ) -> Result<Tensor<1>> {
        if student.dims() != teacher.dims() {
            return Err(Error::InvalidBatch(format!(
                "student logits {:?} and teacher logits {:?} differ (do they share a tokenizer?)",
                student.dims(),
                teacher.dims()
            )));
        }
        let t = student.dims()[1];
        let shifted = shift(t, labels)?;
        let teacher = Aligned::Logits(teacher.narrow(1, 0, t - 1));
        self.aligned(student.narrow(1, 0, t - 1), teacher, &shifted)
    }

    /// [`loss`](Self::loss) from the teacher's top-k softened log-probabilities `logprobs` at
    /// token ids `ids` (`[B, T, k]`, position `t` predicting `t + 1`, as a
    /// [`TeacherCache`](crate::TeacherCache) gives them) instead of its logits: the same value
    /// as [`loss`](Self::loss) with `top_k: Some(k)` on the logits they came from.
    ///
    /// # Errors
    /// As [`loss`](Self::loss); shapes that disagree with the student's.
    pub fn loss_top_k(
        &self,
        student: Tensor<3>,
        ids: Tensor<3, Int>,
        logprobs: Tensor<3>,
        labels: &[Vec<i64>],
    ) -> Result<Tensor<1>> {
        let [b, t, _] = student.dims();
        let [bi, ti, k] = ids.dims();
        if [bi, ti] != [b, t] || logprobs.dims() != [b, t, k] || k == 0 {
            return Err(Error::InvalidBatch(format!(
                "teacher top-k ids {:?} and log-probs {:?} do not fit student logits {:?}",
                ids.dims(),
                logprobs.dims(),
                student.dims()
            )));
        }
        let shifted = shift(t, labels)?;
        let teacher = Aligned::TopK(ids.narrow(1, 0, t - 1), logprobs.narrow(1, 0, t - 1));
        self.aligned(student.narrow(1, 0, t - 1), teacher, &shifted)
    }

    /// The loss at a batch's target positions only: `student` from
    /// [`target_logits`](crate::forward::target_logits) and the teacher's signal at the same
    /// rows (its logits there, or its cached top-k). The same value as [`loss`](Self::loss) /
    /// [`loss_top_k`](Self::loss_top_k) on the whole batch.
    ///
    /// # Errors
    /// As [`loss`](Self::loss); a teacher signal whose rows do not match the student's.
    pub fn loss_at_targets(
        &self,
        student: &crate::forward::TargetLogits,
        teacher: TeacherRows,
    ) -> Result<Tensor<1>> {
        let [n, v] = student.logits.dims();
        let teacher = match teacher {
            TeacherRows::Logits(t) => {
                if t.dims() != [n, v] {
                    return Err(Error::InvalidBatch(format!(
                        "teacher logits {:?} at the targets do not match the student's {:?} \
                         (do they share a tokenizer?)",
                        t.dims(),
                        [n, v]
                    )));
                }
                Aligned::Logits(t.reshape([1, n, v]))
            }
            TeacherRows::TopK { ids, logprobs } => {
                let [ni, k] = ids.dims();
                if ni != n || logprobs.dims() != [n, k] || k == 0 {
                    return Err(Error::InvalidBatch(format!(
                        "teacher top-k ids {:?} and log-probs {:?} do not match {n} target rows",
                        ids.dims(),
                        logprobs.dims()
                    )));
                }
                Aligned::TopK(ids.reshape([1, n, k]), logprobs.reshape([1, n, k]))
            }
        };
        let s = student.logits.clone().reshape([1, n, v]);
        self.aligned(s, teacher, std::slice::from_ref(&student.labels))
    }

    /// `alpha * divergence + (1 - alpha) * hard CE` with `labels` aligned to the student's
    /// positions (no shift) and the teacher's signal at the same positions.
    fn aligned(
        &self,
        student: Tensor<3>,
        teacher: Aligned,
        labels: &[Vec<i64>],
    ) -> Result<Tensor<1>> {
        crate::error::check(
            (0.0..=1.0).contains(&self.alpha),
            "alpha",
            self.alpha,
            "a number in [0, 1]",
        )?;
        let (s, t) = (student.clone(), self.temperature);
        let soft = match teacher {
            Aligned::Logits(te) => match self.top_k {
                Some(k) => divergence_top_k(s, te, labels, self.loss, t, k)?,
                None => divergence(s, te, labels, self.loss, t)?,
            },
            Aligned::TopK(ids, logprobs) => {
                crate::error::check(t > 0.0 && t.is_finite(), "temperature", t, "positive")?;
                let weights = valid_positions(labels, s.dims(), &s.device())?;
                divergence_at_ids(s, ids, logprobs, weights, self.loss, t)?
            }
        };
        if self.alpha == 1.0 {
            return Ok(soft);
        }
        let hard = hard_ce(student, labels)?;
        Ok(soft.mul_scalar(self.alpha) + hard.mul_scalar(1.0 - self.alpha))
    }
}

/// The teacher's side of [`DistillConfig::aligned`], at the student's positions.
// Built and consumed once per loss: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Aligned {
    /// Logits `[B, T, vocab]`.
    Logits(Tensor<3>),
    /// Top-k ids and softened log-probabilities, `[B, T, k]` each.
    TopK(Tensor<3, Int>, Tensor<3>),
}

/// `labels` shifted by one (position `t` scored on the label at `t + 1`) for rows of `t`
/// tokens.
fn shift(t: usize, labels: &[Vec<i64>]) -> Result<Vec<Vec<i64>>> {
    if t < 2 {
        return Err(Error::InvalidBatch(
            "rows of one token have nothing to predict".into(),
        ));
    }
    Ok(labels
        .iter()
        .map(|r| r.iter().skip(1).copied().collect())
        .collect())
}

/// The teacher's side of [`DistillConfig::loss_at_targets`], at the student's target rows.
// Built and consumed once per micro-batch: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum TeacherRows {
    /// The teacher's logits `[N, vocab]` at those rows.
    Logits(Tensor<2>),
    /// Its cached top-k: token ids and softened log-probabilities, `[N, k]` each.
    TopK {
        /// Token ids.
        ids: Tensor<2, Int>,
        /// Log-probabilities at temperature `T`.
        logprobs: Tensor<2>,
    },
}
