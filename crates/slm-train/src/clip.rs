//! Gradient clipping by global L2 norm, as `torch.nn.utils.clip_grad_norm_(params, max_norm,
//! norm_type=2)`.

use crate::error::{Result, check_finite, check_positive};

/// PyTorch's guard against dividing by a zero norm: `coef = max_norm / (total + 1e-6)`.
pub const CLIP_EPS: f32 = 1e-6;

/// Scales `grads` (one slice per parameter tensor) so that their global L2 norm is at most
/// `max_norm`, and returns the norm before clipping.
///
/// `total = sqrt(sum_i ||g_i||^2)`, `coef = min(1, max_norm / (total + 1e-6))`, and every
/// gradient is multiplied by `coef`, even when `coef == 1` (as PyTorch does). Norms are
/// accumulated in `f64` and rounded to `f32` per tensor and for the total.
///
/// # Errors
/// [`Error::InvalidHyperParameter`](crate::Error::InvalidHyperParameter) unless `max_norm` is
/// finite and `> 0`; [`Error::NonFinite`](crate::Error::NonFinite) naming the tensor and element
/// of the first NaN or infinite gradient (PyTorch's `error_if_nonfinite=True`). On error no
/// gradient changes.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> Result<f32> {
    check_positive("max_norm", f64::from(max_norm))?;
    for (i, g) in grads.iter().enumerate() {
        check_finite(Some(i), g)?;
    }
    let norms = grads.iter().map(|g| {
        let sum_sq: f64 = g.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        sum_sq.sqrt() as f32
    });
    let total = norms
        .map(|n| f64::from(n) * f64::from(n))
        .sum::<f64>()
        .sqrt() as f32;
    let coef = (max_norm / (total + CLIP_EPS)).min(1.0);
    for g in grads.iter_mut() {
        for x in g.iter_mut() {
            *x *= coef;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn large_gradients_are_scaled_to_max_norm() {
        let (mut a, mut b) = (vec![3.0f32, 0.0], vec![4.0f32]);
        let total = clip_grad_norm(&mut [&mut a, &mut b], 1.0).unwrap();
        assert_eq!(total, 5.0);
        let coef = 1.0 / (5.0 + CLIP_EPS);
        assert_eq!((a[0], b[0]), (3.0 * coef, 4.0 * coef));
    }

    #[test]
    fn small_gradients_are_kept() {
        let mut a = vec![0.3f32, 0.4];
        assert_eq!(clip_grad_norm(&mut [&mut a], 1.0).unwrap(), 0.5);
        assert_eq!(a, [0.3, 0.4]);
        assert_eq!(
            clip_grad_norm(&mut [], 1.0).unwrap(),
            0.0,
            "no gradients: norm 0"
        );
    }

    #[test]
    fn non_finite_gradients_change_nothing() {
        let (mut a, mut b) = (vec![10.0f32], vec![1.0f32, f32::INFINITY]);
        let err = clip_grad_norm(&mut [&mut a, &mut b], 1.0).unwrap_err();
        assert!(matches!(
            err,
            Error::NonFinite {
                tensor: Some(1),
                index: 1,
                ..
            }
        ));
        assert_eq!(a, [10.0]);
        assert!(matches!(
            clip_grad_norm(&mut [&mut a], 0.0),
            Err(Error::InvalidHyperParameter {
                name: "max_norm",
                ..
            })
        ));
    }
}
