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
use plotters::style::text_anchor::{HPos, Pos, VPos};

use std::collections::BTreeMap;

use crate::analysis::fit::{Point, Robustness, ShiftFit, Transform};
use crate::analysis::markup::escape_xml;
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::input::card::Intervention;
use crate::results::store::ModelInfo;

mod axes;
mod bars;
mod estimated;
mod labels;
mod marks;

use axes::*;
use bars::*;
use labels::*;
pub use marks::*;

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
        "wise-ft" => RGBColor(255, 127, 14),
        "fine-tuned" => RGBColor(23, 190, 207),
        "soup" => RGBColor(140, 86, 75),
        _ => {
            let i = groups.iter().position(|g| g == group).unwrap_or(0);
            let c = Palette99::pick(i + 5).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// Points of one shift for drawing: the models of the results, plus a faint cloud.
pub struct ShiftChart<'a> {
    pub fit: &'a ShiftFit,
    pub points: &'a [Point],
    pub cloud: &'a [Point],
    pub label_points: bool,
    /// run.json's `models`: which points are WiSE-FT interpolations or soups.
    pub interventions: &'a BTreeMap<String, ModelInfo>,
    /// OOD accuracies estimated without labels (`estimate`, one method), drawn hollow.
    pub estimates: &'a [Point],
    /// The method of `estimates`, for the legend and the tooltips.
    pub estimate_method: &'a str,
    /// The shift has no labels: `fit` is the line fitted to the estimates, `points` is empty.
    pub estimated_line: bool,
}

type ShiftContext<'a, DB> = ChartContext<'a, DB, Cartesian2d<LabelledAxis, LabelledAxis>>;

fn draw_shift<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &ShiftChart,
    groups: &[String],
    big: bool,
) -> Result<Vec<Marker>> {
    let (xw, yw) = shift_window(chart);
    let label_size = if big { 16 } else { 13 };
    let mut c = shift_axes(area, chart, xw, yw, big)?;
    draw_fit_lines(&mut c, chart.fit, xw, yw)?;
    let curves = curves(chart.points, chart.interventions);
    draw_curves(&mut c, chart.fit.transform, &curves, groups, label_size)?;
    let mut markers = draw_points(&mut c, chart, groups, big)?;
    let radius = if big { 5 } else { 4 };
    markers.extend(estimated::draw_estimates(&mut c, chart, groups, radius)?);
    if chart.label_points {
        draw_point_labels(&c, chart, label_size - 2)?;
    }
    // OOD accuracy sits below ID for natural shifts, so the upper left corner (above y = x) is free.
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", label_size))
        .draw()
        .map_err(err)?;
    Ok(markers)
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
        rows: Vec<&'a Robustness>,
        title: &'a str,
    },
}

impl Figure<'_> {
    /// Draws the figure and returns where its models landed.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        groups: &[String],
    ) -> Result<Vec<Marker>> {
        root.fill(&WHITE).map_err(err)?;
        let mut markers = Vec::new();
        match self {
            Figure::Shift(chart) => markers = draw_shift(root, chart, groups, true)?,
            Figure::Grid { charts, rows, cols } => {
                for (area, chart) in root.split_evenly((*rows, *cols)).iter().zip(charts.iter()) {
                    markers.extend(draw_shift(area, chart, groups, false)?);
                }
            }
            Figure::Bars { rows, title } => markers = draw_bars(root, rows, groups, title)?,
        }
        root.present().map_err(err)?;
        Ok(markers)
    }
}

/// A figure as PNG bytes.
fn render_png(size: (u32, u32), figure: &Figure, groups: &[String]) -> Result<Vec<u8>> {
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
    Ok(png)
}

/// A figure as SVG text, with a tooltip (`<title>`) over every model's marker.
fn render_svg(size: (u32, u32), figure: &Figure, groups: &[String]) -> Result<String> {
    register_font();
    let mut svg = String::new();
    let markers = figure.draw(
        &SVGBackend::with_string(&mut svg, size).into_drawing_area(),
        groups,
    )?;
    let end = svg
        .rfind("</svg>")
        .ok_or_else(|| err("SVG without </svg>"))?;
    svg.insert_str(end, &tooltip_layer(&markers));
    Ok(svg)
}

/// Transparent shapes over the drawn markers, each with its tooltip; `data-model` and
/// `data-group` let the HTML report's filter ring them. Every name is escaped.
fn tooltip_layer(markers: &[Marker]) -> String {
    let mut layer = String::from("<g class=\"tips\" fill=\"transparent\">\n");
    for m in markers {
        let shape = match m.shape {
            Shape::Circle { x, y, r } => format!("circle cx=\"{x}\" cy=\"{y}\" r=\"{r}\""),
            Shape::Rect { x0, y0, x1, y1 } => format!(
                "rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"",
                x0.min(x1),
                y0.min(y1),
                (x1 - x0).abs().max(1),
                (y1 - y0).abs().max(1)
            ),
        };
        let tag = &shape[..shape.find(' ').unwrap_or(shape.len())];
        let tip: Vec<String> = m.tooltip.lines().map(escape_xml).collect();
        layer += &format!(
            "<{shape} class=\"tip\" data-model=\"{}\" data-group=\"{}\"><title>{}</title></{tag}>\n",
            escape_xml(&m.model),
            escape_xml(&m.group),
            tip.join("\n")
        );
    }
    layer + "</g>\n"
}

