//! The rate–distortion SVG of `squish sweep`.

use std::path::Path;

use plotters::prelude::*;
use squish::io::{write_atomic, SVG_MARKER};
use squish::recipe::SweepPoint;
use squish::{Result, SquishError};

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn plot_error(e: impl std::fmt::Display) -> SquishError {
    SquishError::invalid("plot", "svg", format!("drawing failed: {e}"))
}

/// Relative error (log scale) against bits per weight, one line per family.
/// The SVG is drawn in memory and written atomically, with the usual
/// permissions of an output file.
pub fn rate_distortion(path: &Path, points: &[SweepPoint]) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let max_bits = points.iter().map(|p| p.bits_per_weight).fold(1.0, f64::max) * 1.05;
        let finite = points
            .iter()
            .map(|p| p.rel_error)
            .filter(|&e| e > 0.0 && e.is_finite());
        let lo = finite.clone().fold(1.0, f64::min) / 2.0;
        let hi = finite.fold(lo * 4.0, f64::max) * 2.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "rate-distortion: relative error vs bits per weight",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..max_bits, (lo..hi).log_scale())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("bits per weight")
            .y_desc("relative Frobenius error")
            .draw()
            .map_err(plot_error)?;
        let mut families: Vec<&str> = Vec::new();
        for p in points {
            if !families.contains(&p.family) {
                families.push(p.family);
            }
        }
        for (i, f) in families.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut xy: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.family == *f && p.rel_error > 0.0 && p.rel_error.is_finite())
                .map(|p| (p.bits_per_weight, p.rel_error))
                .collect();
            xy.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(*f)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(xy.into_iter().map(|p| Circle::new(p, 4, color.filled())))
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    write_svg(path, svg)
}

/// Writes a plot marked as ours (right after the root tag, so the file still
/// starts with `<svg`): a rerun may replace it without --force.
pub fn write_svg(path: &Path, mut svg: String) -> Result<()> {
    if let Some(end) = svg.find('>') {
        svg.insert_str(end + 1, &format!("\n{SVG_MARKER}"));
    }
    write_atomic(path, svg.as_bytes())
}
