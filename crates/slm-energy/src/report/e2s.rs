//! The Energy-to-Solution figures: one-off energy (curation, training, compression, ...)
//! amortised over a stated number of lifetime queries, plus the measured energy of each query.

use serde::{Deserialize, Serialize};

use crate::carbon::CarbonIntensity;
use crate::energy::{Energy, EstimateModel, JOULES_PER_KWH, JOULES_PER_WH, Method};
use crate::error::{Error, Result};
use crate::grid::check_pue;
use crate::phase::{Lifecycle, is_nested_in};
use crate::tracker::{PhaseRecord, TrackerReport, sum};

/// Energy measured over a serving phase, with what it served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceMeasurement {
    /// IT energy of the serving phase.
    pub energy: Energy,
    /// Predictions (queries answered) during it.
    pub predictions: u64,
    /// Its wall-clock duration in seconds.
    pub duration_seconds: f64,
}

impl InferenceMeasurement {
    /// The measurement of a finished serving phase that answered `predictions` queries.
    ///
    /// # Errors
    /// [`Error::NoEnergy`] when no meter was read across the phase.
    pub fn from_phase(phase: &PhaseRecord, predictions: u64) -> Result<Self> {
        Ok(InferenceMeasurement {
            energy: phase.energy().ok_or_else(|| Error::NoEnergy {
                path: phase.path.clone(),
            })?,
            predictions,
            duration_seconds: phase.wall_seconds,
        })
    }
}

/// What an [`E2sReport`] is computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct E2sInputs {
    /// The one-off phases paid once to reach the solution, by name, with their IT energy.
    pub one_off: Vec<(String, Energy)>,
    /// How many queries the model is expected to answer over its life (stated, not measured).
    pub lifetime_queries: u64,
    /// The per-query cost, measured over a serving phase.
    pub inference: InferenceMeasurement,
    /// The grid's carbon intensity.
    pub carbon: CarbonIntensity,
    /// The facility's power usage effectiveness (`>= 1`).
    pub pue: f64,
}

impl E2sInputs {
    /// Inputs from a tracker report: every top-level finished phase (one not nested in another
    /// recorded phase) whose [lifecycle](Lifecycle::of_path) is one-off (curation, tokenizer,
    /// training, distillation, compression, evaluation), summed per path; the last finished
    /// phase named `serving_phase` as the inference measurement; the report's grid and PUE.
    ///
    /// The definition counts curation + training + compression; tokenizer training is
    /// part of curating, distillation is training, and evaluation is what shows the solution
    /// was reached, so they count too. Build [`E2sInputs`] by hand for another split.
    ///
    /// # Errors
    /// [`Error::PhaseNotFound`] without a finished `serving_phase`, [`Error::NoEnergy`] when a
    /// phase it needs has no meter reading.
    pub fn from_report(
        report: &TrackerReport,
        serving_phase: &str,
        predictions: u64,
        lifetime_queries: u64,
    ) -> Result<Self> {
        let serving =
            report
                .phases_named(serving_phase)
                .last()
                .ok_or_else(|| Error::PhaseNotFound {
                    path: serving_phase.to_string(),
                })?;
        let mut one_off: Vec<(String, Energy)> = Vec::new();
        let top_level = report.phases.iter().filter(|p| {
            !report
                .phases
                .iter()
                .any(|other| is_nested_in(&p.path, &other.path))
        });
        for phase in top_level {
            if !phase.lifecycle().is_some_and(Lifecycle::is_one_off) {
                continue;
            }
            let energy = phase.energy().ok_or_else(|| Error::NoEnergy {
                path: phase.path.clone(),
            })?;
            match one_off.iter_mut().find(|(name, _)| *name == phase.path) {
                Some((_, total)) => *total = total.clone() + energy,
                None => one_off.push((phase.path.clone(), energy)),
            }
        }
        Ok(E2sInputs {
            one_off,
            lifetime_queries,
            inference: InferenceMeasurement::from_phase(serving, predictions)?,
            carbon: report.config.carbon.clone(),
            pue: report.config.pue,
        })
    }

