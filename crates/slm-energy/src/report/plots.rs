//! SVG plots drawn with `plotters`: power over time per meter, energy per phase.

use plotters::prelude::*;

use crate::energy::JOULES_PER_WH;
use crate::error::{Error, Result};
use crate::tracker::TrackerReport;

const WIDTH: u32 = 800;
const HEIGHT: u32 = 360;

/// Series colours, one per meter (or model, in a larger report's plots) in turn: matplotlib's
/// `tab10` order.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn plot_error(chart: &'static str) -> impl Fn(Box<dyn std::error::Error + 'static>) -> Error {
    move |e| Error::Plot {
        chart,
        message: e.to_string(),
    }
}

/// An SVG of each meter's mean power over time (a step line per meter, seconds on its own
/// clock since its first reading), labelled with the meter, its component and method.
///
/// # Errors
/// [`Error::Plot`] when plotters fails.
pub fn power_svg(report: &TrackerReport) -> Result<String> {
    const CHART: &str = "power over time";
    let max_t = report
        .meters
        .iter()
        .filter_map(|m| m.power.last())
        .map(|p| p.to_seconds)
        .fold(0.0, f64::max);
    let max_w = report
        .meters
        .iter()
        .flat_map(|m| &m.power)
        .map(|p| p.watts)
        .fold(0.0, f64::max);
    let mut svg = String::new();
    {
        let err = plot_error(CHART);
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(Box::new(e)))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Power over time", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..max_t.max(1e-3), 0.0..(max_w * 1.1).max(1e-3))
            .map_err(|e| err(Box::new(e)))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("watts")
            .draw()
            .map_err(|e| err(Box::new(e)))?;
        for (i, meter) in report.meters.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let steps = meter
                .power
                .iter()
                .flat_map(|p| [(p.from_seconds, p.watts), (p.to_seconds, p.watts)]);
            let method = meter
                .method
                .as_ref()
                .map_or("no reading".to_string(), ToString::to_string);
            chart
                .draw_series(LineSeries::new(steps, colour.stroke_width(2)))
                .map_err(|e| err(Box::new(e)))?
                .label(format!("{} ({}), {method}", meter.name, meter.component))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(Box::new(e)))?;
        root.present().map_err(|e| err(Box::new(e)))?;
    }
    Ok(svg)
}

/// An SVG bar chart of each finished phase's energy in Wh (estimated bars drawn lighter).
///
/// # Errors
/// [`Error::Plot`] when plotters fails.
pub fn phase_energy_svg(report: &TrackerReport) -> Result<String> {
    const CHART: &str = "energy per phase";
    let bars: Vec<(String, f64, bool)> = report
        .phases
        .iter()
        .map(|p| {
            let e = p.energy();
            (
                p.path.clone(),
                e.as_ref().map_or(0.0, |e| e.joules() / JOULES_PER_WH),
                e.is_some_and(|e| e.method().is_measured()),
            )
        })
        .collect();
    let max_wh = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let n = bars.len().max(1);
    let mut svg = String::new();
    {
        let err = plot_error(CHART);
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(Box::new(e)))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Energy per phase (solid: measured, light: estimated)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(60)
            .y_label_area_size(55)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..(max_wh * 1.1).max(1e-6))
            .map_err(|e| err(Box::new(e)))?;
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("Wh")
            .draw()
            .map_err(|e| err(Box::new(e)))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, wh, measured))| {
                let style = if *measured {
                    PALETTE[0].filled()
                } else {
                    PALETTE[0].mix(0.35).filled()
                };
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *wh),
                    ],
                    style,
                );
                bar.set_margin(0, 0, 8, 8);
                bar
            }))
            .map_err(|e| err(Box::new(e)))?;
        root.present().map_err(|e| err(Box::new(e)))?;
    }
    Ok(svg)
}
