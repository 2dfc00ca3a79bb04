//! Reports (docs/design.md, section 7): Markdown for pull requests and READMEs, one self-contained HTML
//! file (plots inline, sortable tables) and JSON for scripts. Each renderer returns text and does
//! no I/O; `analysis` decides where it goes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::fit::{Accuracy, FitReport, Robustness};
use crate::analysis::markup::{escape_markdown, escape_xml};
use crate::input::card::Intervention;
use crate::results::store::RunInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Md,
    Html,
    Json,
}

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
    /// WiSE-FT families (run.json's `models`), each with its best α; absent when there are none.
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

fn accuracy_table(evals: &[Accuracy], id: &str) -> AccuracyTable {
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

fn accuracy_cells(data: &ReportData) -> (Vec<String>, Vec<Vec<String>>) {
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
/// unbiased choice of α (the paper chooses α on held-out data); the report says so.
#[derive(Debug, Serialize)]
pub struct FamilyRow {
    pub family: String,
    /// The zero-shot side (α = 0), then the fine-tuned side (α = 1).
    pub endpoints: [String; 2],
    pub points: Vec<CurvePoint>,
    pub highest_effective_robustness: Option<CurvePoint>,
    pub highest_id_top1: Option<CurvePoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub alpha: f64,
    pub model: String,
    pub id_top1: Option<f64>,
    /// Mean OOD top-1 over the shifts (the paper's y axis), when the model has them all.
    pub average_ood_top1: Option<f64>,
    pub average_effective_robustness: Option<f64>,
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
fn model_rows(evals: &[Accuracy], fit: &FitReport, robustness: &[Robustness]) -> Vec<ModelRow> {
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

/// The WiSE-FT families and soups among the models, from run.json's `models`.
fn interventions(
    models: &[ModelRow],
    shifts: &[String],
    run: Option<&RunInfo>,
) -> (Vec<FamilyRow>, Vec<SoupRow>) {
    let Some(run) = run else {
        return (Vec::new(), Vec::new());
    };
    let row = |name: &str| models.iter().find(|m| m.model == name);
    let point = |alpha: f64, m: &ModelRow| CurvePoint {
        alpha,
        model: m.model.clone(),
        id_top1: m.id_top1,
        average_ood_top1: average_ood(m, shifts),
        average_effective_robustness: m.average_effective_robustness,
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
    }
    (families, soups)
}

/// Mean OOD top-1 over `shifts`, if the model has every one.
fn average_ood(m: &ModelRow, shifts: &[String]) -> Option<f64> {
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
    let (wise_ft, soups) = interventions(&models, &shifts, run);
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

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

fn signed(v: f64) -> String {
    format!("{v:+.2}")
}

/// Header and body cells of the per-model table, shared by Markdown and HTML.
fn model_table(data: &ReportData) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec![
        "model".to_string(),
        "group".into(),
        format!("{} top-1", data.id_dataset),
    ];
    for s in &data.shifts {
        header.push(format!("{s} top-1"));
        header.push(format!("{s} ER"));
    }
    header.push("average ER".into());
    let rows = data
        .models
        .iter()
        .map(|m| {
            let mut cells = vec![m.model.clone(), m.group.clone(), pct(m.id_top1)];
            for s in &data.shifts {
                match m.shifts.get(s) {
                    Some(c) => {
                        cells.push(format!("{:.2}", c.ood_top1));
                        cells.push(format!(
                            "{} [{}, {}]",
                            signed(c.effective_robustness),
                            signed(c.er_low),
                            signed(c.er_high)
                        ));
                    }
                    None => cells.extend(["–".to_string(), "–".to_string()]),
                }
            }
            cells.push(
                m.average_effective_robustness
                    .map(signed)
                    .unwrap_or_else(|| "–".into()),
            );
            cells
        })
        .collect();
    (header, rows)
}

fn fit_table(data: &ReportData) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "shift",
        "ID dataset",
        "n",
        "slope",
        "intercept",
        "R²",
        "note",
    ]
    .map(String::from)
    .to_vec();
    let rows = data
        .fits
        .iter()
        .map(|f| {
            vec![
                f.shift.clone(),
                f.id_dataset.clone(),
                f.n.to_string(),
                format!("{:.3}", f.slope),
                format!("{:.3}", f.intercept),
                format!("{:.3}", f.r2),
                f.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    (header, rows)
}

pub(crate) type Table = (Vec<String>, Vec<Vec<String>>);

fn or_dash(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

/// Per WiSE-FT family and for the soups: a heading, a sentence (best α, endpoints) and a table
/// whose second column holds model names. Shared by Markdown and HTML, which escape them.
fn intervention_sections(data: &ReportData) -> Vec<(String, String, Table)> {
    let describe = |p: &Option<CurvePoint>, v: fn(&CurvePoint) -> String| match p {
        Some(p) => format!("α = {:.2} ({}, {})", p.alpha, p.model, v(p)),
        None => "–".into(),
    };
    let mut sections = Vec::new();
    for f in &data.wise_ft {
        let text = format!(
            "θ(α) = (1 − α)·θ({}) + α·θ({}). Read off the test sets, so neither is a choice of α \
             (the paper chooses α on held-out data): highest average effective robustness {}; \
             highest {} top-1 {}.",
            f.endpoints[0],
            f.endpoints[1],
            describe(&f.highest_effective_robustness, |p| format!(
                "{} pp",
                or_dash(p.average_effective_robustness, signed)
            )),
            data.id_dataset,
            describe(&f.highest_id_top1, |p| format!("{} %", pct(p.id_top1))),
        );
        let header = [
            "α".to_string(),
            "model".into(),
            format!("{} top-1", data.id_dataset),
            "average OOD top-1".into(),
            "average ER".into(),
        ]
        .to_vec();
        let rows = f
            .points
            .iter()
            .map(|p| {
                vec![
                    format!("{:.2}", p.alpha),
                    p.model.clone(),
                    pct(p.id_top1),
                    pct(p.average_ood_top1),
                    or_dash(p.average_effective_robustness, signed),
                ]
            })
            .collect();
        sections.push((format!("WiSE-FT: {}", f.family), text, (header, rows)));
    }
    if !data.soups.is_empty() {
        let header = ["recipe", "soup", "members", "ID top-1", "average ER"]
            .map(String::from)
            .to_vec();
        let rows = data
            .soups
            .iter()
            .map(|s| {
                vec![
                    s.recipe.clone(),
                    s.model.clone(),
                    s.members.join(", "),
                    pct(s.id_top1),
                    or_dash(s.average_effective_robustness, signed),
                ]
            })
            .collect();
        let text = "Each soup's weights are the mean of its members' (uniform), or of those kept one by one while held-out accuracy did not drop (greedy).".to_string();
        sections.push(("Model soups".to_string(), text, (header, rows)));
    }
    sections
}

pub fn markdown(data: &ReportData) -> String {
    // Names from data (header and the `names` columns) are escaped; numbers are ours.
    let table = |(header, rows): (Vec<String>, Vec<Vec<String>>), names: &[usize]| {
        let header: Vec<String> = header.iter().map(|h| escape_markdown(h)).collect();
        let mut s = format!(
            "| {} |\n|{}|\n",
            header.join(" | "),
            vec!["---"; header.len()].join("|")
        );
        for r in rows {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if names.contains(&i) {
                        escape_markdown(c)
                    } else {
                        c.clone()
                    }
                })
                .collect();
            s += &format!("| {} |\n", cells.join(" | "));
        }
        s
    };
    let mut s = format!("# {}\n\n", escape_markdown(&data.title));
    s += &format!(
        "Effective robustness (ER) is OOD top-1 minus what the {} fit of the baseline models expects at the model's \
         ID top-1, in percentage points, with its 95 % interval. Accuracies in %.\n\n",
        data.transform
    );
    for c in &data.cautions {
        s += &format!("> **Caution:** {}\n\n", escape_markdown(c));
    }
    s += "## Top-1 accuracy\n\n";
    let names: Vec<usize> = (0..data.accuracy.datasets.len() + 2).collect();
    s += &table(accuracy_cells(data), &names);
    s += "\n## Models\n\n";
    s += &table(model_table(data), &[0, 1]);
    if let Some(c) = &data.corruptions {
        let (summary, per_corruption) = crate::analysis::corruptions::tables(c);
        s += "\n## Corruptions\n\n";
        s += &format!("{}\n\n", crate::analysis::corruptions::EXPLAINER);
        s += &table(summary, &[0, 1]);
        s += "\n";
        s += &table(per_corruption, &[0]);
    }
    let confidence = data
        .confidence
        .as_ref()
        .map(|c| c.sections())
        .unwrap_or_default();
    for (heading, text, t) in intervention_sections(data).into_iter().chain(confidence) {
        s += &format!(
            "\n## {}\n\n{}\n\n",
            escape_markdown(&heading),
            escape_markdown(&text)
        );
        // Every column: recipes, like names, come from run.json.
        let every: Vec<usize> = (0..t.0.len()).collect();
        s += &table(t, &every);
    }
    s += "\n## Fits\n\n";
    s += &table(fit_table(data), &[0, 1, 6]);
    for n in &data.notes {
        s += &format!("\n> {}\n", escape_markdown(n));
    }
    if let Some(p) = &data.provenance {
        s += &format!(
            "\n## Provenance\n\nrobust-eval {}, ONNX Runtime {} ({}), host {}, {} – {}\n",
            p.tool_version,
            p.onnxruntime_version,
            p.providers.join(", "),
            p.host,
            p.started,
            p.finished
        );
    }
    s
}

pub fn json(data: &ReportData) -> String {
    serde_json::to_string_pretty(data).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A table whose header cells sort it on click; `rows` pairs each row with the model and group
/// the filter matches it on, where it has them.
fn html_table(
    id: &str,
    (header, rows): (Vec<String>, Vec<Vec<String>>),
    keys: &[(&str, &str)],
) -> String {
    let mut s = format!("<table class=\"sortable\" id=\"{id}\"><thead><tr>");
    for h in header {
        s += &format!("<th>{}</th>", escape_xml(&h));
    }
    s += "</tr></thead><tbody>";
    for (i, r) in rows.into_iter().enumerate() {
        match keys.get(i) {
            Some((model, group)) => {
                s += &format!(
                    "<tr data-model=\"{}\" data-group=\"{}\">",
                    escape_xml(model),
                    escape_xml(group)
                )
            }
            None => s += "<tr>",
        }
        for c in r {
            s += &format!("<td>{}</td>", escape_xml(&c));
        }
        s += "</tr>";
    }
    s + "</tbody></table>"
}

/// The highest and lowest average effective robustness, in a sentence each.
fn html_headline(data: &ReportData) -> String {
    let h = headline(data, 3);
    let list = |models: &[Ranked]| {
        models
            .iter()
            .map(|m| {
                format!(
                    "<b>{}</b> {:+.2} ({})",
                    escape_xml(&m.model),
                    m.average_effective_robustness,
                    escape_xml(&m.group)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if h.highest.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "<p class=\"headline\">Highest average effective robustness (pp): {}",
        list(&h.highest)
    );
    // Only the overlap caution: the others are shown above the headline already.
    let caution = h.cautions.iter().skip(data.cautions.len());
    let caution: Vec<String> = caution.map(|c| escape_xml(c)).collect();
    if !h.lowest.is_empty() {
        s += &format!("<br>Lowest: {}", list(&h.lowest));
    }
    for c in caution {
        s += &format!("<br><i>Caution: {c}.</i>");
    }
    s + "</p>"
}

/// The model filter and the charts; every point carries a tooltip (`<title>`).
fn html_charts(data: &ReportData) -> String {
    if data.charts.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<h2>Charts</h2><p class=\"filter\"><label for=\"filter\">Highlight models</label> \
         <input id=\"filter\" type=\"search\" list=\"model-names\" placeholder=\"model or group name\" autocomplete=\"off\"> \
         <span id=\"matches\"></span> Hover a point for its model, group, ID and OOD top-1 and effective robustness.</p>\
         <datalist id=\"model-names\">",
    );
    for m in &data.models {
        s += &format!("<option value=\"{}\">", escape_xml(&m.model));
    }
    s += "</datalist><div class=\"charts\">";
    for (name, svg) in &data.charts {
        s += &format!(
            "<figure><figcaption>{}</figcaption>{svg}</figure>",
            escape_xml(name)
        );
    }
    s + "</div>"
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:14px}\
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f0f0f0;cursor:pointer;user-select:none}\
th[aria-sort=ascending]::after{content:' \\25B2'}th[aria-sort=descending]::after{content:' \\25BC'}\
td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}.note{color:#a33}\
.headline{font-size:15px;line-height:1.6}.filter input{font-size:15px;padding:3px 6px;width:18em}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:1em}\
figure{margin:0}figcaption{font-weight:bold;margin-bottom:4px}figure svg{width:100%;height:auto;max-width:900px}\
.tip{cursor:help}.tip:hover{stroke:#555;stroke-width:1.5px}.tip.hit{stroke:#000;stroke-width:3px}";

/// Click-to-sort (numbers as numbers, blanks last) and the model filter, which rings the matching
/// points and bars and hides the other table rows; `report.html#filter=NAME` opens it filtered.
const SCRIPT: &str = "document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){\
var tb=th.closest('table').tBodies[0],rows=Array.from(tb.rows),asc=th.getAttribute('aria-sort')!=='ascending';\
th.parentNode.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort')});th.setAttribute('aria-sort',asc?'ascending':'descending');\
var key=function(r){var t=r.cells[i].textContent,v=parseFloat(t);return isNaN(v)?t:v};\
rows.sort(function(a,b){var x=key(a),y=key(b),nx=typeof x==='number',ny=typeof y==='number';\
if(nx!==ny){return nx?-1:1}return (x<y?-1:x>y?1:0)*(asc?1:-1)});rows.forEach(function(r){tb.appendChild(r)})})});\
(function(){var f=document.getElementById('filter');if(!f){return}\
var has=function(e,q){return (e.dataset.model||'').toLowerCase().indexOf(q)>=0||(e.dataset.group||'').toLowerCase().indexOf(q)>=0};\
var apply=function(){var q=f.value.trim().toLowerCase(),n=0,rows=document.querySelectorAll('#models tbody tr');\
document.querySelectorAll('.tip').forEach(function(e){e.classList.toggle('hit',q!==''&&has(e,q))});\
rows.forEach(function(r){var hit=q===''||has(r,q);r.hidden=!hit;if(hit){n++}});\
document.getElementById('matches').textContent=q===''?'':n+' of '+rows.length+' models'};\
f.addEventListener('input',apply);\
if(location.hash.indexOf('#filter=')===0){f.value=decodeURIComponent(location.hash.slice(8));apply()}})();";

/// The Content-Security-Policy: no network, and only this file's own script runs (by hash), so
/// nothing that slipped into the markup could execute.
fn content_security_policy() -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT.as_bytes()));
    format!("default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'")
}

pub fn html(data: &ReportData) -> String {
    let mut body = format!("<h1>{}</h1>", escape_xml(&data.title));
    body += &format!(
        "<p>Effective robustness (ER): OOD top-1 minus what the {} fit of the baseline models expects at the model's ID \
         top-1, in percentage points, with its 95 % interval. Click a column to sort.</p>",
        escape_xml(&data.transform)
    );
    for c in &data.cautions {
        body += &format!("<p class=\"caution\"><b>Caution:</b> {}</p>", escape_xml(c));
    }
    body += &html_headline(data);
    body += &html_charts(data);
    body += "<h2>Top-1 accuracy</h2>";
    let keys: Vec<(&str, &str)> = data
        .accuracy
        .rows
        .iter()
        .map(|r| (r.model.as_str(), r.group.as_str()))
        .collect();
    body += &html_table("accuracy", accuracy_cells(data), &keys);
    body += "<h2>Models</h2>";
    let keys: Vec<(&str, &str)> = data
        .models
        .iter()
        .map(|m| (m.model.as_str(), m.group.as_str()))
        .collect();
    body += &html_table("models", model_table(data), &keys);
    if let Some(c) = &data.corruptions {
        let (summary, per_corruption) = crate::analysis::corruptions::tables(c);
        body += &format!(
            "<h2>Corruptions</h2><p>{}</p>",
            escape_xml(crate::analysis::corruptions::EXPLAINER)
        );
        let corrupted: Vec<(&str, &str)> = c
            .models
            .iter()
            .map(|m| (m.model.as_str(), m.group.as_str()))
            .collect();
        body += &html_table("mce", summary, &corrupted);
        body += &html_table("ce", per_corruption, &corrupted);
        body += &crate::analysis::corruptions::svg_figures(c, &data.synthetic_vs_natural);
    }
    let confidence = data
        .confidence
        .as_ref()
        .map(|c| c.sections())
        .unwrap_or_default();
    let sections = intervention_sections(data).into_iter().chain(confidence);
    for (i, (heading, text, t)) in sections.enumerate() {
        body += &format!(
            "<h2>{}</h2><p>{}</p>",
            escape_xml(&heading),
            escape_xml(&text)
        );
        body += &html_table(&format!("intervention-{i}"), t, &[]);
    }
    body += "<h2>Fits</h2>";
    body += &html_table("fits", fit_table(data), &[]);
    for n in &data.notes {
        body += &format!("<p class=\"note\">{}</p>", escape_xml(n));
    }
    if let Some(p) = &data.provenance {
        body += &format!(
            "<h2>Provenance</h2><p>robust-eval {}, ONNX Runtime {} ({}), host {}, {} – {}</p>",
            escape_xml(&p.tool_version),
            escape_xml(&p.onnxruntime_version),
            escape_xml(&p.providers.join(", ")),
            escape_xml(&p.host),
            escape_xml(&p.started),
            escape_xml(&p.finished)
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\"><title>{}</title><style>{STYLE}</style></head>\
         <body>{body}<script>{SCRIPT}</script></body></html>\n",
        content_security_policy(),
        escape_xml(&data.title)
    )
}

/// The result in a few lines, for the end of `run`: each shift's fit and the models with the
/// highest and lowest average effective robustness.
#[derive(Debug, Serialize)]
pub struct Headline {
    pub id_dataset: String,
    pub transform: String,
    pub fits: Vec<HeadlineFit>,
    /// Highest average effective robustness first.
    pub highest: Vec<Ranked>,
    /// Lowest average effective robustness first.
    pub lowest: Vec<Ranked>,
    /// Said before the ranking: unreliable fits, models kept from earlier runs, a ranking whose
    /// models' intervals all overlap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cautions: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct HeadlineFit {
    pub shift: String,
    pub slope: f64,
    pub r2: f64,
    pub n: usize,
}

#[derive(Debug, Serialize)]
pub struct Ranked {
    pub model: String,
    pub group: String,
    pub average_effective_robustness: f64,
}

/// Up to `k` models at each end of the average-effective-robustness ranking; with fewer than
/// 2·k models the two lists split them rather than repeat one.
pub fn headline(data: &ReportData, k: usize) -> Headline {
    let mut ranked: Vec<Ranked> = data
        .models
        .iter()
        .filter_map(|m| {
            m.average_effective_robustness.map(|er| Ranked {
                model: m.model.clone(),
                group: m.group.clone(),
                average_effective_robustness: er,
            })
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.average_effective_robustness
            .total_cmp(&a.average_effective_robustness)
            .then_with(|| a.model.cmp(&b.model))
    });
    let mut cautions = data.cautions.clone();
    if ranked.len() > 1 && intervals_all_overlap(data, &ranked) {
        cautions.push(format!(
            "the {} ranked models' effective-robustness intervals overlap on every shift: \
             the ranking below is no evidence that one is more robust than another",
            ranked.len()
        ));
    }
    let n = ranked.len();
    let lowest: Vec<Ranked> = ranked.drain(n - k.min(n / 2)..).rev().collect();
    ranked.truncate(k.min(n.div_ceil(2)));
    Headline {
        id_dataset: data.id_dataset.clone(),
        transform: data.transform.clone(),
        fits: data
            .fits
            .iter()
            .map(|f| HeadlineFit {
                shift: f.shift.clone(),
                slope: f.slope,
                r2: f.r2,
                n: f.n,
            })
            .collect(),
        highest: ranked,
        lowest,
        cautions,
    }
}

/// Whether, on every shift, the ranked models' ER intervals share a common point: then no pair
/// of them differs beyond its uncertainty.
fn intervals_all_overlap(data: &ReportData, ranked: &[Ranked]) -> bool {
    data.shifts.iter().all(|shift| {
        let cells: Vec<&ShiftCell> = ranked
            .iter()
            .filter_map(|r| data.models.iter().find(|m| m.model == r.model))
            .filter_map(|m| m.shifts.get(shift))
            .collect();
        let low = cells.iter().map(|c| c.er_low).fold(f64::MIN, f64::max);
        let high = cells.iter().map(|c| c.er_high).fold(f64::MAX, f64::min);
        low <= high
    })
}

impl std::fmt::Display for Headline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fits.is_empty() {
            // A suite of the ID set alone (or shifts that could not be fitted): no empty table.
            writeln!(
                f,
                "Trend fit: nothing to fit (no shift of ID {} was fitted)",
                self.id_dataset
            )?;
        } else {
            self.fit_table(f)?;
        }
        self.rankings(f)
    }
}

impl Headline {
    fn fit_table(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Trend fit ({}, ID {}):", self.transform, self.id_dataset)?;
        let width = self
            .fits
            .iter()
            .map(|s| s.shift.chars().count())
            .max()
            .unwrap_or(5);
        writeln!(
            f,
            "  {:<width$}  {:>6}  {:>6}  {:>5}",
            "shift", "slope", "R²", "n"
        )?;
        for s in &self.fits {
            writeln!(
                f,
                "  {:<width$}  {:>6.3}  {:>6.3}  {:>5}",
                s.shift, s.slope, s.r2, s.n
            )?;
        }
        Ok(())
    }

    fn rankings(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |models: &[Ranked]| {
            models
                .iter()
                .map(|m| {
                    format!(
                        "{} {:+.2} ({})",
                        m.model, m.average_effective_robustness, m.group
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        for c in &self.cautions {
            writeln!(f, "Caution: {c}.")?;
        }
        if self.highest.is_empty() {
            return writeln!(
                f,
                "No model was scored on every shift: no average effective robustness."
            );
        }
        writeln!(
            f,
            "Highest average effective robustness (pp): {}",
            list(&self.highest)
        )?;
        if !self.lowest.is_empty() {
            writeln!(
                f,
                "Lowest average effective robustness (pp):  {}",
                list(&self.lowest)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::store::ModelInfo;

    fn row(model: &str, id: f64, er: f64) -> ModelRow {
        ModelRow {
            model: model.into(),
            group: "g".into(),
            id_top1: Some(id),
            shifts: BTreeMap::new(),
            average_effective_robustness: Some(er),
        }
    }

    #[test]
    fn each_family_names_its_best_alpha_and_names_are_escaped() {
        let models = vec![
            row("zs", 70.0, 9.0),
            row("ft", 85.0, 1.0),
            row("w*0.3", 84.0, 7.0),
            row("w*0.7", 86.0, 4.0),
            row("w*0.9", 86.0, 2.0),
            row("soup", 86.5, 3.0),
        ];
        let mut run = RunInfo::default();
        for (m, alpha) in [("w*0.7", 0.7), ("w*0.3", 0.3), ("w*0.9", 0.9)] {
            let intervention = Intervention::WiseFt {
                family: "f".into(),
                alpha,
                endpoints: ["zs".into(), "ft".into()],
            };
            run.models.insert(m.into(), ModelInfo { intervention });
        }
        let soup = Intervention::Soup {
            family: "soup".into(),
            members: vec!["ft".into(), "<x>".into()],
            recipe: "greedy".into(),
        };
        run.models
            .insert("soup".into(), ModelInfo { intervention: soup });
        let (families, soups) = interventions(&models, &[], Some(&run));
        let f = &families[0];
        let alphas: Vec<f64> = f.points.iter().map(|p| p.alpha).collect();
        assert_eq!(
            alphas,
            [0.0, 0.3, 0.7, 0.9, 1.0],
            "endpoints folded in, α order"
        );
        let best_er = f.highest_effective_robustness.as_ref().unwrap();
        assert_eq!((best_er.alpha, best_er.model.as_str()), (0.0, "zs"));
        // 86.0 at α 0.7 and 0.9: the first, nearer the zero-shot end.
        let best_id = f.highest_id_top1.as_ref().unwrap();
        assert_eq!((best_id.alpha, best_id.model.as_str()), (0.7, "w*0.7"));
        let data = ReportData {
            title: "t".into(),
            id_dataset: "id".into(),
            transform: "probit".into(),
            shifts: Vec::new(),
            models,
            fits: Vec::new(),
            notes: Vec::new(),
            cautions: Vec::new(),
            accuracy: AccuracyTable::default(),
            provenance: None,
            wise_ft: families,
            soups,
            corruptions: None,
            synthetic_vs_natural: Vec::new(),
            charts: Vec::new(),
            confidence: None,
        };
        let md = markdown(&data);
        assert!(
            md.contains("highest id top-1 α = 0.70 (w\\*0.7, 86.00 %)"),
            "{md}"
        );
        assert!(
            md.contains("| 0.30 | w\\*0.3 | 84.00 | – | +7.00 |"),
            "{md}"
        );
        assert!(!md.contains("<x>") && !html(&data).contains("<x>"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&json(&data)).unwrap();
        assert_eq!(
            json["wise_ft"][0]["highest_effective_robustness"]["alpha"],
            0.0
        );
        assert_eq!(json["soups"][0]["recipe"], "greedy");
    }
}