    /// The Energy-to-Solution figures.
    ///
    /// # Errors
    /// [`Error::InvalidE2sInput`] for zero lifetime queries, zero predictions or a serving
    /// duration that is not a positive number; [`Error::InvalidPue`],
    /// [`Error::InvalidIntensity`].
    pub fn compute(&self) -> Result<E2sReport> {
        let invalid = |field, value, expected| Error::InvalidE2sInput {
            field,
            value,
            expected,
        };
        if self.lifetime_queries == 0 {
            return Err(invalid("lifetime_queries", 0.0, "at least 1"));
        }
        let inf = &self.inference;
        if inf.predictions == 0 {
            return Err(invalid("inference.predictions", 0.0, "at least 1"));
        }
        if !(inf.duration_seconds.is_finite() && inf.duration_seconds > 0.0) {
            return Err(invalid(
                "inference.duration_seconds",
                inf.duration_seconds,
                "a finite number > 0",
            ));
        }
        check_pue(self.pue)?;
        self.carbon.validate()?;

        let queries = self.lifetime_queries as f64;
        let predictions = inf.predictions as f64;
        // IT energy.
        let one_off_it = sum(self.one_off.iter().map(|(_, e)| e.clone()));
        let per_query_it = scale(&inf.energy, 1.0 / predictions);
        // Facility energy: IT × PUE, an assumption whenever PUE > 1.
        let facility = |e: &Energy| -> Energy {
            let scaled = scale(e, self.pue);
            if self.pue > 1.0 {
                with_estimate(scaled, &format!("stated PUE {}", self.pue))
            } else {
                scaled
            }
        };
        let one_off = one_off_it.as_ref().map(facility);
        let inference_per_query = facility(&per_query_it);
        let amortised = one_off.as_ref().map(|e| scale(e, 1.0 / queries));
        let per_query = match &amortised {
            Some(a) => a.clone() + inference_per_query.clone(),
            None => inference_per_query.clone(),
        };
        let lifetime = scale(&per_query, queries);
        let grid_model = format!(
            "grid intensity {} gCO2e/kWh ({})",
            self.carbon.grams_co2e_per_kwh, self.carbon.source
        );
        // Carbon rides in an `Energy` to keep its method: joules × (g/kWh) read back in "kWh"
        // is grams.
        let grams_per_1000 = with_estimate(
            scale(&per_query, 1000.0 * self.carbon.grams_co2e_per_kwh),
            &grid_model,
        );
        let kg_lifetime = with_estimate(
            scale(&lifetime, self.carbon.grams_co2e_per_kwh / 1000.0),
            &grid_model,
        );

        let wh = |e: &Energy| Figure::new(e.joules() / JOULES_PER_WH, "Wh", e.method());
        let kwh = |e: &Energy| Figure::new(e.joules() / JOULES_PER_KWH, "kWh", e.method());
        let zero_kwh = Figure::new(0.0, "kWh", inference_per_query.method());
        Ok(E2sReport {
            lifetime_queries: self.lifetime_queries,
            predictions_measured: inf.predictions,
            serving_seconds: inf.duration_seconds,
            pue: self.pue,
            carbon: self.carbon.clone(),
            one_off_phases: self
                .one_off
                .iter()
                .map(|(name, e)| (name.clone(), kwh(&facility(e))))
                .collect(),
            one_off_kwh: one_off.as_ref().map_or(zero_kwh.clone(), kwh),
            amortised_one_off_wh_per_query: amortised.as_ref().map_or(
                Figure {
                    unit: "Wh".into(),
                    ..zero_kwh
                },
                wh,
            ),
            inference_wh_per_query: wh(&inference_per_query),
            wh_per_query: wh(&per_query),
            lifetime_kwh: kwh(&lifetime),
            // kWh / (kWh per query); the method is the per-query energy's.
            queries_per_kwh: Figure::new(
                JOULES_PER_KWH / per_query.joules(),
                "queries/kWh",
                per_query.method(),
            ),
            grams_co2e_per_1000_predictions: Figure::new(
                grams_per_1000.kwh(),
                "gCO2e/1000 predictions",
                grams_per_1000.method(),
            ),
            lifetime_kg_co2e: Figure::new(kg_lifetime.kwh(), "kgCO2e", kg_lifetime.method()),
            // predictions / s / W = predictions / J, at the IT equipment (no PUE).
            predictions_per_second_per_watt: Figure::new(
                predictions / inf.energy.joules(),
                "predictions/s/W",
                inf.energy.method(),
            ),
        })
    }
}

