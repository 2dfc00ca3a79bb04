//! The gate's verdict as people and CI read it: the terminal table, the summary line, Markdown for a
//! pull request and JUnit XML for a CI's test view.

use super::*;

pub(super) fn p_text(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 1e-4 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
        None => "–".into(),
    }
}

pub(super) fn model_text(c: &Check) -> String {
    if c.baseline_model == c.candidate_model {
        c.baseline_model.clone()
    } else {
        format!("{} → {}", c.baseline_model, c.candidate_model)
    }
}

/// The terminal table.
pub fn table(report: &GateReport) -> String {
    let mut s = format!(
        "{:<9} {:<28} {:<30} {:<30} {:>9} {:>9} {:>8} {:>9} {:>13}\n",
        "verdict",
        "rule",
        "model",
        "dataset",
        "baseline",
        "candidate",
        "change",
        "p",
        "flips (-/+)"
    );
    for c in &report.checks {
        s += &format!(
            "{:<9} {:<28} {:<30} {:<30} {:>9.2} {:>9.2} {:>+8.2} {:>9} {:>13}\n",
            format!("{:?}", c.verdict).to_uppercase(),
            c.rule,
            model_text(c),
            c.dataset,
            c.baseline,
            c.candidate,
            c.change,
            p_text(c.p_value),
            flips(c)
        );
    }
    for line in set_lines(report) {
        s += &format!("{line}\n");
    }
    for c in report
        .checks
        .iter()
        .filter(|c| c.line_moved_only || c.test == super::estimate_checks::TEST)
    {
        if let Some(n) = &c.note {
            s += &format!("note: {} on {}: {n}\n", c.rule, c.dataset);
        }
    }
    for n in &report.notes {
        s += &format!("note: {n}\n");
    }
    s += &format!("\n{}\n", summary_line(report));
    s
}

pub(super) fn absent_text(a: &Absent) -> String {
    match &a.dataset {
        Some(d) => format!("{} on {d}", a.model),
        None => a.model.clone(),
    }
}

/// One line per model (or model × dataset) on one side only, verdict first.
pub(super) fn set_lines(report: &GateReport) -> Vec<String> {
    let mut lines = Vec::new();
    for m in &report.missing {
        lines.push(format!(
            "{:<9} missing: {} is in the baseline but not in the candidate{}",
            format!("{:?}", m.verdict).to_uppercase(),
            absent_text(m),
            if m.verdict == Verdict::Fail {
                " (pass --allow-missing if it was retired on purpose)"
            } else {
                " (allowed by allow_missing)"
            }
        ));
    }
    for m in &report.new {
        lines.push(format!(
            "{:<9} new: {} is in the candidate only (nothing to compare it with)",
            "NEW",
            absent_text(m)
        ));
    }
    lines
}

pub(super) fn summary_line(report: &GateReport) -> String {
    let count = |v: Verdict| report.checks.iter().filter(|c| c.verdict == v).count();
    let missing_failed = report
        .missing
        .iter()
        .filter(|m| m.verdict == Verdict::Fail)
        .count();
    let sets = match (report.missing.len(), report.new.len()) {
        (0, 0) => String::new(),
        (m, n) => format!(
            "; {m} missing from the candidate ({missing_failed} failing), {n} new in the candidate"
        ),
    };
    format!(
        "{}: {} checks, {} failed, {} warnings, {} improved{sets} (thresholds: top-1 drop {} pp, ER drop {} pp, average ER drop {} pp, mCE rise {}; α = {})",
        if report.passed { "PASSED" } else { "FAILED" },
        report.checks.len(),
        count(Verdict::Fail),
        count(Verdict::Warn),
        count(Verdict::Improved),
        report.rules.max_drop,
        report.rules.max_er_drop,
        report.rules.max_average_er_drop,
        report.rules.max_mce_rise,
        report.rules.alpha
    )
}

