//! A shift chart's axes: accuracy ticks on the fit's probit or logit scale, the window that
//! holds the points, title and grid.

use super::*;

/// Accuracy ticks (%) for an axis over [zlo, zhi] in `t`'s scale: round values, kept only where
/// they are at least 1/12 of the axis from the previous one so labels never overlap.
pub(super) fn ticks(t: Transform, zlo: f64, zhi: f64) -> Vec<f64> {
    // Rounder values first, so a sparse axis shows 10, 20, 30 rather than 15, 25, 35.
    let by_roundness: [&[f64]; 5] = [
        &[50.0],
        &[10.0, 20.0, 30.0, 40.0, 60.0, 70.0, 80.0, 90.0],
        &[1.0, 2.0, 5.0, 95.0, 98.0, 99.0],
        &[15.0, 25.0, 35.0, 45.0, 55.0, 65.0, 75.0, 85.0],
        &[0.1, 0.2, 0.5, 99.5, 99.8, 99.9],
    ];
    let min_gap = (zhi - zlo) / 12.0;
    let mut kept: Vec<f64> = Vec::new();
    for level in by_roundness {
        for &v in level {
            let z = t.forward(v);
            if z >= zlo && z <= zhi && kept.iter().all(|k| (t.forward(*k) - z).abs() >= min_gap) {
                kept.push(v);
            }
        }
    }
    // A narrow window (models clustered within a few points) gets whole and half percents.
    let fine = (1..=99)
        .map(f64::from)
        .chain((1..99).map(|i| f64::from(i) + 0.5));
    for v in fine {
        let z = t.forward(v);
        if z >= zlo && z <= zhi && kept.iter().all(|k| (t.forward(*k) - z).abs() >= min_gap) {
            kept.push(v);
        }
    }
    kept.sort_by(f64::total_cmp);
    kept
}

/// A linear axis with chosen tick positions and labels: accuracy ticks on a probit or logit scale,
/// or model names on a bar chart.
#[derive(Clone)]
pub(super) struct LabelledAxis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) ticks: Vec<(f64, String)>,
}

impl Ranged for LabelledAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let frac = if self.hi == self.lo {
            0.5
        } else {
            (value - self.lo) / (self.hi - self.lo)
        };
        limit.0 + (frac * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.iter().map(|t| t.0).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for LabelledAxis {
    fn format_ext(&self, value: &f64) -> String {
        self.ticks
            .iter()
            .find(|t| (t.0 - value).abs() < 1e-9)
            .map(|t| t.1.clone())
            .unwrap_or_default()
    }
}

/// An axis over [zlo, zhi] in a transform's scale, ticked and labelled in accuracy %.
pub(super) fn accuracy_axis(t: Transform, zlo: f64, zhi: f64) -> LabelledAxis {
    let ticks = ticks(t, zlo, zhi)
        .into_iter()
        .map(|v| {
            (
                t.forward(v),
                if !(1.0..=99.0).contains(&v) || v.fract() != 0.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.0}")
                },
            )
        })
        .collect();
    LabelledAxis {
        lo: zlo,
        hi: zhi,
        ticks,
    }
}

/// The window in the transformed scale that holds every point with a margin: ID accuracies
/// across, OOD down, each axis fitted to its own values, so models clustered at 88–91 % are
/// not drawn on an axis spanning 40–95 %. y = x is drawn wherever it crosses the window.
pub(super) fn shift_window(chart: &ShiftChart) -> ((f64, f64), (f64, f64)) {
    let t = chart.fit.transform;
    let points = || {
        chart
            .points
            .iter()
            .chain(chart.cloud.iter())
            .chain(chart.estimates.iter())
    };
    let span = |values: Vec<f64>| {
        let lo = values.iter().copied().fold(f64::MAX, f64::min);
        let hi = values.iter().copied().fold(f64::MIN, f64::max);
        let (zlo, zhi) = (t.forward(lo), t.forward(hi));
        // At least 0.1 of the scale (a few points of accuracy), and 10 % of it on each side.
        let centre = (zlo + zhi) / 2.0;
        let half = ((zhi - zlo) / 2.0).max(0.05) * 1.2;
        (centre - half, centre + half)
    };
    (
        span(points().map(|p| p.id).collect()),
        span(points().map(|p| p.ood).collect()),
    )
}

/// Title, axes and grid of one shift's chart.
pub(super) fn shift_axes<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    chart: &ShiftChart,
    (xlo, xhi): (f64, f64),
    (ylo, yhi): (f64, f64),
    big: bool,
) -> Result<ShiftContext<'a, DB>> {
    let fit = chart.fit;
    let t = fit.transform;
    let (title_size, label_size) = if big { (22, 16) } else { (16, 13) };
    let estimated = if chart.estimated_line {
        format!(", no labels: {} estimates", chart.estimate_method)
    } else {
        String::new()
    };
    let title = format!(
        "{}: slope {:.2}, R² {:.3} ({}{estimated})",
        fit.shift,
        fit.line.slope,
        fit.line.r2,
        format!("{t:?}").to_lowercase()
    );
    let mut c = ChartBuilder::on(area)
        .caption(title, ("sans-serif", title_size))
        .margin(12)
        .x_label_area_size(if big { 48 } else { 40 })
        .y_label_area_size(if big { 60 } else { 50 })
        .build_cartesian_2d(accuracy_axis(t, xlo, xhi), accuracy_axis(t, ylo, yhi))
        .map_err(err)?;
    c.configure_mesh()
        .x_desc(format!("ID top-1 (%), {}", fit.id_dataset))
        .y_desc(if chart.estimated_line {
            format!("estimated OOD top-1 (%), {}", fit.shift)
        } else {
            format!("OOD top-1 (%), {}", fit.shift)
        })
        .label_style(("sans-serif", label_size))
        .axis_desc_style(("sans-serif", label_size))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(err)?;
    Ok(c)
}
