//! [`CarbonIntensity`]: grams of CO2-equivalent per kWh of electricity, and the emissions of an
//! [`Energy`].

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::energy::Energy;
use crate::error::{Error, Result};

/// The power usage effectiveness CodeCarbon assumes without a data-centre figure: 1.0 (no
/// cooling or distribution overhead counted).
pub const DEFAULT_PUE: f64 = 1.0;

/// The carbon intensity of the electricity an energy was drawn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarbonIntensity {
    /// Grams of CO2-equivalent emitted per kilowatt-hour.
    pub grams_co2e_per_kwh: f64,
    /// Where the figure comes from (a grid operator, a year, a dataset).
    pub source: Cow<'static, str>,
}

impl CarbonIntensity {
    /// The world average CodeCarbon falls back to when a region's figure is unknown:
    /// 475 gCO2e/kWh (IEA, Global Energy & CO2 Status Report 2019).
    pub const WORLD_DEFAULT: CarbonIntensity = CarbonIntensity {
        grams_co2e_per_kwh: 475.0,
        source: Cow::Borrowed("world average (IEA 2019, CodeCarbon's default)"),
    };

    /// An intensity from `source`; [`Error::InvalidIntensity`] unless finite and `>= 0`.
    pub fn new(grams_co2e_per_kwh: f64, source: impl Into<Cow<'static, str>>) -> Result<Self> {
        let intensity = CarbonIntensity {
            grams_co2e_per_kwh,
            source: source.into(),
        };
        intensity.validate()?;
        Ok(intensity)
    }

    /// [`Error::InvalidIntensity`] unless the intensity is finite and `>= 0` (for values built
    /// or deserialized directly).
    pub fn validate(&self) -> Result<()> {
        let g = self.grams_co2e_per_kwh;
        if g.is_finite() && g >= 0.0 {
            Ok(())
        } else {
            Err(Error::InvalidIntensity {
                grams_co2e_per_kwh: g,
                source_name: self.source.to_string(),
            })
        }
    }

    /// Grams of CO2e for `energy` drawn at the IT equipment of a facility with power usage
    /// effectiveness `pue` (total facility energy / IT energy, `>= 1`; [`DEFAULT_PUE`] counts
    /// the equipment only): `kWh × pue × g/kWh`.
    ///
    /// Emissions are an estimate whatever the energy's [`Method`](crate::Method): the intensity
    /// is an average over a grid and a period.
    pub fn emissions_grams(&self, energy: &Energy, pue: f64) -> Result<f64> {
        self.validate()?;
        if !(pue.is_finite() && pue >= 1.0) {
            return Err(Error::InvalidPue { pue });
        }
        Ok(energy.kwh() * pue * self.grams_co2e_per_kwh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::energy::{Energy, MeterSource};

    #[test]
    fn one_kwh_at_world_average_is_475_grams() {
        let e = Energy::from_kwh(1.0, crate::Method::Measured(MeterSource::Rapl)).unwrap();
        let g = CarbonIntensity::WORLD_DEFAULT
            .emissions_grams(&e, DEFAULT_PUE)
            .unwrap();
        assert_eq!(g, 475.0);
    }

    #[test]
    fn pue_scales_linearly() {
        // 7.2 MJ = 2 kWh; × 1.5 PUE × 100 g/kWh = 300 g.
        let e = Energy::measured(7.2e6, MeterSource::Nvml).unwrap();
        let grid = CarbonIntensity::new(100.0, "test grid").unwrap();
        assert!((grid.emissions_grams(&e, 1.5).unwrap() - 300.0).abs() < 1e-9);
    }

    #[test]
    fn invalid_pue_and_intensity_are_refused() {
        let e = Energy::measured(1.0, MeterSource::Rapl).unwrap();
        for pue in [0.9, f64::NAN, f64::INFINITY] {
            let err = CarbonIntensity::WORLD_DEFAULT
                .emissions_grams(&e, pue)
                .unwrap_err();
            assert!(matches!(err, Error::InvalidPue { .. }), "{pue}");
        }
        let err = CarbonIntensity::new(-1.0, "bad").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid carbon intensity -1 gCO2e/kWh from bad: expected a finite number >= 0"
        );
        let direct = CarbonIntensity {
            grams_co2e_per_kwh: f64::NAN,
            source: "direct".into(),
        };
        assert!(direct.emissions_grams(&e, 1.0).is_err());
    }

    #[test]
    fn serde_round_trips() {
        let json = serde_json::to_string(&CarbonIntensity::WORLD_DEFAULT).unwrap();
        let back: CarbonIntensity = serde_json::from_str(&json).unwrap();
        assert_eq!(back, CarbonIntensity::WORLD_DEFAULT);
    }
}