/// `e` scaled by `k`, same method (`k` and `e` are finite and non-negative here).
fn scale(e: &Energy, k: f64) -> Energy {
    Energy::new(e.joules() * k, e.method().clone()).unwrap_or_else(|_| e.clone())
}

/// `e` with an estimate `model` folded into its method.
fn with_estimate(e: Energy, model: &str) -> Energy {
    let method = e
        .method()
        .clone()
        .combine(Method::Estimated(EstimateModel::Other(model.to_string())));
    Energy::new(e.joules(), method).unwrap_or(e)
}

/// A number, its unit, and how it was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The value (may be infinite, for queries/kWh of a zero-energy query).
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The method of the energies it was derived from: an estimate anywhere makes it an
    /// estimate.
    pub method: Method,
}

impl Figure {
    fn new(value: f64, unit: &str, method: &Method) -> Self {
        Figure {
            value,
            unit: unit.to_string(),
            method: method.clone(),
        }
    }
}

/// Energy to Solution: what it costs to build the model and answer its lifetime's queries.
///
/// Energies are at the facility (IT × PUE); carbon figures are always estimates (a grid
/// average); predictions per second per watt is at the IT equipment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct E2sReport {
    /// The stated number of queries over the model's life.
    pub lifetime_queries: u64,
    /// Predictions in the measured serving phase.
    pub predictions_measured: u64,
    /// Duration of the measured serving phase in seconds.
    pub serving_seconds: f64,
    /// The PUE energies were scaled by.
    pub pue: f64,
    /// The grid intensity carbon figures use.
    pub carbon: CarbonIntensity,
    /// Each one-off phase's energy.
    pub one_off_phases: Vec<(String, Figure)>,
    /// All one-off energy.
    pub one_off_kwh: Figure,
    /// One-off energy divided by the lifetime queries.
    pub amortised_one_off_wh_per_query: Figure,
    /// Measured inference energy per query.
    pub inference_wh_per_query: Figure,
    /// Energy to solution per query: amortised one-off + inference.
    pub wh_per_query: Figure,
    /// Energy to solution over the model's life: one-off + inference × lifetime queries.
    pub lifetime_kwh: Figure,
    /// Queries answered per kWh, one-off energy included.
    pub queries_per_kwh: Figure,
    /// Grams of CO2e per 1,000 predictions, one-off energy included.
    pub grams_co2e_per_1000_predictions: Figure,
    /// Kilograms of CO2e over the model's life.
    pub lifetime_kg_co2e: Figure,
    /// Inference throughput per watt: predictions per second per watt (= predictions per joule).
    pub predictions_per_second_per_watt: Figure,
}

