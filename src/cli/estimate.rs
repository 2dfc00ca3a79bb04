//! `robust-eval estimate`: accuracy without labels, and calibration, from a results folder.

use std::process::ExitCode;

use robust_eval::analysis::estimate::{self, EstimateReport, EstimateSettings};
use robust_eval::error::Error;

use super::args::EstimateArgs;

pub fn run_estimate(args: EstimateArgs) -> Result<ExitCode, Error> {
    let models = args
        .models
        .as_deref()
        .map(|r| regex::Regex::new(r).map_err(|e| Error::Usage(format!("--models {r}: {e}"))))
        .transpose()?;
    if !(0.0..=1.0).contains(&args.min_r2) {
        return Err(Error::Usage(format!(
            "--min-r2 {}: must lie between 0 and 1",
            args.min_r2
        )));
    }
    let settings = EstimateSettings {
        id: args.id.clone(),
        models,
        min_r2: args.min_r2,
    };
    let report = estimate::estimate(&args.results, &settings)?;
    for (dataset, why) in &report.refused {
        eprintln!("estimate: {dataset}: {why}");
    }
    if report.estimates.is_empty() && report.calibration.is_empty() {
        return Err(Error::Usage(format!(
            "{}: nothing could be estimated (see the reasons above)",
            args.results.display()
        )));
    }
    let written = report.write(&args.results)?;
    if args.json {
        let json = serde_json::json!({
            "estimates": report.estimates,
            "agreement": report.agreement,
            "calibration": report.calibration,
            "refused": report.refused,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&json).map_err(|e| Error::Other(e.to_string()))?
        );
    } else {
        print!("{}", table(&report));
        for path in written {
            println!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Calibration and estimates after a run, before its reports (which show them). Like the fit,
/// one that cannot be made is a warning: `estimate` can redo it.
pub fn estimate_after_run(out: &std::path::Path) {
    let report = estimate::estimate(out, &EstimateSettings::default());
    match report.and_then(|r| r.write(out).map(|_| r)) {
        Ok(r) => {
            for (dataset, why) in &r.refused {
                eprintln!("note: estimate: {dataset}: {why}");
            }
        }
        Err(e) => eprintln!("warning: no calibration or estimates: {e}"),
    }
}

/// Estimates per shift and method: mean absolute error where the shift is labelled, and the
/// agreement line.
fn table(report: &EstimateReport) -> String {
    let mut out = String::new();
    for line in &report.agreement {
        match (line.slope, line.intercept, line.r2) {
            (Some(slope), Some(intercept), Some(r2)) => out.push_str(&format!(
                "{}: agreement line over {} pairs of {} models: slope {slope:.3}, intercept {intercept:.3}, R² {r2:.3}{}\n",
                line.dataset,
                line.pairs,
                line.models,
                if line.trusted { "" } else { " (below the mark: ALine not trusted)" }
            )),
            _ => out.push_str(&format!("{}: ALine refused: {}\n", line.dataset, line.refused)),
        }
    }
    out.push_str(&format!(
        "{:<28} {:<24} {:<8} {:>9} {:>8} {:>8}\n",
        "model", "dataset", "method", "estimate", "top1", "error"
    ));
    for r in &report.estimates {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
        out.push_str(&format!(
            "{:<28} {:<24} {:<8} {:>9.2} {:>8} {:>8}{}\n",
            r.model,
            r.dataset,
            r.method,
            r.estimate,
            opt(r.top1),
            opt(r.error),
            if r.trusted { "" } else { "  not trusted" }
        ));
    }
    out
}
