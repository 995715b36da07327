//! Grid carbon intensity by country and region, each figure with its source and year.
//!
//! The table is CodeCarbon's offline data, so an `emissions.csv` written here and one written by
//! CodeCarbon's `OfflineEmissionsTracker(country_iso_code=..)` use the same factor:
//!
//! - countries: Our World in Data's electricity carbon intensity (built from Ember's and the
//!   Energy Institute's data; mostly year 2023, a few 2022), as shipped in CodeCarbon 3.3.2's
//!   `data/private_infra/global_energy_mix.json`;
//! - US states (`US-CA`, ...): EPA eGRID2023, CO2-equivalent total output emission rate
//!   (`STC2ERTA`), as shipped in CodeCarbon's `data/private_infra/2023/usa_emissions.json` in
//!   lb/MWh and converted to g/kWh.
//!
//! `scripts/gen_grid_table.py` regenerates `table.rs` from a newer CodeCarbon release. Unknown
//! codes are an error ([`Error::UnknownRegion`]); [`CarbonIntensity::WORLD_DEFAULT`] is
//! CodeCarbon's fallback, and any figure can be overridden with [`CarbonIntensity::new`].

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::carbon::CarbonIntensity;
use crate::error::{Error, Result};

#[rustfmt::skip]
mod table;

/// Where a [`GridRegion`]'s figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RegionSource {
    /// Our World in Data, electricity carbon intensity (Ember, Energy Institute), through
    /// CodeCarbon 3.3.2's `global_energy_mix.json`.
    OurWorldInData,
    /// US EPA eGRID2023, `STC2ERTA`, through CodeCarbon 3.3.2's `usa_emissions.json`.
    EpaEgrid,
}

impl fmt::Display for RegionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegionSource::OurWorldInData => {
                "Our World in Data (Ember, Energy Institute) via CodeCarbon 3.3.2"
            }
            RegionSource::EpaEgrid => "US EPA eGRID2023 (STC2ERTA) via CodeCarbon 3.3.2",
        })
    }
}

/// One row of the grid table: a country or region and its average carbon intensity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GridRegion {
    /// ISO 3166-1 alpha-3 code for a country (`FRA`), ISO 3166-2 for a region (`US-CA`).
    pub code: &'static str,
    /// ISO 3166-1 alpha-2 code for a country (`FR`), empty for a region.
    pub alpha2: &'static str,
    /// English name.
    pub name: &'static str,
    /// Grams of CO2-equivalent per kWh, averaged over `year`.
    pub grams_co2e_per_kwh: f64,
    /// The year the average covers.
    pub year: u16,
    /// Where the figure comes from.
    pub source: RegionSource,
}

impl GridRegion {
    /// This region's figure as a [`CarbonIntensity`] whose source names the region, the
    /// dataset and the year.
    pub fn intensity(&self) -> CarbonIntensity {
        CarbonIntensity {
            grams_co2e_per_kwh: self.grams_co2e_per_kwh,
            source: Cow::Owned(format!(
                "{} ({}), {}, {}",
                self.name, self.code, self.source, self.year
            )),
        }
    }

    /// Whether this is a sub-national region (`US-CA`) rather than a country.
    pub fn is_region(&self) -> bool {
        self.code.contains('-')
    }

    /// The ISO 3166-1 alpha-3 code of the country this row is in (`USA` for `US-CA`).
    pub fn country_alpha3(&self) -> &'static str {
        match self.source {
            RegionSource::EpaEgrid => "USA",
            RegionSource::OurWorldInData => self.code,
        }
    }
}

/// Every country in the table, sorted by alpha-3 code.
pub fn countries() -> &'static [GridRegion] {
    table::COUNTRIES
}

/// Every sub-national region in the table (US states as `US-XX`), sorted by code.
pub fn regions() -> &'static [GridRegion] {
    table::US_STATES
}

/// The table row for `code`: an ISO 3166-1 alpha-3 (`FRA`) or alpha-2 (`FR`) country code, or
/// an ISO 3166-2 region (`US-CA`; `USA-CA` is accepted too). Case does not matter.
///
/// # Errors
/// [`Error::UnknownRegion`] for a code the table does not hold.
pub fn lookup(code: &str) -> Result<&'static GridRegion> {
    let upper = code.trim().to_ascii_uppercase();
    let found = match upper.split_once('-') {
        Some(("US" | "USA", sub)) => {
            let wanted = format!("US-{sub}");
            table::US_STATES.iter().find(|r| r.code == wanted)
        }
        Some(_) => None,
        None if upper.len() == 3 => table::COUNTRIES
            .binary_search_by(|r| r.code.cmp(upper.as_str()))
            .ok()
            .map(|i| &table::COUNTRIES[i]),
        None if upper.len() == 2 => table::COUNTRIES.iter().find(|r| r.alpha2 == upper),
        None => None,
    };
    found.ok_or_else(|| Error::UnknownRegion {
        code: code.to_string(),
    })
}

/// [`Error::InvalidPue`] unless `pue` is finite and `>= 1`.
pub(crate) fn check_pue(pue: f64) -> Result<()> {
    if pue.is_finite() && pue >= 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidPue { pue })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_by_alpha3_and_alpha2_agree() {
        let fra = lookup("FRA").unwrap();
        assert_eq!(lookup("fr").unwrap(), fra);
        assert_eq!(
            (fra.name, fra.grams_co2e_per_kwh, fra.year),
            ("France", 56.039, 2023)
        );
        assert_eq!(fra.country_alpha3(), "FRA");
        assert!(!fra.is_region());
        assert_eq!(lookup(" deu ").unwrap().alpha2, "DE");
    }

    #[test]
    fn us_states_are_converted_from_lb_per_mwh() {
        // eGRID2023 California: 394.769 lb/MWh × 0.45359237 = 179.064 g/kWh.
        let ca = lookup("US-CA").unwrap();
        assert_eq!(ca.grams_co2e_per_kwh, 179.064);
        assert_eq!(lookup("usa-ca").unwrap(), ca);
        assert_eq!(ca.country_alpha3(), "USA");
        assert!(ca.is_region());
        assert!(ca.intensity().source.contains("eGRID2023"));
    }

    #[test]
    fn unknown_codes_are_errors() {
        for code in ["XX", "ZZZ", "US-ZZ", "FR-75", "", "FRANCE"] {
            assert!(
                matches!(lookup(code), Err(Error::UnknownRegion { .. })),
                "{code}"
            );
        }
    }

    #[test]
    fn table_is_sorted_valid_and_plausible() {
        let c = countries();
        assert!(c.len() > 200);
        assert!(
            c.windows(2).all(|w| w[0].code < w[1].code),
            "binary search needs order"
        );
        for r in c.iter().chain(regions()) {
            assert!(r.intensity().validate().is_ok(), "{}", r.code);
            assert!((0.0..1500.0).contains(&r.grams_co2e_per_kwh), "{}", r.code);
            // Western Sahara's latest figure is from 2009; the rest are 2021-2023.
            assert!((2009..=2025).contains(&r.year), "{}", r.code);
        }
        assert_eq!(regions().len(), 51, "50 states and DC");
    }
}
