//! Properties of power traces and the replay meter over random recordings: energy is additive
//! under concatenation, readings never decrease, and every reading equals an independent
//! trapezoid sum.

use proptest::prelude::*;
use slm_energy::prelude::*;

/// Random traces: 1..30 samples, gaps of 0 (a power step) to 10 s, power 0..500 W.
fn traces() -> impl Strategy<Value = PowerTrace> {
    (
        -100.0f64..100.0,
        prop::collection::vec((0.0f64..10.0, 0.0f64..500.0), 1..30),
    )
        .prop_map(|(t0, steps)| {
            let mut t = t0;
            let samples = steps
                .into_iter()
                .map(|(dt, w)| {
                    t += if dt < 1.0 { 0.0 } else { dt };
                    (t, w)
                })
                .collect();
            PowerTrace::new(samples).unwrap()
        })
}

/// The trapezoid sum up to `until`, written independently: sample by sample, cutting the
/// segment that holds `until` with a linearly interpolated power.
fn reference_joules(samples: &[(f64, f64)], until: f64) -> f64 {
    let mut joules = 0.0;
    for pair in samples.windows(2) {
        let ((t0, w0), (t1, w1)) = (pair[0], pair[1]);
        if until <= t0 {
            break;
        }
        if until >= t1 {
            joules += (t1 - t0) * (w0 + w1) / 2.0;
        } else {
            let w = w0 + (w1 - w0) * (until - t0) / (t1 - t0);
            joules += (until - t0) * (w0 + w) / 2.0;
        }
    }
    joules
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

proptest! {
    #[test]
    fn energy_of_a_concatenation_is_the_sum_of_its_parts(a in traces(), b in traces(), c in traces()) {
        let ab = a.then(&b);
        prop_assert!(close(ab.total_joules(), a.total_joules() + b.total_joules()));
        let abc = ab.then(&c);
        prop_assert!(close(abc.total_joules(), a.total_joules() + b.total_joules() + c.total_joules()));
        // The first part's energy is unchanged inside the concatenation.
        prop_assert!(close(abc.joules_until(a.end()).unwrap(), a.total_joules()));
        // Same via the validating constructor and the serde path.
        let json = serde_json::to_string(&abc).unwrap();
        let back: PowerTrace = serde_json::from_str(&json).unwrap();
        prop_assert!(close(back.total_joules(), abc.total_joules()));
    }

    #[test]
    fn replay_readings_match_a_reference_and_never_decrease(
        trace in traces(),
        cuts in prop::collection::vec(0.0f64..1.0, 0..20),
    ) {
        let (start, end) = (trace.start(), trace.end());
        let samples = trace.samples().to_vec();
        let mut cuts: Vec<f64> = cuts.into_iter().map(|u| start + u * (end - start)).collect();
        cuts.sort_by(f64::total_cmp);
        cuts.push(end);
        let mut meter = ReplayMeter::new(trace, Method::Measured(MeterSource::Rapl));
        let mut last = meter.read().unwrap();
        prop_assert_eq!(last.energy.joules(), 0.0);
        for t in cuts {
            meter.seek(t).unwrap();
            let r = meter.read().unwrap();
            prop_assert!(close(r.energy.joules(), reference_joules(&samples, t)), "at {}: {} vs {}", t, r.energy.joules(), reference_joules(&samples, t));
            let delta = r.energy_since(&last).unwrap();
            prop_assert!(delta.method().is_measured());
            last = r;
        }
    }

    #[test]
    fn constant_power_is_watts_times_duration(w in 0.0f64..1000.0, secs in 0.0f64..3600.0) {
        let trace = PowerTrace::new(vec![(0.0, w), (secs, w)]).unwrap();
        prop_assert!(close(trace.total_joules(), w * secs));
        let e = Energy::new(trace.total_joules(), Method::Estimated(EstimateModel::Other("flat".into()))).unwrap();
        let grams = CarbonIntensity::WORLD_DEFAULT.emissions_grams(&e, 1.2).unwrap();
        prop_assert!(close(grams, w * secs / 3.6e6 * 1.2 * 475.0));
    }
}
