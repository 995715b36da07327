//! Learning-rate schedules against transformers' `get_{cosine,linear,constant}_schedule_with_warmup`
//! (warmup 10, total 100, base lr 1e-3): every step 0..=100 within 1e-12.

mod common;

use common::*;
use slm_train::prelude::*;

#[test]
fn every_step_matches_transformers() {
    let fx = json("train/schedules.json");
    let lr = fx["base_lr"].as_f64().unwrap();
    let w = fx["num_warmup_steps"].as_u64().unwrap();
    let t = fx["num_training_steps"].as_u64().unwrap();
    let schedules = [
        (
            "cosine_with_warmup",
            LrSchedule::cosine_with_warmup(lr, w, t).unwrap(),
        ),
        (
            "linear_with_warmup",
            LrSchedule::linear_with_warmup(lr, w, t).unwrap(),
        ),
        (
            "constant_with_warmup",
            LrSchedule::constant_with_warmup(lr, w).unwrap(),
        ),
    ];
    for (name, schedule) in schedules {
        let want = fx["schedules"][name]
            .as_array()
            .unwrap_or_else(|| panic!("schedule {name} missing"));
        assert_eq!(want.len() as u64, t + 1, "{name}");
        let mut worst = 0f64;
        for (step, v) in want.iter().enumerate() {
            let (got, v) = (schedule.lr_at(step as u64), v.as_f64().unwrap());
            assert!(
                (got - v).abs() <= LR_ATOL,
                "{name} step {step}: {got} vs {v}"
            );
            worst = worst.max((got - v).abs());
        }
        eprintln!("{name}: max abs diff {worst:e}");
    }
}
