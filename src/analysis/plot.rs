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
use crate::input::card::Intervention;
use crate::results::store::{write_atomic, ModelInfo};

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

/// Points of one shift for drawing: the models of the results, plus a faint cloud.
pub struct ShiftChart<'a> {
    pub fit: &'a ShiftFit,
    pub points: &'a [Point],
    pub cloud: &'a [Point],
    pub label_points: bool,
    /// run.json's `models`: which points are WiSE-FT interpolations or soups.
    pub interventions: &'a BTreeMap<String, ModelInfo>,
}

/// One WiSE-FT family on a chart: its points in α order, the endpoint models (at α = 0 and 1)
/// included where the results have them and the family has no point of its own there.
#[derive(Debug)]
pub struct Curve<'a> {
    pub family: String,
    pub points: Vec<(f64, &'a Point)>,
    pub endpoints: [String; 2],
}

/// The WiSE-FT families among a chart's points, each sorted by α.
pub fn curves<'a>(
    points: &'a [Point],
    interventions: &BTreeMap<String, ModelInfo>,
) -> Vec<Curve<'a>> {
    let mut families: BTreeMap<&str, Curve> = BTreeMap::new();
    for p in points {
        let Some(Intervention::WiseFt {
            family,
            alpha,
            endpoints,
        }) = interventions.get(&p.model).map(|m| &m.intervention)
        else {
            continue;
        };
        let curve = families.entry(family).or_insert_with(|| Curve {
            family: family.clone(),
            points: Vec::new(),
            endpoints: endpoints.clone(),
        });
        curve.points.push((*alpha, p));
    }
    let mut curves: Vec<Curve> = families.into_values().collect();
    for curve in &mut curves {
        for (alpha, name) in [(0.0, &curve.endpoints[0]), (1.0, &curve.endpoints[1])] {
            let present = curve.points.iter().any(|(a, _)| *a == alpha);
            if let (false, Some(p)) = (present, points.iter().find(|p| &p.model == name)) {
                curve.points.push((alpha, p));
            }
        }
        curve.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    curves
}

/// Where a model landed on a chart, in the backend's pixels, and what its tooltip says: the SVG
/// charts get one `<title>` per marker (plotters' SVG backend has no tooltips of its own).
#[derive(Debug, Clone)]
pub struct Marker {
    pub shape: Shape,
    pub model: String,
    pub group: String,
    pub tooltip: String,
}

#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Circle { x: i32, y: i32, r: i32 },
    Rect { x0: i32, y0: i32, x1: i32, y1: i32 },
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
    let mut c = shift_axes(area, chart.fit, xw, yw, big)?;
    draw_fit_lines(&mut c, chart.fit, xw, yw)?;
    let curves = curves(chart.points, chart.interventions);
    draw_curves(&mut c, chart.fit.transform, &curves, groups, label_size)?;
    let markers = draw_points(&mut c, chart, groups, big)?;
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

/// Model names beside their points, without overlapping one another or the markers and inside
/// the plotting area: each label tries places around its point, nearest first, then further out
/// with a leader line back to the point. A label that fits nowhere is left out (the tooltip and
/// the tables still name the model) rather than drawn over another or cut at the edge.
fn draw_point_labels<DB: DrawingBackend>(
    c: &ShiftContext<DB>,
    chart: &ShiftChart,
    size: i32,
) -> Result<()> {
    let t = chart.fit.transform;
    let area = c.plotting_area();
    let (xr, yr) = area.get_pixel_range();
    let pixels = area.strip_coord_spec();
    let at = |p: &Point| c.backend_coord(&(t.forward(p.id), t.forward(p.ood)));
    let mut points: Vec<(&Point, (i32, i32))> = chart.points.iter().map(|p| (p, at(p))).collect();
    points.sort_by_key(|(p, (x, y))| (*x, *y, p.model.clone()));
    // Every marker is taken space (radius 5 and a pixel of air).
    let mut taken: Vec<(i32, i32, i32, i32)> = points
        .iter()
        .map(|(_, (x, y))| (x - 6, y - 6, x + 6, y + 6))
        .collect();
    let font = ("sans-serif", size).into_font();
    for (p, (px, py)) in points {
        let (w, h) = label_size(&p.model, size);
        let placed = label_places(w, h).into_iter().find_map(|(dx, dy, far)| {
            let b = (px + dx, py + dy, px + dx + w, py + dy + h);
            let inside = b.0 >= xr.start && b.2 <= xr.end && b.1 >= yr.start && b.3 <= yr.end;
            let free = taken.iter().all(|o| !overlaps(b, *o));
            (inside && free).then_some((b, far))
        });
        let Some((b, far)) = placed else { continue };
        taken.push(b);
        let local = |(x, y): (i32, i32)| (x - xr.start, y - yr.start);
        if far {
            let end = (px.clamp(b.0, b.2), py.clamp(b.1, b.3));
            pixels
                .draw(&PathElement::new(
                    [local((px, py)), local(end)],
                    BLACK.mix(0.45).stroke_width(1),
                ))
                .map_err(err)?;
        }
        pixels
            .draw(&Text::new(p.model.clone(), local((b.0, b.1)), font.clone()))
            .map_err(err)?;
    }
    Ok(())
}