/// Markdown for a pull-request comment or GitHub's step summary: failures first, then the rest.
pub fn markdown(report: &GateReport) -> String {
    let icon = |v: Verdict| match v {
        Verdict::Fail => "❌ fail",
        Verdict::Warn => "⚠️ warn",
        Verdict::Improved => "✅ improved",
        Verdict::Pass => "✅ pass",
    };
    let mut s = format!(
        "## robust-eval gate: {}\n\n",
        if report.passed {
            "passed ✅"
        } else {
            "regression found ❌"
        }
    );
    s += &format!("{}\n\n", summary_line(report));
    for c in report.checks.iter().filter(|c| c.verdict == Verdict::Fail) {
        s += &format!(
            "- **{}** on **{}**: {} {} {:.2} pp ({:.2} → {:.2}), p = {} ({}{})\n",
            model_text(c),
            c.dataset,
            c.rule.replace('_', " "),
            if super::mce::rises(c) {
                "rose"
            } else {
                "dropped"
            },
            c.change.abs(),
            c.baseline,
            c.candidate,
            p_text(c.p_value),
            c.test,
            c.flipped_to_wrong
                .map(|w| format!(
                    "; {w} images turned wrong, {} turned right",
                    c.flipped_to_right.unwrap_or(0)
                ))
                .unwrap_or_default()
        );
    }
    for m in &report.missing {
        s += &format!(
            "- {} **{}**: in the baseline, missing from the candidate{}\n",
            icon(m.verdict),
            absent_text(m),
            if m.verdict == Verdict::Warn {
                " (allowed)"
            } else {
                ""
            }
        );
    }
    for m in &report.new {
        s += &format!(
            "- 🆕 **{}**: new in the candidate, not compared\n",
            absent_text(m)
        );
    }
    s += "\n| verdict | rule | model | dataset | baseline | candidate | change (pp) | p | flips (−/+) |\n|---|---|---|---|---|---|---|---|---|\n";
    let mut ordered: Vec<&Check> = report.checks.iter().collect();
    ordered.sort_by_key(|c| match c.verdict {
        Verdict::Fail => 0,
        Verdict::Warn => 1,
        Verdict::Improved => 2,
        Verdict::Pass => 3,
    });
    for c in ordered {
        s += &format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:+.2} | {} | {} |\n",
            icon(c.verdict),
            c.rule,
            model_text(c),
            c.dataset,
            c.baseline,
            c.candidate,
            c.change,
            p_text(c.p_value),
            flips(c)
        );
    }
    let mut notes: Vec<&String> = report
        .checks
        .iter()
        .filter_map(|c| c.note.as_ref())
        .collect();
    notes.dedup();
    for n in notes.iter().take(5) {
        s += &format!("\nNote: {n}.\n");
    }
    for n in &report.notes {
        s += &format!("\nNote: {n}.\n");
    }
    s
}

/// JUnit XML: one test case per rule and row.
pub fn junit(report: &GateReport) -> String {
    let failures = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .count()
        + report
            .missing
            .iter()
            .filter(|m| m.verdict == Verdict::Fail)
            .count();
    let tests = report.checks.len() + report.missing.len() + report.new.len();
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"robust-eval gate\" tests=\"{tests}\" failures=\"{failures}\">\n  <testsuite name=\"robust-eval gate\" tests=\"{tests}\" failures=\"{failures}\">\n",
    );
    for m in &report.missing {
        let name = escape_xml(&format!("present {} in the candidate", absent_text(m)));
        let detail = escape_xml(&format!(
            "{} is in the baseline but not in the candidate",
            absent_text(m)
        ));
        s += &format!("    <testcase classname=\"robust-eval.present\" name=\"{name}\">");
        s += &match m.verdict {
            Verdict::Fail => format!("<failure message=\"{detail}\">{detail}</failure>"),
            _ => format!("<system-out>warning (allow_missing): {detail}</system-out>"),
        };
        s += "</testcase>\n";
    }
    for m in &report.new {
        let name = escape_xml(&format!("new {} in the candidate", absent_text(m)));
        s += &format!(
            "    <testcase classname=\"robust-eval.new\" name=\"{name}\"><system-out>in the candidate only: nothing to compare</system-out></testcase>\n"
        );
    }
    for c in &report.checks {
        let name = escape_xml(&format!("{} {} on {}", c.rule, model_text(c), c.dataset));
        let detail = escape_xml(&format!(
            "{:.2} -> {:.2} ({:+.2} pp, threshold {} pp), p = {} ({})",
            c.baseline,
            c.candidate,
            c.change,
            c.threshold,
            p_text(c.p_value),
            c.test
        ));
        s += &format!(
            "    <testcase classname=\"robust-eval.{}\" name=\"{name}\">",
            escape_xml(&c.rule)
        );
        let detail = match &c.note {
            Some(n) if c.line_moved_only => format!("{detail}; {}", escape_xml(n)),
            _ => detail,
        };
        match c.verdict {
            Verdict::Fail => s += &format!("<failure message=\"{detail}\">{detail}</failure>"),
            Verdict::Warn => s += &format!("<system-out>warning: over the threshold but not significant: {detail}</system-out>"),
            _ => s += &format!("<system-out>{detail}</system-out>"),
        }
        s += "</testcase>\n";
    }
    s + "  </testsuite>\n</testsuites>\n"
}
