//! The effective-robustness bar chart: one bar per model and shift, coloured by group.

use super::*;

pub(super) fn draw_bars<DB: DrawingBackend>(
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
