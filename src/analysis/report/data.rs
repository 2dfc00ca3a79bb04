//! What a report shows, gathered from a results folder and its fit: the models, the accuracy
//! table, the fit per shift, and the interventions (WiSE-FT curves, soups).

use super::*;

/// What a report shows, gathered once for every format.
#[derive(Debug, Serialize)]
pub struct ReportData {
    pub title: String,
    pub id_dataset: String,
    pub transform: String,
    pub shifts: Vec<String>,
    pub models: Vec<ModelRow>,
    pub fits: Vec<FitRow>,
    pub notes: Vec<String>,
    /// What limits the result's meaning (fits on few models or a low R², models kept from
    /// earlier runs, no fit at all): shown first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cautions: Vec<String>,
    /// Top-1 of every model on every dataset, shown whatever the fit could do.
    pub accuracy: AccuracyTable,
    pub provenance: Option<Provenance>,
    /// WiSE-FT families (run.json's `models`), each with the α of highest ID top-1 and of highest
    /// effective robustness (read off the test sets) and, given `--held-out`, the α chosen on the
    /// held-out dataset; absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wise_ft: Vec<FamilyRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub soups: Vec<SoupRow>,
    /// ImageNet-C's metrics per model and corruption; absent without corruption datasets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corruptions: Option<crate::analysis::corruptions::CorruptionReport>,
    /// (model, group, relative mCE, average ER on the natural shifts) for the scatter.
    #[serde(skip)]
    pub synthetic_vs_natural: Vec<(String, String, f64, f64)>,
    /// Inline SVG charts (HTML only).
    #[serde(skip)]
    pub charts: Vec<(String, String)>,
    /// Calibration and label-free estimates, as `estimate` last wrote them; absent before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<crate::analysis::estimate::EstimateReport>,
}

#[derive(Debug, Serialize)]
pub struct ModelRow {
    pub model: String,
    pub group: String,
    pub id_top1: Option<f64>,
    /// Per shift: OOD top-1 and effective robustness (with interval).
    pub shifts: BTreeMap<String, ShiftCell>,
    pub average_effective_robustness: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
pub struct AccuracyTable {
    /// The ID dataset first, then the rest in the order evals.csv has them.
    pub datasets: Vec<String>,
    /// Per model (best ID top-1 first): group and top-1 (%) per dataset, None where not scored.
    pub rows: Vec<AccuracyRow>,
}

#[derive(Debug, Serialize)]
pub struct AccuracyRow {
    pub model: String,
    pub group: String,
    pub top1: Vec<Option<f64>>,
}

pub(super) fn accuracy_table(evals: &[Accuracy], id: &str) -> AccuracyTable {
    let mut datasets: Vec<String> = vec![id.to_string()];
    for r in evals {
        if !datasets.contains(&r.dataset) {
            datasets.push(r.dataset.clone());
        }
    }
    let mut rows: Vec<AccuracyRow> = Vec::new();
    for r in evals {
        let at = datasets.iter().position(|d| d == &r.dataset).unwrap_or(0);
        match rows.iter_mut().find(|row| row.model == r.model) {
            Some(row) => row.top1[at] = Some(r.top1),
            None => {
                let mut top1 = vec![None; datasets.len()];
                top1[at] = Some(r.top1);
                rows.push(AccuracyRow {
                    model: r.model.clone(),
                    group: r.group.clone(),
                    top1,
                });
            }
        }
    }
    for row in &mut rows {
        row.top1.resize(datasets.len(), None);
    }
    rows.sort_by(|a, b| {
        b.top1[0]
            .unwrap_or(-1.0)
            .total_cmp(&a.top1[0].unwrap_or(-1.0))
            .then_with(|| a.model.cmp(&b.model))
    });
    AccuracyTable { datasets, rows }
}

pub(super) fn accuracy_cells(data: &ReportData) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["model".to_string(), "group".into()];
    header.extend(data.accuracy.datasets.iter().cloned());
    let rows = data
        .accuracy
        .rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.model.clone(), r.group.clone()];
            cells.extend(r.top1.iter().map(|v| pct(*v)));
            cells
        })
        .collect();
    (header, rows)
}

#[derive(Debug, Serialize)]
pub struct ShiftCell {
    pub ood_top1: f64,
    pub expected_ood_top1: f64,
    pub effective_robustness: f64,
    pub er_low: f64,
    pub er_high: f64,
}

