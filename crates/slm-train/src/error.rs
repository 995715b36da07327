//! The error type of slm-train: every variant names the hyper-parameter, tensor or element at
//! fault.

/// Everything that can go wrong while configuring or stepping an optimizer or schedule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hyper-parameter is out of its valid range (a negative learning rate, a beta of 1, ...).
    #[error("invalid {name} = {value}: expected {expected}")]
    InvalidHyperParameter {
        /// The parameter's name, as the config spells it (`lr`, `betas.0`, `eps`, ...).
        name: &'static str,
        /// The value given.
        value: f64,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// A schedule warms up for longer than it trains.
    #[error(
        "num_warmup_steps = {num_warmup_steps} exceeds num_training_steps = {num_training_steps}"
    )]
    WarmupExceedsTotal {
        /// Warmup steps asked for.
        num_warmup_steps: u64,
        /// Total training steps.
        num_training_steps: u64,
    },
    /// A gradient holds NaN or an infinity; nothing was updated.
    #[error("gradient element {index}{} is {value}: refusing a non-finite gradient", tensor_suffix(.tensor))]
    NonFinite {
        /// Which tensor of a list, when the call takes several.
        tensor: Option<usize>,
        /// The element's index within its tensor.
        index: usize,
        /// The value itself.
        value: f32,
    },
    /// A batch does not fit the model (empty, ragged, ids or labels outside the vocabulary,
    /// no target token).
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// The loss became NaN or infinite: training stops, the last good checkpoint stays.
    #[error("the loss is {loss} at step {step}; the last good checkpoint is kept")]
    NonFiniteLoss {
        /// The optimizer step (from 1) whose loss was not finite.
        step: u64,
        /// The loss value.
        loss: f64,
    },
    /// The model has nothing to train (every parameter frozen).
    #[error("the model has no trainable parameter")]
    NothingToTrain,
    /// An error of the model crate (loading, saving, adapters).
    #[error(transparent)]
    Core(#[from] slm_core::Error),
    /// A tensor could not be read back from the backend.
    #[error("backend: {0}")]
    Backend(String),
    /// Parameters, gradients or optimizer state differ in length.
    #[error("{what} has {got} elements, expected {expected}")]
    LengthMismatch {
        /// `"params"` or `"grads"`.
        what: &'static str,
        /// The length the optimizer state was built for.
        expected: usize,
        /// The length given.
        got: usize,
    },
}

fn tensor_suffix(tensor: &Option<usize>) -> String {
    tensor
        .map(|t| format!(" of tensor {t}"))
        .unwrap_or_default()
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Ok(())` when `ok`, else [`Error::InvalidHyperParameter`].
pub(crate) fn check(
    ok: bool,
    name: &'static str,
    value: f64,
    expected: &'static str,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidHyperParameter {
            name,
            value,
            expected,
        })
    }
}

/// `value` is finite and `>= 0`.
pub(crate) fn check_non_negative(name: &'static str, value: f64) -> Result<()> {
    check(
        value.is_finite() && value >= 0.0,
        name,
        value,
        "a finite number >= 0",
    )
}

/// `value` is finite and `> 0`.
pub(crate) fn check_positive(name: &'static str, value: f64) -> Result<()> {
    check(
        value.is_finite() && value > 0.0,
        name,
        value,
        "a finite number > 0",
    )
}

/// The first non-finite element of `grads`, as an error.
pub(crate) fn check_finite(tensor: Option<usize>, grads: &[f32]) -> Result<()> {
    match grads.iter().position(|g| !g.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            tensor,
            index,
            value: grads[index],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_culprit() {
        let e = check_non_negative("lr", -0.1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid lr = -0.1: expected a finite number >= 0"
        );
        let e = check_finite(Some(2), &[0.0, f32::NAN]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "gradient element 1 of tensor 2 is NaN: refusing a non-finite gradient"
        );
        let e = check_finite(None, &[f32::NEG_INFINITY]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "gradient element 0 is -inf: refusing a non-finite gradient"
        );
    }

    #[test]
    fn bounds_are_checked() {
        assert!(check_non_negative("eps", 0.0).is_ok());
        assert!(check_positive("max_norm", 0.0).is_err());
        assert!(check_non_negative("eps", f64::NAN).is_err());
        assert!(check_positive("max_norm", f64::INFINITY).is_err());
    }
}