/// A label's box in pixels: the embedded font's measure, or 0.62 em a character if larger (a
/// browser showing the SVG may use a wider sans-serif than the PNG's), height one line.
fn label_size(text: &str, size: i32) -> (i32, i32) {
    let chars = text.chars().count() as f64;
    let estimate = (chars * f64::from(size) * 0.62).ceil() as i32;
    let measured = ("sans-serif", size)
        .into_font()
        .box_size(text)
        .map_or(0, |(w, _)| w as i32);
    (estimate.max(measured) + 2, size + 2)
}

/// Where a w×h label may go relative to its point, nearest first: (dx, dy) of its top-left
/// corner, and whether it is far enough to need a leader line.
fn label_places(w: i32, h: i32) -> Vec<(i32, i32, bool)> {
    let mut places = Vec::new();
    for (i, d) in [8, 22, 40, 64].into_iter().enumerate() {
        for (dx, dy) in [
            (d, -h / 2),
            (-d - w, -h / 2),
            (-w / 2, -d - h),
            (-w / 2, d),
            (d, -d - h / 2),
            (d, d - h / 2),
            (-d - w, -d - h / 2),
            (-d - w, d - h / 2),
        ] {
            places.push((dx, dy, i > 0));
        }
    }
    places
}

fn overlaps(a: (i32, i32, i32, i32), b: (i32, i32, i32, i32)) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

/// The window in the transformed scale that holds every point with a margin: ID accuracies
/// across, OOD down, each axis fitted to its own values, so models clustered at 88–91 % are
/// not drawn on an axis spanning 40–95 %. y = x is drawn wherever it crosses the window.
fn shift_window(chart: &ShiftChart) -> ((f64, f64), (f64, f64)) {
    let t = chart.fit.transform;
    let points = || chart.points.iter().chain(chart.cloud.iter());
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
fn shift_axes<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    fit: &ShiftFit,
    (xlo, xhi): (f64, f64),
    (ylo, yhi): (f64, f64),
    big: bool,
) -> Result<ShiftContext<'a, DB>> {
    let t = fit.transform;
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
        .build_cartesian_2d(accuracy_axis(t, xlo, xhi), accuracy_axis(t, ylo, yhi))
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
    Ok(c)
}

