//! The report as Markdown and JSON, and the tables both the Markdown and the HTML are built from.

use super::*;

pub(super) fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

pub(super) fn signed(v: f64) -> String {
    format!("{v:+.2}")
}

/// Header and body cells of the per-model table, shared by Markdown and HTML.
pub(super) fn model_table(data: &ReportData) -> (Vec<String>, Vec<Vec<String>>) {
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

pub(super) fn fit_table(data: &ReportData) -> (Vec<String>, Vec<Vec<String>>) {
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

pub(super) fn or_dash(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".into())
}

/// Per WiSE-FT family and for the soups: a heading, a sentence (best α, endpoints) and a table
/// whose second column holds model names. Shared by Markdown and HTML, which escape them.
pub(super) fn intervention_sections(data: &ReportData) -> Vec<(String, String, Table)> {
    let describe = |p: &Option<CurvePoint>, v: fn(&CurvePoint) -> String| match p {
        Some(p) => format!("α = {:.2} ({}, {})", p.alpha, p.model, v(p)),
        None => "–".into(),
    };
    let mut sections = Vec::new();
    for f in &data.wise_ft {
        let mut text = format!(
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
        if let Some(held_out) = &f.held_out {
            text.push_str(&format!(
                " Chosen on the held-out dataset {held_out}: {} (marked ✓ below).",
                match &f.chosen_on_held_out {
                    Some(p) => format!(
                        "α = {:.2} ({}, {} % there; {} {} %, average OOD {} %)",
                        p.alpha,
                        p.model,
                        pct(p.held_out_top1),
                        data.id_dataset,
                        pct(p.id_top1),
                        pct(p.average_ood_top1)
                    ),
                    None => "–".into(),
                },
            ));
        }
        let mut header = [
            "α".to_string(),
            "model".into(),
            format!("{} top-1", data.id_dataset),
            "average OOD top-1".into(),
            "average ER".into(),
        ]
        .to_vec();
        if let Some(held_out) = &f.held_out {
            header.push(format!("{held_out} top-1 (held out)"));
        }
        let chosen = f.chosen_on_held_out.as_ref().map(|p| p.alpha);
        let rows = f
            .points
            .iter()
            .map(|p| {
                let mark = if chosen == Some(p.alpha) { " ✓" } else { "" };
                let mut cells = vec![
                    format!("{:.2}{mark}", p.alpha),
                    p.model.clone(),
                    pct(p.id_top1),
                    pct(p.average_ood_top1),
                    or_dash(p.average_effective_robustness, signed),
                ];
                if f.held_out.is_some() {
                    cells.push(pct(p.held_out_top1));
                }
                cells
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