/// A file name for a dataset's chart: letters, digits, `.`, `-` and `_` are kept (so
/// `imagenetv2-threshold0.7` stays as it is), anything else, and a leading dot, becomes `_`;
/// so a name from evals.csv never leaves `plots/` or hides a file. Capped at 100 characters.
pub fn file_stem(name: &str) -> String {
    let mut stem: String = name
        .chars()
        .take(100)
        .enumerate()
        .map(|(i, c)| match c {
            '.' if i == 0 => '_',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') => c,
            _ => '_',
        })
        .collect();
    if stem.is_empty() {
        stem.push('_');
    }
    stem
}

/// File stems for the shifts' charts, distinct from each other and from the other charts' names
/// (`a/b` and `a_b` would otherwise overwrite each other): a repeat gets `-2`, `-3`, ...
pub fn file_stems<'a>(shifts: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut taken: Vec<String> = vec!["all-shifts".into(), "effective-robustness".into()];
    let mut stems = Vec::new();
    for shift in shifts {
        let base = file_stem(shift);
        let mut stem = base.clone();
        let mut k = 2;
        while taken.iter().any(|t| t.eq_ignore_ascii_case(&stem)) {
            stem = format!("{base}-{k}");
            k += 1;
        }
        taken.push(stem.clone());
        stems.push(stem);
    }
    stems
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
            "fine-tuned",
            "wise-ft",
            "soup",
        ]
        .iter()
        .position(|x| x == g)
        .unwrap_or(9);
        (rank, g.clone())
    });
    groups.dedup();
    groups
}

/// Every figure of a set of charts, with its file stem and size in pixels.
fn figures<'a>(
    charts: &'a [ShiftChart<'a>],
    robustness: &'a [Robustness],
) -> Vec<(String, (u32, u32), Figure<'a>)> {
    let mut figures: Vec<(String, (u32, u32), Figure)> =
        file_stems(charts.iter().map(|c| c.fit.shift.as_str()))
            .into_iter()
            .zip(charts)
            .map(|(stem, chart)| (stem, (900, 760), Figure::Shift(chart)))
            .collect();
    if !charts.is_empty() {
        let cols = charts.len().min(3);
        let rows = charts.len().div_ceil(cols);
        let size = (cols as u32 * 620, rows as u32 * 540);
        figures.push((
            "all-shifts".into(),
            size,
            Figure::Grid { charts, rows, cols },
        ));
    }
    let mut average: Vec<&Robustness> =
        robustness.iter().filter(|r| r.shift == "average").collect();
    if !average.is_empty() {
        average.sort_by(|a, b| a.effective_robustness.total_cmp(&b.effective_robustness));
        let height = (average.len() as u32 * 26 + 120).clamp(300, 4000);
        let figure = Figure::Bars {
            rows: average,
            title: "effective robustness, average over shifts",
        };
        figures.push(("effective-robustness".into(), (900, height), figure));
    }
    figures
}

fn groups_of(charts: &[ShiftChart], robustness: &[Robustness]) -> Vec<String> {
    group_order(
        charts
            .iter()
            .flat_map(|c| c.points.iter().chain(c.estimates).map(|p| p.group.clone()))
            .chain(robustness.iter().map(|r| r.group.clone())),
    )
}

/// Write every chart into `dir`: `<shift>.png/.svg` (the name made safe by `file_stems`),
/// `all-shifts.png/.svg`, `effective-robustness.png/.svg`. Returns the files written.
pub fn write_all(
    dir: &Path,
    charts: &[ShiftChart],
    robustness: &[Robustness],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let groups = groups_of(charts, robustness);
    let mut written = Vec::new();
    for (stem, size, figure) in figures(charts, robustness) {
        // Not `with_extension`: it would cut `imagenetv2-threshold0.7` at its dot.
        let (png_path, svg_path) = (
            dir.join(format!("{stem}.png")),
            dir.join(format!("{stem}.svg")),
        );
        write_atomic(&png_path, &render_png(size, &figure, &groups)?)?;
        write_atomic(&svg_path, render_svg(size, &figure, &groups)?.as_bytes())?;
        written.extend([png_path, svg_path]);
    }
    Ok(written)
}

/// The charts for the HTML report, drawn in memory (never read back from `plots/`, which may
/// hold stale or planted files): `(caption, svg)` per shift, then the effective-robustness bars.
pub fn svg_charts(
    charts: &[ShiftChart],
    robustness: &[Robustness],
) -> Result<Vec<(String, String)>> {
    let groups = groups_of(charts, robustness);
    let mut svgs = Vec::new();
    for (stem, size, figure) in figures(charts, robustness) {
        let caption = match &figure {
            Figure::Shift(chart) if chart.estimated_line => {
                format!("{} (no labels: estimated)", chart.fit.shift)
            }
            Figure::Shift(chart) => chart.fit.shift.clone(),
            Figure::Grid { .. } => continue,
            Figure::Bars { .. } => stem,
        };
        svgs.push((caption, render_svg(size, &figure, &groups)?));
    }
    Ok(svgs)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod label_tests;
