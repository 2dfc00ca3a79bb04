//! Accuracy-on-the-line charts (docs/design.md, section 6), drawn with plotters into PNG and SVG: one
//! chart per shift (both axes in the fit's transformed scale, tick labels in accuracy %, y = x
//! dashed, the fit line with its bootstrap band, points coloured by group), a grid of all shifts,
//! and a bar chart of effective robustness. Text uses a font compiled into the binary, so charts
//! render the same on machines with no fonts installed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::analysis::fit::{Point, Robustness, ShiftFit, Transform};
use crate::error::{Error, Result};
use crate::results::store::write_atomic;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font file is ours and valid; a failure would show as missing text, caught by tests.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("drawing a chart: {e}"))
}

/// Colour of a group: fixed for the common groups, from a palette for the rest.
fn group_colour(group: &str, groups: &[String]) -> RGBColor {
    match group {
        "standard" => RGBColor(31, 119, 180),
        "robust-intervention" | "robust-augmented" => RGBColor(214, 39, 40),
        "more-data" => RGBColor(44, 160, 44),
        "zero-shot" => RGBColor(148, 103, 189),
        _ => {
            let i = groups.iter().position(|g| g == group).unwrap_or(0);
            let c = Palette99::pick(i + 5).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// Accuracy ticks (%) for an axis over [zlo, zhi] in `t`'s scale: round values, kept only where
/// they are at least 1/12 of the axis from the previous one so labels never overlap.
fn ticks(t: Transform, zlo: f64, zhi: f64) -> Vec<f64> {
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
    kept.sort_by(f64::total_cmp);
    kept
}

/// A linear axis with chosen tick positions and labels: accuracy ticks on a probit or logit scale,
/// or model names on a bar chart.
#[derive(Clone)]
struct LabelledAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
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
fn accuracy_axis(t: Transform, zlo: f64, zhi: f64) -> LabelledAxis {
    let ticks = ticks(t, zlo, zhi)
        .into_iter()
        .map(|v| {
            (
                t.forward(v),
                if v < 1.0 || v > 99.0 {
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

/// Points of one shift for drawing: the models of the results, plus a faint cloud.
pub struct ShiftChart<'a> {
    pub fit: &'a ShiftFit,
    pub points: &'a [Point],
    pub cloud: &'a [Point],
    pub label_points: bool,
}

fn draw_shift<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &ShiftChart,
    groups: &[String],
    big: bool,
) -> Result<()> {
    let fit = chart.fit;
    let t: Transform = fit.transform;
    let all = chart.points.iter().chain(chart.cloud.iter());
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for p in all {
        lo = lo.min(p.id).min(p.ood);
        hi = hi.max(p.id).max(p.ood);
    }
    // Some room around the points, in the transformed scale.
    let (zlo, zhi) = (t.forward(lo), t.forward(hi));
    let pad = (zhi - zlo).max(0.2) * 0.08;
    let (zlo, zhi) = (zlo - pad, zhi + pad);
    let (title_size, label_size) = if big { (22, 16) } else { (16, 13) };
    let title = format!(
        "{}: slope {:.2}, R² {:.3} ({})",
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
        .build_cartesian_2d(accuracy_axis(t, zlo, zhi), accuracy_axis(t, zlo, zhi))
        .map_err(err)?;
    c.configure_mesh()
        .x_desc(format!("ID top-1 (%), {}", fit.id_dataset))
        .y_desc(format!("OOD top-1 (%), {}", fit.shift))
        .label_style(("sans-serif", label_size))
        .axis_desc_style(("sans-serif", label_size))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(err)?;
    // The bootstrap band(s), y = x, then the fit line(s); a piecewise fit has two pieces that
    // meet at the split model's ID accuracy.
    let split = fit.split_at.map(|at| t.forward(at)).unwrap_or(zhi);
    let mut pieces = vec![(fit, zlo, split)];
    if let Some(upper) = &fit.upper {
        pieces.push((upper, split, zhi));
    }
    for (piece, _, _) in &pieces {
        c.draw_series(std::iter::once(Polygon::new(
            band_polygon(piece, zlo, zhi),
            RGBColor(31, 119, 180).mix(0.18).filled(),
        )))
        .map_err(err)?;
    }
    c.draw_series(DashedLineSeries::new(
        [(zlo, zlo), (zhi, zhi)],
        6,
        4,
        BLACK.mix(0.6).stroke_width(1),
    ))
    .map_err(err)?
    .label("y = x")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.6)));
    let n: usize = pieces.iter().map(|p| p.0.line.n).sum();
    let label = if pieces.len() > 1 {
        format!("piecewise fit (n = {n})")
    } else {
        format!("linear fit (n = {n})")
    };
    let mut segments = pieces.iter().map(|(piece, from, to)| {
        line_segment(piece.line.slope, piece.line.intercept, *from, *to, zlo, zhi)
    });
    let first = segments.next().unwrap_or_default();
    c.draw_series(LineSeries::new(
        first,
        RGBColor(31, 119, 180).stroke_width(2),
    ))
    .map_err(err)?
    .label(label)
    .legend(|(x, y)| {
        PathElement::new(
            [(x, y), (x + 16, y)],
            RGBColor(31, 119, 180).stroke_width(2),
        )
    });
    for segment in segments {
        c.draw_series(LineSeries::new(
            segment,
            RGBColor(31, 119, 180).stroke_width(2),
        ))
        .map_err(err)?;
    }
    if !chart.cloud.is_empty() {
        c.draw_series(chart.cloud.iter().map(|p| {
            Circle::new(
                (t.forward(p.id), t.forward(p.ood)),
                2,
                RGBColor(150, 150, 150).mix(0.5).filled(),
            )
        }))
        .map_err(err)?
        .label("published baselines")
        .legend(|(x, y)| Circle::new((x + 8, y), 3, RGBColor(150, 150, 150).filled()));
    }
    let radius = if big { 5 } else { 4 };
    for group in groups {
        let members: Vec<&Point> = chart.points.iter().filter(|p| &p.group == group).collect();
        if members.is_empty() {
            continue;
        }
        let colour = group_colour(group, groups);
        c.draw_series(
            members
                .iter()
                .map(|p| Circle::new((t.forward(p.id), t.forward(p.ood)), radius, colour.filled())),
        )
        .map_err(err)?
        .label(group.clone())
        .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
    }
    if chart.label_points {
        c.draw_series(chart.points.iter().map(|p| {
            Text::new(
                p.model.clone(),
                (t.forward(p.id), t.forward(p.ood)),
                ("sans-serif", label_size - 2).into_font(),
            )
        }))
        .map_err(err)?;
    }
    // OOD accuracy sits below ID for natural shifts, so the upper left corner (above y = x) is free.
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", label_size))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// A fit's bootstrap band as a polygon in the transformed scale, kept inside the window
/// (plotters would move an outside point onto the edge, bending the shape).
fn band_polygon(fit: &ShiftFit, zlo: f64, zhi: f64) -> Vec<(f64, f64)> {
    let t = fit.transform;
    let inside = |v: f64| t.forward(v).clamp(zlo, zhi);
    let mut band: Vec<(f64, f64)> = fit
        .band
        .id
        .iter()
        .zip(&fit.band.low)
        .map(|(x, y)| (inside(*x), inside(*y)))
        .collect();
    band.extend(
        fit.band
            .id
            .iter()
            .zip(&fit.band.high)
            .rev()
            .map(|(x, y)| (inside(*x), inside(*y))),
    );
    band
}

/// The part of `y = a·x + b` with x in [from, to] that lies inside the square window [lo, hi]².
fn line_segment(a: f64, b: f64, from: f64, to: f64, lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let (mut x0, mut x1) = (from.max(lo), to.min(hi));
    if a != 0.0 {
        let (ya, yb) = ((lo - b) / a, (hi - b) / a);
        x0 = x0.max(ya.min(yb));
        x1 = x1.min(ya.max(yb));
    }
    if x0 < x1 {
        vec![(x0, a * x0 + b), (x1, a * x1 + b)]
    } else {
        Vec::new()
    }
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[&Robustness],
    groups: &[String],
    title: &str,
) -> Result<()> {
    let n = rows.len().max(1);
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for r in rows {
        lo = lo.min(r.er_low.min(r.effective_robustness));
        hi = hi.max(r.er_high.max(r.effective_robustness));
    }
    let pad = ((hi - lo).max(1.0)) * 0.08;
    let names: Vec<String> = rows.iter().map(|r| r.model.clone()).collect();
    let longest = names.iter().map(|s| s.chars().count()).max().unwrap_or(4) as u32;
    let names_axis = LabelledAxis {
        lo: 0.0,
        hi: n as f64,
        ticks: names
            .iter()
            .enumerate()
            .map(|(i, m)| (i as f64 + 0.5, m.clone()))
            .collect(),
    };
    let mut c = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size((longest * 8 + 16).min(360))
        .build_cartesian_2d(lo - pad..hi + pad, names_axis)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("effective robustness (percentage points)")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(err)?;
    c.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let colour = group_colour(&r.group, groups);
        Rectangle::new(
            [
                (0.0, i as f64 + 0.15),
                (r.effective_robustness, i as f64 + 0.85),
            ],
            colour.filled(),
        )
    }))
    .map_err(err)?;
    c.draw_series(rows.iter().enumerate().map(|(i, r)| {
        PathElement::new(
            [(r.er_low, i as f64 + 0.5), (r.er_high, i as f64 + 0.5)],
            BLACK.stroke_width(1),
        )
    }))
    .map_err(err)?;
    c.draw_series(std::iter::once(PathElement::new(
        [(0.0, 0.0), (0.0, n as f64)],
        BLACK.stroke_width(1),
    )))
    .map_err(err)?;
    Ok(())
}

/// One image's worth of drawing, for either backend.
enum Figure<'a> {
    Shift(&'a ShiftChart<'a>),
    Grid {
        charts: &'a [ShiftChart<'a>],
        rows: usize,
        cols: usize,
    },
    Bars {
        rows: &'a [&'a Robustness],
        title: &'a str,
    },
}