/// The bootstrap band(s), y = x, then the fit line(s); a piecewise fit has two pieces that meet
/// at the split model's ID accuracy.
fn draw_fit_lines<DB: DrawingBackend>(
    c: &mut ShiftContext<DB>,
    fit: &ShiftFit,
    (xlo, xhi): (f64, f64),
    (ylo, yhi): (f64, f64),
) -> Result<()> {
    let blue = RGBColor(31, 119, 180);
    let split = fit
        .split_at
        .map(|at| fit.transform.forward(at).clamp(xlo, xhi))
        .unwrap_or(xhi);
    let mut pieces = vec![(fit, xlo, split)];
    if let Some(upper) = &fit.upper {
        pieces.push((upper, split, xhi));
    }
    for (piece, _, _) in &pieces {
        c.draw_series(std::iter::once(Polygon::new(
            band_polygon(piece, (xlo, xhi), (ylo, yhi)),
            blue.mix(0.18).filled(),
        )))
        .map_err(err)?;
    }
    let diagonal = line_segment(1.0, 0.0, xlo, xhi, ylo, yhi);
    if !diagonal.is_empty() {
        c.draw_series(DashedLineSeries::new(
            diagonal,
            6,
            4,
            BLACK.mix(0.6).stroke_width(1),
        ))
        .map_err(err)?
        .label("y = x")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.6)));
    }
    let n: usize = pieces.iter().map(|p| p.0.line.n).sum();
    let label = if pieces.len() > 1 {
        format!("piecewise fit (n = {n})")
    } else {
        format!("linear fit (n = {n})")
    };
    for (i, (piece, from, to)) in pieces.iter().enumerate() {
        let line = &piece.line;
        let segment = line_segment(line.slope, line.intercept, *from, *to, ylo, yhi);
        let series = c
            .draw_series(LineSeries::new(segment, blue.stroke_width(2)))
            .map_err(err)?;
        // One legend entry for the fit, however many pieces it has.
        if i == 0 {
            series.label(label.clone()).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 16, y)], blue.stroke_width(2))
            });
        }
    }
    Ok(())
}

/// The published cloud (faint), then the results' models coloured by group; returns a marker per
/// point drawn.
fn draw_points<DB: DrawingBackend>(
    c: &mut ShiftContext<DB>,
    chart: &ShiftChart,
    groups: &[String],
    big: bool,
) -> Result<Vec<Marker>> {
    let t = chart.fit.transform;
    let at = |p: &Point| (t.forward(p.id), t.forward(p.ood));
    let mut markers = Vec::new();
    if !chart.cloud.is_empty() {
        c.draw_series(
            chart
                .cloud
                .iter()
                .map(|p| Circle::new(at(p), 2, RGBColor(150, 150, 150).mix(0.5).filled())),
        )
        .map_err(err)?
        .label("published baselines")
        .legend(|(x, y)| Circle::new((x + 8, y), 3, RGBColor(150, 150, 150).filled()));
        markers.extend(
            chart
                .cloud
                .iter()
                .map(|p| point_marker(c.backend_coord(&at(p)), 3, p, chart.fit, " (published)")),
        );
    }
    let radius = if big { 5 } else { 4 };
    let is_soup = |p: &Point| {
        matches!(
            chart.interventions.get(&p.model).map(|m| &m.intervention),
            Some(Intervention::Soup { .. })
        )
    };
    for group in groups {
        let members: Vec<&Point> = chart
            .points
            .iter()
            .filter(|p| &p.group == group && !is_soup(p))
            .collect();
        if members.is_empty() {
            continue;
        }
        let colour = group_colour(group, groups);
        c.draw_series(
            members
                .iter()
                .map(|p| Circle::new(at(p), radius, colour.filled())),
        )
        .map_err(err)?
        .label(group.clone())
        .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
        markers.extend(
            members
                .iter()
                .map(|p| point_marker(c.backend_coord(&at(p)), radius + 2, p, chart.fit, "")),
        );
    }
    let soups: Vec<&Point> = chart.points.iter().filter(|p| is_soup(p)).collect();
    for p in soups {
        let colour = group_colour(&p.group, groups);
        let size = radius * 2 + 2;
        let recipe = match chart.interventions.get(&p.model).map(|m| &m.intervention) {
            Some(Intervention::Soup { recipe, .. }) => recipe.as_str(),
            _ => "",
        };
        c.draw_series(std::iter::once(
            EmptyElement::at(at(p))
                + Polygon::new(diamond(size), colour.filled())
                + PathElement::new(diamond(size), BLACK.stroke_width(1)),
        ))
        .map_err(err)?
        .label(format!("soup: {} ({recipe})", p.model))
        .legend(move |(x, y)| {
            let corners = diamond(6).into_iter().map(|(dx, dy)| (x + 8 + dx, y + dy));
            Polygon::new(corners.collect::<Vec<_>>(), colour.filled())
        });
        markers.push(point_marker(
            c.backend_coord(&at(p)),
            size,
            p,
            chart.fit,
            " (soup)",
        ));
    }
    Ok(markers)
}

