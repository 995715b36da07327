//! Gradient clipping against `torch.nn.utils.clip_grad_norm_(params, max_norm=1.0,
//! norm_type=2.0)` on three tensors: a clipped case (`big`) and an untouched one (`small`).

mod common;

use common::*;
use slm_train::prelude::*;

#[test]
fn clipped_and_unclipped_cases_match_torch() {
    let fx = json("train/clip.json");
    let t = tensors("train/clip.safetensors");
    let max_norm = fx["max_norm"].as_f64().unwrap() as f32;
    let n_tensors = fx["shapes"].as_array().unwrap().len();
    for (case, spec) in fx["cases"].as_object().unwrap() {
        let mut grads: Vec<Vec<f32>> = (0..n_tensors)
            .map(|i| t[&format!("{case}.grad_{i}")].1.clone())
            .collect();
        let mut views: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
        let total = clip_grad_norm(&mut views, max_norm).unwrap();
        let want = spec["total_norm"].as_f64().unwrap() as f32;
        assert!(
            (total - want).abs() <= OPTIM_ATOL,
            "{case}: total norm {total} vs {want}"
        );
        assert_eq!(
            f64::from(max_norm) / f64::from(total) < 1.0,
            spec["clipped"].as_bool().unwrap(),
            "{case}"
        );
        for (i, g) in grads.iter().enumerate() {
            let diff = max_abs_diff(g, &t[&format!("{case}.clipped_{i}")].1);
            assert!(diff <= OPTIM_ATOL, "{case} tensor {i}: max abs diff {diff}");
        }
    }
}
