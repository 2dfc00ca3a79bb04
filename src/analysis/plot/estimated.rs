//! Estimated accuracies on a shift's chart (docs/confidence.md): hollow circles in their group's
//! colour, one legend entry, and a tooltip per point as the measured points have.

use plotters::prelude::*;

use super::{err, group_colour, Marker, Shape, ShiftChart, ShiftContext};
use crate::analysis::fit::Point;
use crate::error::Result;

/// Draw the chart's estimates hollow, after (so over) the measured points.
pub(super) fn draw_estimates<DB: DrawingBackend>(
    c: &mut ShiftContext<DB>,
    chart: &ShiftChart,
    groups: &[String],
    radius: i32,
) -> Result<Vec<Marker>> {
    if chart.estimates.is_empty() {
        return Ok(Vec::new());
    }
    let t = chart.fit.transform;
    let at = |p: &Point| (t.forward(p.id), t.forward(p.ood));
    let hollow = |p: &Point| {
        let colour = group_colour(&p.group, groups);
        Circle::new(at(p), radius, colour.stroke_width(2))
    };
    c.draw_series(chart.estimates.iter().map(hollow))
        .map_err(err)?
        .label(format!("estimated ({}), hollow", chart.estimate_method))
        .legend(|(x, y)| Circle::new((x + 8, y), 4, BLACK.stroke_width(2)));
    Ok(chart
        .estimates
        .iter()
        .map(|p| {
            let (x, y) = c.backend_coord(&at(p));
            estimate_marker((x, y), radius + 2, p, chart)
        })
        .collect())
}

/// An estimate's tooltip: the method, the estimated OOD top-1 and effective robustness against
/// the chart's line, and the measured top-1 where the shift has labels.
fn estimate_marker((x, y): (i32, i32), r: i32, p: &Point, chart: &ShiftChart) -> Marker {
    let fit = chart.fit;
    let er = p.ood - fit.expected(p.id);
    let measured = chart
        .points
        .iter()
        .find(|m| m.model == p.model)
        .map(|m| format!("\nmeasured OOD top-1: {:.2} %", m.ood))
        .unwrap_or_default();
    let line = if chart.estimated_line {
        " (line fitted to the estimates)"
    } else {
        ""
    };
    Marker {
        shape: Shape::Circle { x, y, r },
        model: p.model.clone(),
        group: p.group.clone(),
        tooltip: format!(
            "{} ({}), estimated without labels ({})\nID top-1 ({}): {:.2} %\nestimated OOD top-1 ({}): {:.2} %\nestimated effective robustness: {:+.2} pp{line}{measured}",
            p.model, p.group, chart.estimate_method, fit.id_dataset, p.id, fit.shift, p.ood, er
        ),
    }
}
