//! The decoder passes' elementwise math between the products: SwiGLU's gate (`silu(g) * u`)
//! and a softmax's numerators (`e^(v - max)`), with a vectorised `exp` (AVX2 + FMA) where the
//! CPU has it and the standard library's `exp` otherwise. The AVX2 `exp` is within 2 ulp of
//! the exact value; each value's result depends only on that value (the tail of a slice goes
//! through the same lanes), so a token's activations do not depend on what shares its batch.

use super::Kernel;

/// `g[i] = g[i] / (1 + e^-g[i]) * u[i]` over the common length (SwiGLU: SiLU of the gate
/// projection times the up projection).
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect() == Kernel::Avx2 {
        // SAFETY: the CPU has AVX2 and FMA (`Kernel::detect`).
        unsafe { super::x86::silu_mul(g, u) };
        return;
    }
    g.iter_mut()
        .zip(u)
        .for_each(|(g, u)| *g = *g / (1.0 + (-*g).exp()) * u);
}

/// `v[i] = e^(v[i] - m)` (the numerators of a softmax whose largest input is `m`).
pub fn exp_minus(v: &mut [f32], m: f32) {
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect() == Kernel::Avx2 {
        // SAFETY: as above.
        unsafe { super::x86::exp_minus(v, m) };
        return;
    }
    v.iter_mut().for_each(|x| *x = (*x - m).exp());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite f32 of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_over_the_whole_range() {
        // Every 997th f32 bit pattern between -104 and 89, plus the edges.
        let mut xs: Vec<f32> = (0..u32::MAX / 997)
            .map(|i| f32::from_bits(i * 997))
            .filter(|x| x.is_finite() && (-104.0..89.0).contains(x))
            .collect();
        let negated: Vec<f32> = xs.iter().take(1000).map(|x| -x).collect();
        xs.extend(negated);
        xs.extend([
            0.0, -0.0, 1e-30, -1e-30, 88.3, 88.72, -87.3, -87.4, -100.0, -103.9,
        ]);
        let mut v = xs.clone();
        exp_minus(&mut v, 0.0);
        for (&x, &got) in xs.iter().zip(&v) {
            let want = (x as f64).exp();
            if want < f32::MIN_POSITIVE as f64 {
                // Subnormal results: absolute error, as `expf` (flushes near -104).
                assert!(
                    (got as f64 - want).abs() <= 2.0 * 1.4e-45 + want * 1e-6,
                    "e^{x}: {got} vs {want}"
                );
                continue;
            }
            let want = want as f32;
            if want.is_infinite() {
                assert_eq!(got, want, "e^{x}");
                continue;
            }
            assert!(got.is_finite(), "e^{x}: {got}");
            assert!(
                ulps(got, want) <= 2,
                "e^{x}: {got} vs {want} ({} ulp)",
                ulps(got, want)
            );
        }
    }

    #[test]
    fn exp_saturates_like_expf() {
        let mut v = [
            89.0,
            100.0,
            1e10,
            f32::INFINITY,
            -105.0,
            -1e10,
            f32::NEG_INFINITY,
            0.0,
            1.0,
        ];
        exp_minus(&mut v, 0.0);
        assert_eq!(&v[..4], &[f32::INFINITY; 4]);
        assert_eq!(&v[4..7], &[0.0; 3]);
        assert_eq!(v[7], 1.0);
        assert!(ulps(v[8], std::f32::consts::E) <= 1);
        // The shift by the maximum: e^(v - m).
        let mut w = [3.0f32, 1.0, -2.0];
        exp_minus(&mut w, 3.0);
        for (got, want) in w.iter().zip([0.0f64, -2.0, -5.0]) {
            assert!(ulps(*got, want.exp() as f32) <= 2);
        }
    }

    #[test]
    fn silu_mul_matches_its_definition() {
        let g: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) * 0.37).collect();
        let u: Vec<f32> = (0..203).map(|i| 1.5 - (i % 7) as f32 * 0.5).collect();
        let mut got = g.clone();
        silu_mul(&mut got, &u);
        for ((&x, &u), got) in g.iter().zip(&u).zip(got) {
            let want = x as f64 / (1.0 + (-x as f64).exp()) * u as f64;
            assert!(
                (got as f64 - want).abs() <= 5e-7 * want.abs() + 1e-30,
                "silu({x}) * {u}: {got} vs {want}"
            );
        }
        // Large gates: no NaN from inf / inf, the limits x (x > 0) and -0 (x < 0).
        let mut big = [100.0f32, -100.0, 1e30, -1e30];
        silu_mul(&mut big, &[1.0; 4]);
        assert_eq!(big[0], 100.0);
        assert_eq!(big[2], 1e30);
        assert!(big[1].abs() < 1e-30 && big[3] == 0.0, "{big:?}");
    }

    #[test]
    fn a_value_gets_the_same_result_wherever_it_sits() {
        // The batch-invariance the engine relies on: the tail lanes compute as the body's do.
        let g: Vec<f32> = (0..19).map(|i| (i as f32 * 0.731).sin() * 6.0).collect();
        let u = vec![1.25f32; 19];
        let mut whole = g.clone();
        silu_mul(&mut whole, &u);
        for start in 0..g.len() {
            for len in 1..=g.len() - start {
                let mut part = g[start..start + len].to_vec();
                silu_mul(&mut part, &u[..len]);
                assert_eq!(part, whole[start..start + len], "start {start} len {len}");
            }
        }
        let mut whole = g.clone();
        exp_minus(&mut whole, 2.0);
        for i in 0..g.len() {
            let mut one = [g[i]];
            exp_minus(&mut one, 2.0);
            assert_eq!(one[0], whole[i]);
        }
    }
}