/// The corners of a diamond of half-width `size` pixels, closed: a soup's marker.
fn diamond(size: i32) -> Vec<(i32, i32)> {
    vec![(0, -size), (size, 0), (0, size), (-size, 0), (0, -size)]
}

/// Each WiSE-FT family as a line through its points in α order, the zero-shot (α = 0) and
/// fine-tuned (α = 1) ends ringed and labelled.
fn draw_curves<DB: DrawingBackend>(
    c: &mut ShiftContext<DB>,
    t: Transform,
    curves: &[Curve],
    groups: &[String],
    label_size: i32,
) -> Result<()> {
    let at = |p: &Point| (t.forward(p.id), t.forward(p.ood));
    for curve in curves {
        let colour = group_colour("wise-ft", groups);
        c.draw_series(LineSeries::new(
            curve.points.iter().map(|(_, p)| at(p)),
            colour.stroke_width(2),
        ))
        .map_err(err)?
        .label(format!("WiSE-FT {} (α 0 → 1)", curve.family))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
        let ends = [(0.0, "zero-shot"), (1.0, "fine-tuned")];
        c.draw_series(ends.iter().filter_map(|&(alpha, label)| {
            let (_, p) = curve.points.iter().find(|(a, _)| *a == alpha)?;
            Some(
                EmptyElement::at(at(p))
                    + Circle::new((0, 0), 9, BLACK.stroke_width(2))
                    // Left of the ring, right-aligned: the curve runs off to the right.
                    + Text::new(
                        format!("{label} (α = {alpha:.0})"),
                        (-12, 0),
                        TextStyle::from(("sans-serif", label_size).into_font())
                            .pos(Pos::new(HPos::Right, VPos::Center)),
                    ),
            )
        }))
        .map_err(err)?;
    }
    Ok(())
}

/// A point's marker: model, group, ID and OOD top-1, effective robustness against the fit.
fn point_marker((x, y): (i32, i32), r: i32, p: &Point, fit: &ShiftFit, suffix: &str) -> Marker {
    let er = p.ood - fit.expected(p.id);
    Marker {
        shape: Shape::Circle { x, y, r },
        model: p.model.clone(),
        group: p.group.clone(),
        tooltip: format!(
            "{} ({}){suffix}\nID top-1 ({}): {:.2} %\nOOD top-1 ({}): {:.2} %\neffective robustness: {:+.2} pp",
            p.model, p.group, fit.id_dataset, p.id, fit.shift, p.ood, er
        ),
    }
}

/// A fit's bootstrap band as a polygon in the transformed scale, kept inside the window
/// (plotters would move an outside point onto the edge, bending the shape).
fn band_polygon(fit: &ShiftFit, (xlo, xhi): (f64, f64), (ylo, yhi): (f64, f64)) -> Vec<(f64, f64)> {
    let t = fit.transform;
    let at = |x: f64, y: f64| (t.forward(x).clamp(xlo, xhi), t.forward(y).clamp(ylo, yhi));
    let mut band: Vec<(f64, f64)> = fit
        .band
        .id
        .iter()
        .zip(&fit.band.low)
        .map(|(x, y)| at(*x, *y))
        .collect();
    band.extend(
        fit.band
            .id
            .iter()
            .zip(&fit.band.high)
            .rev()
            .map(|(x, y)| at(*x, *y)),
    );
    band
}