impl E2sReport {
    /// Every headline figure with its name, in report order.
    pub fn figures(&self) -> Vec<(&'static str, &Figure)> {
        vec![
            ("one-off energy", &self.one_off_kwh),
            (
                "amortised one-off energy per query",
                &self.amortised_one_off_wh_per_query,
            ),
            ("inference energy per query", &self.inference_wh_per_query),
            ("energy to solution per query", &self.wh_per_query),
            ("energy to solution over the lifetime", &self.lifetime_kwh),
            ("queries per kWh", &self.queries_per_kwh),
            (
                "carbon per 1,000 predictions",
                &self.grams_co2e_per_1000_predictions,
            ),
            ("carbon over the lifetime", &self.lifetime_kg_co2e),
            ("throughput per watt", &self.predictions_per_second_per_watt),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::MeterSource;

    fn measured(joules: f64) -> Energy {
        Energy::measured(joules, MeterSource::Rapl).unwrap()
    }

    fn inputs() -> E2sInputs {
        E2sInputs {
            // 3.6 MJ = 1 kWh of training, 0.36 MJ of curation.
            one_off: vec![
                ("curation".into(), measured(0.36e6)),
                ("training".into(), measured(3.6e6)),
            ],
            lifetime_queries: 1_100_000,
            // 1000 predictions in 100 s at 36 W: 3600 J = 1 Wh, 3.6 J per query.
            inference: InferenceMeasurement {
                energy: measured(3600.0),
                predictions: 1000,
                duration_seconds: 100.0,
            },
            carbon: CarbonIntensity::new(500.0, "test grid").unwrap(),
            pue: 1.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn figures_follow_the_definition() {
        let r = inputs().compute().unwrap();
        assert!(close(r.one_off_kwh.value, 1.1));
        // 1.1 kWh / 1.1 M queries = 1 mWh per query; inference 1 Wh / 1000 = 1 mWh.
        assert!(close(r.amortised_one_off_wh_per_query.value, 0.001));
        assert!(close(r.inference_wh_per_query.value, 0.001));
        assert!(close(r.wh_per_query.value, 0.002));
        assert!(close(r.lifetime_kwh.value, 2.2));
        assert!(close(r.queries_per_kwh.value, 500_000.0));
        // 2 mWh × 1000 = 2 Wh = 0.002 kWh × 500 g = 1 g.
        assert!(close(r.grams_co2e_per_1000_predictions.value, 1.0));
        assert!(close(r.lifetime_kg_co2e.value, 1.1));
        // 1000 predictions / 3600 J.
        assert!(close(
            r.predictions_per_second_per_watt.value,
            1000.0 / 3600.0
        ));
        assert!(r.wh_per_query.method.is_measured());
        assert!(
            !r.grams_co2e_per_1000_predictions.method.is_measured(),
            "a grid average is an estimate"
        );
        assert_eq!(r.figures().len(), 9);
    }

    #[test]
    fn an_estimate_anywhere_makes_the_figure_an_estimate() {
        let mut i = inputs();
        i.one_off[0].1 = Energy::estimated(
            0.36e6,
            EstimateModel::CpuTdp {
                tdp_watts: 65.0,
                load_fraction: 0.5,
            },
        )
        .unwrap();
        let r = i.compute().unwrap();
        assert!(!r.one_off_kwh.method.is_measured());
        assert!(!r.wh_per_query.method.is_measured());
        assert!(r.inference_wh_per_query.method.is_measured());
        assert!(r.predictions_per_second_per_watt.method.is_measured());
    }

    #[test]
    fn pue_scales_facility_energy_and_is_an_assumption() {
        let mut i = inputs();
        i.pue = 1.5;
        let r = i.compute().unwrap();
        assert!(close(r.wh_per_query.value, 0.003));
        assert!(!r.wh_per_query.method.is_measured());
        assert!(r.wh_per_query.method.to_string().contains("stated PUE 1.5"));
        assert!(close(
            r.predictions_per_second_per_watt.value,
            1000.0 / 3600.0
        ));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let mut i = inputs();
        i.lifetime_queries = 0;
        assert!(matches!(
            i.compute(),
            Err(Error::InvalidE2sInput {
                field: "lifetime_queries",
                ..
            })
        ));
        let mut i = inputs();
        i.inference.predictions = 0;
        assert!(matches!(i.compute(), Err(Error::InvalidE2sInput { .. })));
        let mut i = inputs();
        i.inference.duration_seconds = 0.0;
        assert!(matches!(i.compute(), Err(Error::InvalidE2sInput { .. })));
        let mut i = inputs();
        i.pue = 0.9;
        assert!(matches!(i.compute(), Err(Error::InvalidPue { .. })));
    }

    #[test]
    fn no_one_off_phases_is_inference_only() {
        let mut i = inputs();
        i.one_off.clear();
        let r = i.compute().unwrap();
        assert_eq!(r.one_off_kwh.value, 0.0);
        assert!(close(r.wh_per_query.value, 0.001));
    }
}
