//! Reports (docs/design.md, section 7): Markdown for pull requests and READMEs, one self-contained HTML
//! file (plots inline, sortable tables) and JSON for scripts. Each renderer returns text and does
//! no I/O; `analysis` decides where it goes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::fit::{Accuracy, FitReport, Robustness};
use crate::analysis::markup::escape_xml;
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
    pub provenance: Option<Provenance>,
    /// Inline SVG charts (HTML only).
    #[serde(skip)]
    pub charts: Vec<(String, String)>,
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

#[derive(Debug, Serialize)]
pub struct Provenance {
    pub tool_version: String,
    pub onnxruntime_version: String,
    pub host: String,
    pub started: String,
    pub finished: String,
    pub providers: Vec<String>,
}

pub fn gather(
    title: &str,
    evals: &[Accuracy],
    fit: &FitReport,
    robustness: &[Robustness],
    run: Option<&RunInfo>,
) -> ReportData {
    let shifts: Vec<String> = fit.shifts.iter().map(|s| s.shift.clone()).collect();
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
            note: s.note.clone(),
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
    ReportData {
        title: title.to_string(),
        id_dataset: fit.id_dataset.clone(),
        transform: format!("{:?}", fit.transform).to_lowercase(),
        shifts,
        models,
        fits,
        notes: fit.notes.clone(),
        provenance,
        charts: Vec::new(),
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

pub fn markdown(data: &ReportData) -> String {
    let table = |(header, rows): (Vec<String>, Vec<Vec<String>>)| {
        let mut s = format!(
            "| {} |\n|{}|\n",
            header.join(" | "),
            vec!["---"; header.len()].join("|")
        );
        for r in rows {
            s += &format!("| {} |\n", r.join(" | "));
        }
        s
    };
    let mut s = format!("# {}\n\n", data.title);
    s += &format!(
        "Effective robustness (ER) is OOD top-1 minus what the {} fit of the baseline models expects at the model's \
         ID top-1, in percentage points, with its 95 % interval. Accuracies in %.\n\n",
        data.transform
    );
    s += "## Models\n\n";
    s += &table(model_table(data));
    s += "\n## Fits\n\n";
    s += &table(fit_table(data));
    for n in &data.notes {
        s += &format!("\n> {n}\n");
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

pub fn html(data: &ReportData) -> String {
    let table = |(header, rows): (Vec<String>, Vec<Vec<String>>)| {
        let mut s = String::from("<table class=\"sortable\"><thead><tr>");
        for h in header {
            s += &format!("<th>{}</th>", escape_xml(&h));
        }
        s += "</tr></thead><tbody>";
        for r in rows {
            s += "<tr>";
            for c in r {
                s += &format!("<td>{}</td>", escape_xml(&c));
            }
            s += "</tr>";
        }
        s + "</tbody></table>"
    };
    let mut body = format!("<h1>{}</h1>", escape_xml(&data.title));
    body += &format!(
        "<p>Effective robustness (ER): OOD top-1 minus what the {} fit of the baseline models expects at the model's ID \
         top-1, in percentage points, with its 95 % interval. Click a column to sort.</p>",
        escape_xml(&data.transform)
    );
    body += "<h2>Models</h2>";
    body += &table(model_table(data));
    body += "<h2>Fits</h2>";
    body += &table(fit_table(data));
    for n in &data.notes {
        body += &format!("<p class=\"note\">{}</p>", escape_xml(n));
    }
    if !data.charts.is_empty() {
        body += "<h2>Charts</h2><div class=\"charts\">";
        for (name, svg) in &data.charts {
            body += &format!(
                "<figure><figcaption>{}</figcaption>{svg}</figure>",
                escape_xml(name)
            );
        }
        body += "</div>";
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
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0;font-size:14px}}\
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f0f0f0;cursor:pointer}}\
td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){{text-align:left}}.note{{color:#a33}}figure{{display:inline-block;margin:1em}}\
figure svg{{max-width:640px;height:auto}}</style></head><body>{body}<script>\
document.querySelectorAll('table.sortable th').forEach(function(th,i){{th.addEventListener('click',function(){{\
var tb=th.closest('table').tBodies[0],rows=Array.from(tb.rows),asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';\
var key=function(r){{var t=r.cells[i].textContent,v=parseFloat(t);return isNaN(v)?t:v}};\
rows.sort(function(a,b){{var x=key(a),y=key(b);return (x<y?-1:x>y?1:0)*(asc?1:-1)}});rows.forEach(function(r){{tb.appendChild(r)}})}})}});\
</script></body></html>\n",
        escape_xml(&data.title)
    )
}
