//! What a shift chart draws: the fitted line and its band, y = x, the points by group and
//! marker, and the WiSE-FT curves.

use super::*;

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

/// The bootstrap band(s), y = x, then the fit line(s); a piecewise fit has two pieces that meet
/// at the split model's ID accuracy.
pub(super) fn draw_fit_lines<DB: DrawingBackend>(
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
pub(super) fn draw_points<DB: DrawingBackend>(
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
pub(super) fn diamond(size: i32) -> Vec<(i32, i32)> {
    vec![(0, -size), (size, 0), (0, size), (-size, 0), (0, -size)]
}

/// Each WiSE-FT family as a line through its points in α order, the zero-shot (α = 0) and
/// fine-tuned (α = 1) ends ringed and labelled.
pub(super) fn draw_curves<DB: DrawingBackend>(
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
pub(super) fn point_marker(
    (x, y): (i32, i32),
    r: i32,
    p: &Point,
    fit: &ShiftFit,
    suffix: &str,
) -> Marker {
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
pub(super) fn band_polygon(
    fit: &ShiftFit,
    (xlo, xhi): (f64, f64),
    (ylo, yhi): (f64, f64),
) -> Vec<(f64, f64)> {
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
pub(super) fn line_segment(
    a: f64,
    b: f64,
    from: f64,
    to: f64,
    ylo: f64,
    yhi: f64,
) -> Vec<(f64, f64)> {
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
