//! The end of `run` on a terminal: one models × datasets table of top-1, not a line per pair
//! (thousands on a real study). Columns that do not fit the width are left out and counted, and so
//! are models past a cap; the full table is evals.csv.

use std::collections::BTreeMap;

use robust_eval::results::store::EvalRow;

/// Most models listed; the rest are counted.
pub const MAX_MODELS: usize = 40;

/// The top-1 table of `rows` (models in first-seen order, datasets in the order given), fitted to
/// `width` characters.
pub fn top1_table(rows: &[&EvalRow], datasets: &[String], width: usize) -> String {
    let mut models: Vec<&str> = Vec::new();
    // None: an unlabelled dataset's cell, which has no accuracy to show.
    let mut top1: BTreeMap<(&str, &str), Option<f64>> = BTreeMap::new();
    for r in rows {
        if !models.contains(&r.model.as_str()) {
            models.push(&r.model);
        }
        top1.insert((&r.model, &r.dataset), r.labelled.then_some(r.top1));
    }
    let name_width = models
        .iter()
        .map(|m| m.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 32);
    let column = |d: &String| d.chars().count().clamp(7, 24);
    let mut shown = Vec::new();
    let mut used = name_width;
    for d in datasets {
        if used + 2 + column(d) > width && !shown.is_empty() {
            break;
        }
        used += 2 + column(d);
        shown.push(d);
    }
    let mut out = format!("{:<name_width$}", "top-1 %");
    for d in &shown {
        out.push_str(&format!("  {:>w$}", clip(d, column(d)), w = column(d)));
    }
    out.push('\n');
    for model in models.iter().take(MAX_MODELS) {
        out.push_str(&format!("{:<name_width$}", clip(model, name_width)));
        for d in &shown {
            let cell = match top1.get(&(*model, d.as_str())) {
                None => "-".to_string(),
                Some(None) => "no lab.".to_string(),
                Some(Some(t)) => format!("{t:.2}"),
            };
            out.push_str(&format!("  {cell:>w$}", w = column(d)));
        }
        out.push('\n');
    }
    let hidden_models = models.len().saturating_sub(MAX_MODELS);
    let hidden_datasets = datasets.len() - shown.len();
    if hidden_models > 0 || hidden_datasets > 0 {
        let mut more = Vec::new();
        if hidden_models > 0 {
            more.push(format!("{hidden_models} more models"));
        }
        if hidden_datasets > 0 {
            more.push(format!("{hidden_datasets} more datasets"));
        }
        out.push_str(&format!("({} in evals.csv)\n", more.join(" and ")));
    }
    out
}

/// `text` cut to `width` characters, with `…` where it was cut.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The terminal's width, or `COLUMNS`, else 100 (a log file has no width).
pub fn terminal_width() -> usize {
    if let Some((_, cols)) = console::Term::stdout().size_checked() {
        return cols as usize;
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c >= 40)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, dataset: &str, top1: f64) -> EvalRow {
        let mut r = EvalRow {
            model: model.into(),
            labelled: true,
            group: "standard".into(),
            dataset: dataset.into(),
            n: 0,
            correct: 0,
            top1: 0.0,
            top5: None,
            top1_ci_low: 0.0,
            top1_ci_high: 0.0,
            failed: 0,
            skipped: 0,
            provider: "cpu".into(),
            seconds: 0.0,
            images_per_s: 0.0,
        };
        r.top1 = top1;
        r
    }

    #[test]
    fn one_line_per_model_and_a_column_per_dataset() {
        let rows = [
            row("a", "id", 90.0),
            row("a", "v2", 80.5),
            row("b", "id", 70.0),
        ];
        let refs: Vec<&EvalRow> = rows.iter().collect();
        let table = top1_table(&refs, &["id".into(), "v2".into()], 100);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[1].starts_with("a") && lines[1].contains("90.00") && lines[1].contains("80.50")
        );
        assert!(
            lines[2].starts_with("b") && lines[2].trim_end().ends_with('-'),
            "{table}"
        );
    }

    #[test]
    fn narrow_terminals_count_what_is_left_out() {
        let datasets: Vec<String> = (0..20).map(|i| format!("dataset-{i}")).collect();
        let rows: Vec<EvalRow> = (0..50)
            .flat_map(|m| datasets.iter().map(move |d| row(&format!("m{m}"), d, 50.0)))
            .collect();
        let refs: Vec<&EvalRow> = rows.iter().collect();
        let table = top1_table(&refs, &datasets, 80);
        assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
        assert_eq!(table.lines().count(), 1 + MAX_MODELS + 1, "{table}");
        assert!(table.contains("10 more models and"), "{table}");
    }
}