impl Figure<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        groups: &[String],
    ) -> Result<()> {
        root.fill(&WHITE).map_err(err)?;
        match self {
            Figure::Shift(chart) => draw_shift(root, chart, groups, true)?,
            Figure::Grid { charts, rows, cols } => {
                for (area, chart) in root.split_evenly((*rows, *cols)).iter().zip(charts.iter()) {
                    draw_shift(area, chart, groups, false)?;
                }
            }
            Figure::Bars { rows, title } => draw_bars(root, rows, groups, title)?,
        }
        root.present().map_err(err)
    }
}

/// Draw a figure into `<stem>.png` and `<stem>.svg`.
fn save_both(
    stem: &Path,
    size: (u32, u32),
    figure: &Figure,
    groups: &[String],
) -> Result<Vec<PathBuf>> {
    register_font();
    let mut pixels = vec![255u8; (size.0 * size.1 * 3) as usize];
    figure.draw(
        &BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area(),
        groups,
    )?;
    let img =
        image::RgbImage::from_raw(size.0, size.1, pixels).ok_or_else(|| err("buffer size"))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(err)?;
    let mut svg = String::new();
    figure.draw(
        &SVGBackend::with_string(&mut svg, size).into_drawing_area(),
        groups,
    )?;
    let (png_path, svg_path) = (stem.with_extension("png"), stem.with_extension("svg"));
    write_atomic(&png_path, &png)?;
    write_atomic(&svg_path, svg.as_bytes())?;
    Ok(vec![png_path, svg_path])
}

