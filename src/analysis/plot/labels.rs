//! Model names beside their points, placed so they overlap neither each other nor the markers.

use super::*;

/// Model names beside their points, without overlapping one another or the markers and inside
/// the plotting area: each label tries places around its point, nearest first, then further out
/// with a leader line back to the point. A label that fits nowhere is left out (the tooltip and
/// the tables still name the model) rather than drawn over another or cut at the edge.
pub(super) fn draw_point_labels<DB: DrawingBackend>(
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
pub(super) fn label_size(text: &str, size: i32) -> (i32, i32) {
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
pub(super) fn label_places(w: i32, h: i32) -> Vec<(i32, i32, bool)> {
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

pub(super) fn overlaps(a: (i32, i32, i32, i32), b: (i32, i32, i32, i32)) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}