/// The part of `y = a·x + b` with x in [from, to] whose y lies in [ylo, yhi].
fn line_segment(a: f64, b: f64, from: f64, to: f64, ylo: f64, yhi: f64) -> Vec<(f64, f64)> {
    let (mut x0, mut x1) = (from, to);
    if a != 0.0 {
        let (ya, yb) = ((ylo - b) / a, (yhi - b) / a);
        x0 = x0.max(ya.min(yb));
        x1 = x1.min(ya.max(yb));
    } else if !(ylo..=yhi).contains(&b) {
        return Vec::new();
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
) -> Result<Vec<Marker>> {
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
    // What the colours mean: one legend entry per group with a bar here.
    for group in groups
        .iter()
        .filter(|g| rows.iter().any(|r| &r.group == *g))
    {
        let colour = group_colour(group, groups);
        c.draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
            .map_err(err)?
            .label(group.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (x0, y0) = c.backend_coord(&(r.effective_robustness.min(0.0), i as f64 + 0.15));
            let (x1, y1) = c.backend_coord(&(r.effective_robustness.max(0.0), i as f64 + 0.85));
            Marker {
                shape: Shape::Rect { x0, y0, x1, y1 },
                model: r.model.clone(),
                group: r.group.clone(),
                tooltip: format!(
                    "{} ({})\naverage effective robustness: {:+.2} pp [{:+.2}, {:+.2}]",
                    r.model, r.group, r.effective_robustness, r.er_low, r.er_high
                ),
            }
        })
        .collect())
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
            .flat_map(|c| c.points.iter().map(|p| p.group.clone()))
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
            Figure::Shift(chart) => chart.fit.shift.clone(),
            Figure::Grid { .. } => continue,
            Figure::Bars { .. } => stem,
        };
        svgs.push((caption, render_svg(size, &figure, &groups)?));
    }
    Ok(svgs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fit::fit_shift;

    fn point(model: &str, group: &str, id: f64, ood: f64) -> Point {
        Point {
            model: model.into(),
            group: group.into(),
            id,
            ood,
            ood_ci: None,
        }
    }

    fn wise_ft(alpha: f64) -> ModelInfo {
        ModelInfo {
            intervention: Intervention::WiseFt {
                family: "clip".into(),
                alpha,
                endpoints: ["zs".into(), "ft".into()],
            },
        }
    }

    /// The pixel centre of a model's marker, from the tooltip layer.
    fn centre(svg: &str, model: &str) -> (i32, i32) {
        let tag = &svg[svg.find(&format!("data-model=\"{model}\"")).unwrap()..];
        let tag = &svg[svg[..svg.len() - tag.len()].rfind('<').unwrap()..];
        let attr = |name: &str| -> i32 {
            let from = &tag[tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2..];
            from[..from.find('"').unwrap()].parse().unwrap()
        };
        (attr("cx"), attr("cy"))
    }

    #[test]
    fn a_wise_ft_family_is_one_line_through_its_points_in_alpha_order_and_a_soup_a_diamond() {
        let base = [
            point("a", "standard", 40.0, 30.0),
            point("b", "standard", 60.0, 48.0),
            point("c", "standard", 80.0, 68.0),
        ];
        let fit = fit_shift(
            "v2",
            "id",
            &base.iter().collect::<Vec<_>>(),
            Transform::Probit,
            20,
            1,
        )
        .unwrap();
        // α order differs from ID order and from the order of the points: the line must follow α.
        let mut points = base.to_vec();
        points.extend([
            point("w-0.5", "wise-ft", 78.0, 70.0),
            point("ft", "fine-tuned", 82.0, 62.0),
            point("w-0.8", "wise-ft", 83.0, 66.0),
            point("zs", "zero-shot", 70.0, 65.0),
            point("w-0.2", "wise-ft", 79.0, 71.0),
            point("s", "soup", 81.0, 64.0),
        ]);
        let mut interventions: BTreeMap<String, ModelInfo> =
            [("w-0.5", 0.5), ("w-0.8", 0.8), ("w-0.2", 0.2)]
                .map(|(m, a)| (m.to_string(), wise_ft(a)))
                .into();
        let soup = Intervention::Soup {
            family: "s".into(),
            members: vec!["ft".into()],
            recipe: "uniform".into(),
        };
        interventions.insert("s".into(), ModelInfo { intervention: soup });
        let chart = ShiftChart {
            fit: &fit,
            points: &points,
            cloud: &[],
            label_points: false,
            interventions: &interventions,
        };
        let groups = groups_of(std::slice::from_ref(&chart), &[]);
        let svg = render_svg((900, 760), &Figure::Shift(&chart), &groups).unwrap();
        let expected: String = ["zs", "w-0.2", "w-0.5", "w-0.8", "ft"]
            .iter()
            .map(|m| {
                let (x, y) = centre(&svg, m);
                format!("{x},{y} ")
            })
            .collect();
        assert!(
            svg.contains(&format!("points=\"{expected}\"")),
            "no polyline through {expected} in\n{svg}"
        );
        for text in [
            "WiSE-FT clip (α 0 → 1)",
            "zero-shot (α = 0)",
            "fine-tuned (α = 1)",
            "soup: s (uniform)",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        // The soup is a filled diamond (a polygon of 4 corners) centred on its marker.
        let (x, y) = centre(&svg, "s");
        let r = 12; // big chart: radius 5, so half-width 5 * 2 + 2
        assert!(
            svg.contains(&format!(
                "points=\"{x},{} {},{y} {x},{} ",
                y - r,
                x + r,
                y + r
            )),
            "no diamond at {x},{y}"
        );
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;
    use crate::analysis::fit::fit_shift;

    fn point(model: &str, id: f64, ood: f64) -> Point {
        Point {
            model: model.into(),
            group: "standard".into(),
            id,
            ood,
            ood_ci: None,
        }
    }

    /// (x, y, text) of every `<text>` element of an SVG.
    fn texts(svg: &str) -> Vec<(i32, i32, String)> {
        let mut found = Vec::new();
        let mut rest = svg;
        while let Some(at) = rest.find("<text") {
            let tag = &rest[at..];
            let end = tag.find("</text>").unwrap();
            let attr = |name: &str| -> i32 {
                let from = &tag[tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3..];
                from[..from.find('"').unwrap()].parse::<f64>().unwrap() as i32
            };
            let body = &tag[tag.find('>').unwrap() + 1..end];
            found.push((attr("x"), attr("y"), body.trim().to_string()));
            rest = &tag[end..];
        }
        found
    }

    #[test]
    fn clustered_models_fill_the_axes_and_their_labels_neither_overlap_nor_leave_the_chart() {
        // Five models within 3 points of each other, as in the user's case, two of them nearly
        // on top of each other, with names as long as real ones.
        let points = [
            point("efficientnet_lite0", 88.2, 80.1),
            point("efficientnet_lite1", 89.6, 81.9),
            point("efficientnet_lite2", 90.9, 83.0),
            point("efficientnet_lite2-int8", 90.8, 82.9),
            point("efficientnet_lite2-fp16", 90.85, 83.05),
        ];
        let fit = fit_shift(
            "v2",
            "id",
            &points.iter().collect::<Vec<_>>(),
            Transform::Probit,
            20,
            1,
        )
        .unwrap();
        let interventions = BTreeMap::new();
        let chart = ShiftChart {
            fit: &fit,
            points: &points,
            cloud: &[],
            label_points: true,
            interventions: &interventions,
        };
        let groups = groups_of(std::slice::from_ref(&chart), &[]);
        let (width, height) = (900, 760);
        let svg = render_svg((width, height), &Figure::Shift(&chart), &groups).unwrap();
        let texts = texts(&svg);
        // Tick labels are whole or half percents near the data: nothing like 40 or 95.
        let ticks: Vec<f64> = texts.iter().filter_map(|t| t.2.parse().ok()).collect();
        assert!(ticks.len() >= 4, "{ticks:?}");
        assert!(
            ticks.iter().all(|v| (78.0..=93.0).contains(v)),
            "axes fit the data: {ticks:?}"
        );
        let labels: Vec<(i32, i32, i32, i32)> = texts
            .iter()
            .filter(|t| points.iter().any(|p| p.model == t.2))
            .map(|(x, y, name)| {
                let (w, h) = label_size(name, 14);
                (*x, *y, x + w, y + h)
            })
            .collect();
        assert_eq!(
            labels.len(),
            points.len(),
            "every model labelled: {texts:?}"
        );
        for (i, a) in labels.iter().enumerate() {
            assert!(
                a.0 >= 0 && a.1 >= 0 && a.2 <= width as i32 && a.3 <= height as i32,
                "label {a:?} leaves the {width}×{height} chart"
            );
            for b in &labels[i + 1..] {
                assert!(!overlaps(*a, *b), "labels {a:?} and {b:?} overlap");
            }
        }
    }

    #[test]
    fn the_diagonal_is_drawn_only_inside_the_window() {
        assert!(line_segment(1.0, 0.0, 1.0, 2.0, -1.0, 0.5).is_empty());
        assert_eq!(
            line_segment(1.0, 0.0, 0.0, 2.0, 1.0, 3.0),
            vec![(1.0, 1.0), (2.0, 2.0)]
        );
    }
}