/// Groups in a stable order: the common ones first.
pub fn group_order(points: impl Iterator<Item = String>) -> Vec<String> {
    let mut groups: Vec<String> = points.collect();
    groups.sort_by_key(|g| {
        let rank = [
            "standard",
            "robust-intervention",
            "robust-augmented",
            "more-data",
            "zero-shot",
        ]
        .iter()
        .position(|x| x == g)
        .unwrap_or(9);
        (rank, g.clone())
    });
    groups.dedup();
    groups
}

/// Write every chart into `dir`: `<shift>.png/.svg`, `all-shifts.png/.svg`,
/// `effective-robustness.png/.svg`. Returns the files written.
pub fn write_all(
    dir: &Path,
    charts: &[ShiftChart],
    robustness: &[Robustness],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let groups = group_order(
        charts
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.group.clone()))
            .chain(robustness.iter().map(|r| r.group.clone())),
    );
    let mut written = Vec::new();
    for chart in charts {
        written.extend(save_both(
            &dir.join(&chart.fit.shift),
            (900, 760),
            &Figure::Shift(chart),
            &groups,
        )?);
    }
    if !charts.is_empty() {
        let cols = charts.len().min(3);
        let rows = charts.len().div_ceil(cols);
        let size = (cols as u32 * 620, rows as u32 * 540);
        written.extend(save_both(
            &dir.join("all-shifts"),
            size,
            &Figure::Grid { charts, rows, cols },
            &groups,
        )?);
    }
    let mut average: Vec<&Robustness> =
        robustness.iter().filter(|r| r.shift == "average").collect();
    if !average.is_empty() {
        average.sort_by(|a, b| a.effective_robustness.total_cmp(&b.effective_robustness));
        let height = (average.len() as u32 * 26 + 120).clamp(300, 4000);
        let figure = Figure::Bars {
            rows: &average,
            title: "effective robustness, average over shifts",
        };
        written.extend(save_both(
            &dir.join("effective-robustness"),
            (900, height),
            &figure,
            &groups,
        )?);
    }
    Ok(written)
}
