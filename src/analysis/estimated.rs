//! Estimated accuracies on the accuracy-on-the-line charts (docs/confidence.md): for each shift,
//! one method's estimates (`estimates.csv`) as hollow points. On a labelled shift they sit beside
//! the measured points, against the measured line; an unlabelled shift, which has no measured
//! points, gets a chart of its own whose line is fitted to the estimates as `fit` fits a shift,
//! which makes the estimated effective robustness.

use std::collections::BTreeMap;

use crate::analysis::estimate::{EstimateReport, EstimateRow};
use crate::analysis::fit::{self, Accuracy, FitSettings, Point, Robustness, ShiftFit};

/// The methods whose estimates are drawn, in order of preference: the first one a shift has.
/// ALine-D uses the whole collection of models and was the closest on the demo; ATC-MC is there
/// where ALine was refused (fewer than 3 models, no pair left).
pub const CHART_METHODS: [&str; 2] = ["ALine-D", "ATC-MC"];

/// What the charts draw from `estimates.csv`.
#[derive(Debug, Default)]
pub struct Estimated {
    /// Per shift: the method drawn and its points (ID top-1 measured, OOD top-1 estimated).
    pub points: BTreeMap<String, (String, Vec<Point>)>,
    /// Unlabelled shifts: the line fitted to the estimates.
    pub fits: Vec<ShiftFit>,
    /// Unlabelled shifts: effective robustness against that line.
    pub robustness: Vec<Robustness>,
    pub notes: Vec<String>,
}

/// The estimates of a folder as the charts draw them. `evals` are the measured accuracies
/// (unlabelled rows already left out), `settings` the settings of the measured fit.
pub fn gather(report: &EstimateReport, evals: &[Accuracy], settings: &FitSettings) -> Estimated {
    let mut out = Estimated::default();
    let id_view: BTreeMap<&str, &str> = report
        .agreement
        .iter()
        .map(|a| (a.dataset.as_str(), a.id_view.as_str()))
        .collect();
    let mut shifts: Vec<&str> = Vec::new();
    for r in &report.estimates {
        if !shifts.contains(&r.dataset.as_str()) {
            shifts.push(&r.dataset);
        }
    }
    let mut unlabelled_rows: Vec<Accuracy> = Vec::new();
    for shift in shifts {
        let rows: Vec<&EstimateRow> = report
            .estimates
            .iter()
            .filter(|r| r.dataset == shift)
            .collect();
        let Some(method) = CHART_METHODS
            .iter()
            .find(|m| rows.iter().any(|r| r.method == **m))
        else {
            continue;
        };
        let id = id_view.get(shift).copied().unwrap_or(settings.id.as_str());
        let measured_id = |model: &str| {
            evals
                .iter()
                .find(|a| a.model == model && a.dataset == id)
                .or_else(|| {
                    evals
                        .iter()
                        .find(|a| a.model == model && a.dataset == settings.id)
                })
        };
        let points: Vec<Point> = rows
            .iter()
            .filter(|r| r.method == *method)
            .filter_map(|r| {
                let id = measured_id(&r.model)?;
                Some(Point {
                    model: r.model.clone(),
                    group: id.group.clone(),
                    id: id.top1,
                    ood: r.estimate,
                    ood_ci: None,
                })
            })
            .collect();
        if rows.iter().all(|r| r.top1.is_none()) {
            unlabelled_rows.extend(points.iter().map(|p| Accuracy {
                model: p.model.clone(),
                group: p.group.clone(),
                dataset: shift.to_string(),
                top1: p.ood,
                ci: None,
            }));
        }
        out.points
            .insert(shift.to_string(), (method.to_string(), points));
    }
    if !unlabelled_rows.is_empty() {
        // The ID rows (and class-restricted views) the estimates' lines are fitted against.
        let mut rows: Vec<Accuracy> = evals
            .iter()
            .filter(|a| a.dataset == settings.id || a.dataset.contains('@'))
            .cloned()
            .collect();
        rows.extend(unlabelled_rows);
        match fit::fit_all(&rows, None, settings) {
            Ok((fit, robustness)) => {
                out.fits = fit.shifts;
                out.robustness = robustness
                    .into_iter()
                    .filter(|r| r.shift != "average")
                    .collect();
            }
            Err(e) => out.notes.push(format!(
                "the unlabelled shifts' estimates have no line of their own: {e}"
            )),
        }
    }
    out
}
