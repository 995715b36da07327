//! AdamW against `torch.optim.AdamW([p], lr=0.01, betas=(0.9, 0.999), eps=1e-08,
//! weight_decay=0.1, foreach=False)`: the parameter after each of 5 given gradients.

mod common;

use common::*;
use slm_train::prelude::*;

/// A fixture's tensors by name: (shape, values).
type Tensors = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

/// The fixture's settings, tensors and AdamW config.
fn fixture_case() -> (serde_json::Value, Tensors, AdamWConfig) {
    let fx = json("train/adamw.json");
    let t = tensors("train/adamw.safetensors");
    let betas = fx["betas"].as_array().unwrap();
    let config = AdamWConfig {
        lr: fx["lr"].as_f64().unwrap(),
        betas: (betas[0].as_f64().unwrap(), betas[1].as_f64().unwrap()),
        eps: fx["eps"].as_f64().unwrap(),
        weight_decay: fx["weight_decay"].as_f64().unwrap(),
    };
    (fx, t, config)
}

#[test]
fn five_steps_match_torch() {
    let (fx, t, config) = fixture_case();
    let (shape, mut param) = t["param_init"].clone();
    let want_shape: Vec<usize> = fx["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(shape, want_shape);
    let mut opt = config.init(param.len()).unwrap();
    let n = fx["n_steps"].as_u64().unwrap();
    for k in 1..=n {
        let grad = &t[&format!("grad_{k}")].1;
        opt.step(&mut param, grad).unwrap();
        let diff = max_abs_diff(&param, &t[&format!("param_after_{k}")].1);
        eprintln!("step {k}: max abs diff {diff:e}");
        assert!(diff <= OPTIM_ATOL, "step {k}: max abs diff {diff}");
    }
    assert_eq!(opt.steps_taken(), n);
}

/// The burn optimizer on a module parameter, given the same gradients: torch's values within
/// the same tolerance, and equal to the reference implementation.
#[test]
fn tensor_adamw_on_a_module_matches_torch() {
    use burn::module::{Module, Param};
    use burn::prelude::*;

    #[derive(Module, Debug)]
    struct One {
        w: Param<Tensor<2>>,
    }

    let (fx, t, config) = fixture_case();
    let device = Device::flex().autodiff();
    let (shape, init) = t["param_init"].clone();
    let tensor =
        |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [shape[0], shape[1]]), &device);
    let mut module = One {
        w: Param::from_tensor(tensor(init)),
    };
    let mut opt = slm_train::TensorAdamW::new(config).unwrap();
    for k in 1..=fx["n_steps"].as_u64().unwrap() {
        let mut grads = slm_train::Grads::default();
        grads.insert(
            module.w.id,
            tensor(t[&format!("grad_{k}")].1.clone()).inner(),
        );
        module = opt.step(config.lr, module, grads);
        let got = module.w.val().try_into_vec_as::<f32>().unwrap();
        let diff = max_abs_diff(&got, &t[&format!("param_after_{k}")].1);
        eprintln!("tensor AdamW step {k}: max abs diff {diff:e}");
        assert!(diff <= OPTIM_ATOL, "step {k}: max abs diff {diff}");
    }
    assert_eq!(opt.steps_taken(), 5);
}
