//! Distillation losses and their gradients against float64 references
//! (fixtures/distill: forward and reverse KL at T=2 with T^2 scaling, TRL GKD's generalized
//! JSD at T=2 and T=1, hard CE, and alpha-mixed), over labels with -100 positions.

mod common;

use burn::prelude::*;
use common::*;
use slm_train::{DistillLoss, distill_loss, divergence, hard_ce};

/// The fixture's labels, `[B][T]` with -100.
fn labels(fx: &serde_json::Value) -> Vec<Vec<i64>> {
    fx["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect()
        })
        .collect()
}

fn rel(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1e-12)
}

#[test]
fn distillation_losses_and_gradients_match() {
    let fx = json("distill/distill.json");
    let inputs = tensors("distill/inputs.safetensors");
    let grads = tensors("distill/grads.safetensors");
    let labels = labels(&fx);
    let (t, alpha, beta) = (
        fx["temperature"].as_f64().unwrap(),
        fx["alpha"].as_f64().unwrap(),
        fx["beta"].as_f64().unwrap(),
    );
    let device = Device::flex().autodiff();
    let tensor = |name: &str| {
        let (shape, v) = inputs[name].clone();
        Tensor::<3>::from_data(TensorData::new(v, [shape[0], shape[1], shape[2]]), &device)
    };
    type LossFn<'a> = Box<dyn Fn(Tensor<3>, Tensor<3>) -> Tensor<1> + 'a>;
    let cases: Vec<(&str, LossFn)> = vec![
        (
            "forward_kl",
            Box::new(|s, te| divergence(s, te, &labels, DistillLoss::ForwardKl, t).unwrap()),
        ),
        (
            "reverse_kl",
            Box::new(|s, te| divergence(s, te, &labels, DistillLoss::ReverseKl, t).unwrap()),
        ),
        (
            "jsd_T",
            Box::new(|s, te| divergence(s, te, &labels, DistillLoss::Jsd { beta }, t).unwrap()),
        ),
        (
            "jsd_T1",
            Box::new(|s, te| divergence(s, te, &labels, DistillLoss::Jsd { beta }, 1.0).unwrap()),
        ),
        ("ce", Box::new(|s, _| hard_ce(s, &labels).unwrap())),
        (
            "combined",
            Box::new(|s, te| {
                distill_loss(s, te, &labels, DistillLoss::ForwardKl, t, alpha).unwrap()
            }),
        ),
    ];
    for (name, f) in cases {
        let student = tensor("student_logits").require_grad();
        let teacher = tensor("teacher_logits").without_autodiff();
        let loss = f(student.clone(), teacher);
        let value = loss.clone().into_scalar::<f32>() as f64;
        let want = fx["values"][name].as_f64().unwrap();
        eprintln!("{name}: {value} vs {want} (rel {:e})", rel(value, want));
        assert!(rel(value, want) <= 1e-5, "{name}: {value} vs {want}");
        if let Some((_, g_want)) = grads.get(&format!("grad_{name}")) {
            let g = student
                .grad(&loss.backward())
                .unwrap()
                .try_into_vec_as::<f32>()
                .unwrap();
            let scale = g_want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = max_abs_diff(&g, g_want) / scale;
            eprintln!("  grad rel diff {d:e}");
            assert!(d <= 1e-5, "{name}: gradient rel diff {d}");
        }
    }
}

#[test]
fn mismatched_vocabularies_are_refused() {
    let device = Device::flex();
    let s = Tensor::<3>::zeros([1, 2, 50], &device);
    let t = Tensor::<3>::zeros([1, 2, 49], &device);
    let e = divergence(s, t, &[vec![1, 2]], DistillLoss::ForwardKl, 2.0).unwrap_err();
    assert!(e.to_string().contains("share a tokenizer"), "{e}");
}

/// With k equal to the vocabulary the top-k estimator is the full divergence; with a small k
/// it stays close when the teacher's top-k holds most of the mass, and below it (the tail is
/// coarsened into one bucket).
#[test]
fn top_k_buckets_recover_the_full_divergence() {
    use slm_train::divergence_top_k;
    let inputs = tensors("distill/inputs.safetensors");
    let fx = json("distill/distill.json");
    let labels = labels(&fx);
    let device = Device::flex();
    let tensor = |name: &str| {
        let (shape, v) = inputs[name].clone();
        Tensor::<3>::from_data(TensorData::new(v, [shape[0], shape[1], shape[2]]), &device)
    };
    for loss in [
        DistillLoss::ForwardKl,
        DistillLoss::ReverseKl,
        DistillLoss::Jsd { beta: 0.5 },
    ] {
        let full = divergence(
            tensor("student_logits"),
            tensor("teacher_logits"),
            &labels,
            loss,
            2.0,
        )
        .unwrap()
        .into_scalar::<f32>() as f64;
        let all = divergence_top_k(
            tensor("student_logits"),
            tensor("teacher_logits"),
            &labels,
            loss,
            2.0,
            50,
        )
        .unwrap()
        .into_scalar::<f32>() as f64;
        assert!(
            rel(all, full) <= 1e-4,
            "{loss:?}: k = V gives {all}, full {full}"
        );
        let top8 = divergence_top_k(
            tensor("student_logits"),
            tensor("teacher_logits"),
            &labels,
            loss,
            2.0,
            8,
        )
        .unwrap()
        .into_scalar::<f32>() as f64;
        assert!(
            top8 <= full + 1e-6 && top8 > 0.0,
            "{loss:?}: top-8 {top8} vs full {full}"
        );
    }
}
