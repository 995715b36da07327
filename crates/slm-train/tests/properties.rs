//! Invariants of the schedules and of clipping, over random hyper-parameters and gradients.

use proptest::prelude::*;
use slm_train::prelude::*;

fn schedules() -> impl Strategy<Value = LrSchedule> {
    (1e-6f64..1.0, 0u64..50, 0u64..500).prop_flat_map(|(lr, w, extra)| {
        let t = w + extra;
        prop_oneof![
            Just(LrSchedule::constant(lr).unwrap()),
            Just(LrSchedule::constant_with_warmup(lr, w).unwrap()),
            Just(LrSchedule::linear_with_warmup(lr, w, t).unwrap()),
            Just(LrSchedule::cosine_with_warmup(lr, w, t).unwrap()),
        ]
    })
}

fn total_steps(s: &LrSchedule) -> u64 {
    match *s {
        LrSchedule::LinearWithWarmup {
            num_training_steps, ..
        }
        | LrSchedule::CosineWithWarmup {
            num_training_steps, ..
        } => num_training_steps,
        _ => 600,
    }
}

proptest! {
    #[test]
    fn lr_stays_in_zero_to_base_and_warmup_rises(s in schedules()) {
        let base = s.base_lr();
        let t = total_steps(&s);
        let mut prev = -1.0f64;
        for step in 0..=t {
            let lr = s.lr_at(step);
            prop_assert!((0.0..=base).contains(&lr), "step {step}: {lr} outside [0, {base}]");
            let warmup = match s {
                LrSchedule::ConstantWithWarmup { num_warmup_steps, .. }
                | LrSchedule::LinearWithWarmup { num_warmup_steps, .. }
                | LrSchedule::CosineWithWarmup { num_warmup_steps, .. } => num_warmup_steps,
                _ => 0,
            };
            if step == 0 {
                prop_assert!(lr == 0.0 || warmup == 0, "warmup starts at 0");
            } else if step < warmup {
                prop_assert!(lr > prev, "step {step}: warmup must rise");
            } else if step > warmup {
                prop_assert!(lr <= prev, "step {step}: rose after warmup");
            }
            prev = lr;
        }
    }

    #[test]
    fn clipped_norm_is_at_most_max_norm(
        grads in prop::collection::vec(prop::collection::vec(-100.0f32..100.0, 0..20), 0..5),
        max_norm in 0.01f32..10.0,
    ) {
        let mut grads = grads;
        let before: Vec<Vec<f32>> = grads.clone();
        let mut views: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
        let total = clip_grad_norm(&mut views, max_norm).unwrap();
        let after = grads.iter().flatten().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        prop_assert!(after <= f64::from(max_norm) * (1.0 + 1e-5), "{after} > {max_norm}");
        if total + 1e-3 < max_norm {
            prop_assert_eq!(&grads, &before, "coef is 1: gradients unchanged");
        }
    }
}