#[derive(Debug, Serialize)]
pub struct FitRow {
    pub shift: String,
    pub id_dataset: String,
    pub n: usize,
    pub slope: f64,
    pub intercept: f64,
    pub r2: f64,
    pub linear: bool,
    pub note: Option<String>,
}

/// A WiSE-FT family: its points in α order (the endpoint models at α = 0 and 1 where the results
/// have them and the family has no point there), and the α with the highest average effective
/// robustness and the highest ID top-1. Both are read off the test sets, so neither is an
/// unbiased choice of α (the paper chooses α on held-out data); the report says so. Given a
/// held-out dataset, the α with the highest top-1 there is the choice, marked as such.
#[derive(Debug, Serialize)]
pub struct FamilyRow {
    pub family: String,
    /// The zero-shot side (α = 0), then the fine-tuned side (α = 1).
    pub endpoints: [String; 2],
    pub points: Vec<CurvePoint>,
    pub highest_effective_robustness: Option<CurvePoint>,
    pub highest_id_top1: Option<CurvePoint>,
    /// The `--held-out` dataset, and the point of highest top-1 on it (smallest α of equals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen_on_held_out: Option<CurvePoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub alpha: f64,
    pub model: String,
    pub id_top1: Option<f64>,
    /// Mean OOD top-1 over the shifts (the paper's y axis), when the model has them all.
    pub average_ood_top1: Option<f64>,
    pub average_effective_robustness: Option<f64>,
    /// Top-1 on the `--held-out` dataset, where given and the model has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out_top1: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct SoupRow {
    pub model: String,
    pub recipe: String,
    pub members: Vec<String>,
    pub id_top1: Option<f64>,
    pub average_effective_robustness: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Provenance {
    pub tool_version: String,
    pub onnxruntime_version: String,
    pub host: String,
    pub started: String,
    pub finished: String,
    pub providers: Vec<String>,
}

/// One row per model: ID top-1, each shift's cell and the average; best ID top-1 first.
pub(super) fn model_rows(
    evals: &[Accuracy],
    fit: &FitReport,
    robustness: &[Robustness],
) -> Vec<ModelRow> {
    let mut models: BTreeMap<String, ModelRow> = BTreeMap::new();
    for r in evals.iter().filter(|r| r.dataset == fit.id_dataset) {
        models.insert(
            r.model.clone(),
            ModelRow {
                model: r.model.clone(),
                group: r.group.clone(),
                id_top1: Some(r.top1),
                shifts: BTreeMap::new(),
                average_effective_robustness: None,
            },
        );
    }
    for r in robustness {
        let row = models.entry(r.model.clone()).or_insert_with(|| ModelRow {
            model: r.model.clone(),
            group: r.group.clone(),
            id_top1: None,
            shifts: BTreeMap::new(),
            average_effective_robustness: None,
        });
        if r.shift == "average" {
            row.average_effective_robustness = Some(r.effective_robustness);
        } else {
            row.shifts.insert(
                r.shift.clone(),
                ShiftCell {
                    ood_top1: r.ood_top1,
                    expected_ood_top1: r.expected_ood_top1,
                    effective_robustness: r.effective_robustness,
                    er_low: r.er_low,
                    er_high: r.er_high,
                },
            );
        }
    }
    let mut models: Vec<ModelRow> = models.into_values().collect();
    models.sort_by(|a, b| {
        b.id_top1
            .unwrap_or(-1.0)
            .total_cmp(&a.id_top1.unwrap_or(-1.0))
    });
    models
}

/// The WiSE-FT families and soups among the models, from run.json's `models`; `held_out` is the
/// dataset α is chosen on, with the accuracies to read it from.
pub(super) fn interventions(
    models: &[ModelRow],
    shifts: &[String],
    run: Option<&RunInfo>,
    held_out: Option<(&str, &[Accuracy])>,
) -> (Vec<FamilyRow>, Vec<SoupRow>) {
    let Some(run) = run else {
        return (Vec::new(), Vec::new());
    };
    let row = |name: &str| models.iter().find(|m| m.model == name);
    let held_out_top1 = |model: &str| {
        let (dataset, evals) = held_out?;
        evals
            .iter()
            .find(|a| a.model == model && a.dataset == dataset)
            .map(|a| a.top1)
    };
    let point = |alpha: f64, m: &ModelRow| CurvePoint {
        alpha,
        model: m.model.clone(),
        id_top1: m.id_top1,
        average_ood_top1: average_ood(m, shifts),
        average_effective_robustness: m.average_effective_robustness,
        held_out_top1: held_out_top1(&m.model),
    };
    let mut families: BTreeMap<&str, FamilyRow> = BTreeMap::new();
    let mut soups = Vec::new();
    for (name, info) in &run.models {
        let Some(m) = row(name) else { continue };
        match &info.intervention {
            Intervention::WiseFt {
                family,
                alpha,
                endpoints,
            } => {
                let f = families.entry(family).or_insert_with(|| FamilyRow {
                    family: family.clone(),
                    endpoints: endpoints.clone(),
                    points: Vec::new(),
                    highest_effective_robustness: None,
                    highest_id_top1: None,
                    held_out: held_out.map(|(d, _)| d.to_string()),
                    chosen_on_held_out: None,
                });
                f.points.push(point(*alpha, m));
            }
            Intervention::Soup {
                members, recipe, ..
            } => soups.push(SoupRow {
                model: name.clone(),
                recipe: recipe.clone(),
                members: members.clone(),
                id_top1: m.id_top1,
                average_effective_robustness: m.average_effective_robustness,
            }),
        }
    }
    let mut families: Vec<FamilyRow> = families.into_values().collect();
    for f in &mut families {
        for (alpha, end) in [(0.0, f.endpoints[0].clone()), (1.0, f.endpoints[1].clone())] {
            if let (false, Some(m)) = (f.points.iter().any(|p| p.alpha == alpha), row(&end)) {
                f.points.push(point(alpha, m));
            }
        }
        f.points.sort_by(|a, b| a.alpha.total_cmp(&b.alpha));
        let best = |key: &dyn Fn(&CurvePoint) -> Option<f64>| {
            // The first (smallest α) of equals: the one nearer the zero-shot end.
            let mut best: Option<&CurvePoint> = None;
            for p in &f.points {
                if key(p).is_some_and(|v| best.is_none_or(|b| v > key(b).unwrap_or(f64::MIN))) {
                    best = Some(p);
                }
            }
            best.cloned()
        };
        f.highest_effective_robustness = best(&|p| p.average_effective_robustness);
        f.highest_id_top1 = best(&|p| p.id_top1);
        f.chosen_on_held_out = best(&|p| p.held_out_top1);
    }
    (families, soups)
}

/// Mean OOD top-1 over `shifts`, if the model has every one.
pub(super) fn average_ood(m: &ModelRow, shifts: &[String]) -> Option<f64> {
    let values: Vec<f64> = shifts
        .iter()
        .map(|s| m.shifts.get(s).map(|c| c.ood_top1))
        .collect::<Option<_>>()?;
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

pub fn gather(
    title: &str,
    evals: &[Accuracy],
    fit: &FitReport,
    robustness: &[Robustness],
    run: Option<&RunInfo>,
    held_out: Option<&str>,
) -> ReportData {
    let shifts: Vec<String> = fit.shifts.iter().map(|s| s.shift.clone()).collect();
    let models = model_rows(evals, fit, robustness);
    let fits = fit
        .shifts
        .iter()
        .map(|s| FitRow {
            shift: s.shift.clone(),
            id_dataset: s.id_dataset.clone(),
            n: s.line.n,
            slope: s.line.slope,
            intercept: s.line.intercept,
            r2: s.line.r2,
            linear: s.linear,
            note: match (&s.note, &s.caution) {
                (Some(n), Some(c)) => Some(format!("{c}; {n}")),
                (n, c) => c.clone().or_else(|| n.clone()),
            },
        })
        .collect();
    let provenance = run.filter(|r| !r.tool_version.is_empty()).map(|r| {
        let mut providers: Vec<String> = r.evaluations.iter().map(|e| e.provider.clone()).collect();
        providers.sort();
        providers.dedup();
        Provenance {
            tool_version: r.tool_version.clone(),
            onnxruntime_version: r.onnxruntime_version.clone(),
            host: r.host.clone(),
            started: r.started.clone(),
            finished: r.finished.clone(),
            providers,
        }
    });
    let (wise_ft, soups) = interventions(&models, &shifts, run, held_out.map(|h| (h, evals)));
    ReportData {
        wise_ft,
        soups,
        title: title.to_string(),
        id_dataset: fit.id_dataset.clone(),
        transform: format!("{:?}", fit.transform).to_lowercase(),
        shifts,
        models,
        fits,
        notes: fit.notes.clone(),
        cautions: fit.cautions.clone(),
        accuracy: accuracy_table(evals, &fit.id_dataset),
        provenance,
        corruptions: None,
        synthetic_vs_natural: Vec::new(),
        charts: Vec::new(),
        confidence: None,
    }
}
