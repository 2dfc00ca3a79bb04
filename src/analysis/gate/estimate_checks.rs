//! The gate on unlabelled datasets: their evals.csv rows measure nothing, so with `--estimate
//! METHOD` each side's estimated top-1 (`estimates.csv`) is compared instead, under the dataset's
//! `max_drop`. An estimate has no sampling test: a drop over the threshold fails outright, and the
//! check says that it is an estimate.

use std::collections::BTreeSet;

use super::{verdict, Check, Rules};
use crate::analysis::estimate::{EstimateReport, EstimateRow};
use crate::error::{Error, Result};
use crate::results::store::ResultsStore;

/// The `test` of an estimate's check.
pub const TEST: &str = "none (estimate)";

/// The methods `--estimate` takes: `estimate`'s.
pub const METHODS: [&str; 6] = ["AC", "DoC", "ATC-MC", "ATC-NE", "ALine-S", "ALine-D"];

/// Checks of the unlabelled datasets both sides scored, and notes on what was not gated.
pub(super) fn checks(
    base: &ResultsStore,
    cand: &ResultsStore,
    pairs: &[(String, String)],
    rules: &Rules,
) -> Result<(Vec<Check>, Vec<String>)> {
    let unlabelled = |store: &ResultsStore, model: &str| -> BTreeSet<String> {
        store
            .evals
            .iter()
            .filter(|r| r.model == model && !r.labelled)
            .map(|r| r.dataset.clone())
            .collect()
    };
    let mut both = Vec::new();
    for (bm, cm) in pairs {
        let theirs = unlabelled(cand, cm);
        for d in unlabelled(base, bm) {
            if theirs.contains(&d) {
                both.push((bm, cm, d));
            }
        }
    }
    if both.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let Some(method) = &rules.estimate else {
        let mut datasets: Vec<&str> = both.iter().map(|(_, _, d)| d.as_str()).collect();
        datasets.sort();
        datasets.dedup();
        return Ok((
            Vec::new(),
            vec![format!(
                "not gated, no labels: {} (gate them on an estimate with --estimate METHOD)",
                datasets.join(", ")
            )],
        ));
    };
    if !METHODS.contains(&method.as_str()) {
        return Err(Error::Usage(format!(
            "--estimate {method}: not a method of `estimate` (one of {})",
            METHODS.join(", ")
        )));
    }
    let (base_estimates, cand_estimates) = (
        estimates_of(base, "baseline")?,
        estimates_of(cand, "candidate")?,
    );
    let mut checks = Vec::new();
    for (bm, cm, dataset) in both {
        let find = |rows: &[EstimateRow], model: &str, side: &str| {
            rows.iter()
                .find(|r| r.model == model && r.dataset == dataset && &r.method == method)
                .cloned()
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--estimate {method}: the {side} has no {method} estimate of `{model}` on \
                         `{dataset}` in estimates.csv (run `robust-eval estimate`; ALine needs 3 \
                         models, and its reason is in agreement.csv)"
                    ))
                })
        };
        let b = find(&base_estimates, bm, "baseline")?;
        let c = find(&cand_estimates, cm, "candidate")?;
        checks.push(check(bm, cm, &b, &c, method, rules));
    }
    Ok((checks, Vec::new()))
}

fn estimates_of(store: &ResultsStore, side: &str) -> Result<Vec<EstimateRow>> {
    match EstimateReport::read(&store.dir)? {
        Some(report) => Ok(report.estimates),
        None => Err(Error::Usage(format!(
            "--{side} {}: no estimates (calibration.csv, estimates.csv) to gate the unlabelled \
             datasets on: run `robust-eval estimate --results {}`",
            store.dir.display(),
            store.dir.display()
        ))),
    }
}

fn check(
    bm: &str,
    cm: &str,
    b: &EstimateRow,
    c: &EstimateRow,
    method: &str,
    rules: &Rules,
) -> Check {
    let threshold = rules
        .datasets
        .get(&b.dataset)
        .map(|d| d.max_drop)
        .unwrap_or(rules.max_drop);
    let change = c.estimate - b.estimate;
    let untrusted = [(b, "baseline"), (c, "candidate")]
        .iter()
        .filter(|(r, _)| !r.trusted)
        .map(|(_, side)| *side)
        .collect::<Vec<_>>();
    let mut note = format!(
        "an estimate: top-1 estimated by {method} without labels, no significance test (a drop \
         over the threshold fails)"
    );
    if !untrusted.is_empty() {
        note += &format!(
            "; the {} estimate is not trusted (agreement line's R² below the mark)",
            untrusted.join(" and ")
        );
    }
    Check {
        rule: format!("top1 estimated ({method})"),
        baseline_model: bm.to_string(),
        candidate_model: cm.to_string(),
        dataset: b.dataset.clone(),
        baseline: b.estimate,
        candidate: c.estimate,
        change,
        threshold,
        p_value: None,
        test: TEST.into(),
        flipped_to_wrong: None,
        flipped_to_right: None,
        verdict: verdict(change, threshold, None, rules),
        note: Some(note),
        line_moved_only: false,
    }
}
