//! The CI regression gate: compare a candidate's results with a baseline's, decide which
//! differences are real (exact McNemar test on paired per-image outcomes where both sides scored
//! the same manifest, a two-proportion test on the counts otherwise) and fail on regressions that
//! are both larger than a threshold and significant.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

use crate::analysis::fit::Robustness;
use crate::analysis::markup::escape_xml;
use crate::analysis::{self, AnalysisSettings};
use crate::error::{Error, Location, Result};
use crate::input::is_safe_name;
use crate::results::store::{read_predictions, EvalRow, ResultsStore};

/// Thresholds, in percentage points, and the significance level.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Largest allowed drop in top-1 on any dataset.
    #[serde(default = "default_max_drop")]
    pub max_drop: f64,
    /// Largest allowed drop in effective robustness on any shift.
    #[serde(default = "default_max_er_drop")]
    pub max_er_drop: f64,
    /// Largest allowed drop in effective robustness averaged over shifts.
    #[serde(default = "default_max_er_drop")]
    pub max_average_er_drop: f64,
    /// A drop must be significant at this level to fail the gate.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Fail on any drop over the threshold, significant or not.
    #[serde(default)]
    pub ignore_significance: bool,
    /// Check top-1 only: no effective-robustness checks, so no trend fit is needed on either side
    /// (e.g. a results folder with fewer than three baseline models).
    #[serde(default)]
    pub accuracy_only: bool,
    /// A model (or model × dataset) of the baseline that the candidate lacks is a warning, not a
    /// failure: for teams that retire models on purpose.
    #[serde(default)]
    pub allow_missing: bool,
    /// Per-dataset `max_drop` overrides.
    #[serde(default)]
    pub datasets: BTreeMap<String, DatasetRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatasetRule {
    pub max_drop: f64,
}

fn default_max_drop() -> f64 {
    0.5
}
fn default_max_er_drop() -> f64 {
    1.0
}
fn default_alpha() -> f64 {
    0.05
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_drop: default_max_drop(),
            max_er_drop: default_max_er_drop(),
            max_average_er_drop: default_max_er_drop(),
            alpha: default_alpha(),
            ignore_significance: false,
            accuracy_only: false,
            allow_missing: false,
            datasets: BTreeMap::new(),
        }
    }
}

impl Rules {
    pub fn load(path: &Path) -> Result<Rules> {
        let text = crate::input::read_text(path, crate::input::MAX_SETTINGS_BYTES)?;
        toml::from_str(&text).map_err(|e| crate::input::suite::toml_error(path, &text, &e))
    }
}

/// Pass, fail, or better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    /// Over the threshold but not significant: passes, with a warning.
    Warn,
    Fail,
    Improved,
}

/// One checked rule on one (model, dataset or shift).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub rule: String,
    pub baseline_model: String,
    pub candidate_model: String,
    pub dataset: String,
    pub baseline: f64,
    pub candidate: f64,
    /// Candidate minus baseline, percentage points.
    pub change: f64,
    pub threshold: f64,
    pub p_value: Option<f64>,
    /// "mcnemar-exact", "two-proportion", or "none".
    pub test: String,
    /// Images right in the baseline and wrong in the candidate, and the other way round.
    pub flipped_to_wrong: Option<u64>,
    pub flipped_to_right: Option<u64>,
    pub verdict: Verdict,
    pub note: Option<String>,
    /// An ER check whose model scored exactly as before (same top-1 on the ID and shift rows, no
    /// image flipped): its ER moved only because the fitted line did, and that alone never fails.
    #[serde(default)]
    pub line_moved_only: bool,
}

/// A model, or one model's dataset, found on one side only.
#[derive(Debug, Clone, Serialize)]
pub struct Absent {
    pub model: String,
    /// None: the whole model; else the one dataset the other side lacks for it.
    pub dataset: Option<String>,
    /// `fail` for a baseline row the candidate lacks (`warn` under allow_missing); `pass` for a
    /// candidate-only model, which has nothing to be compared with.
    pub verdict: Verdict,
}

#[derive(Debug, Serialize)]
pub struct GateReport {
    pub baseline: PathBuf,
    pub candidate: PathBuf,
    pub rules: Rules,
    pub checks: Vec<Check>,
    /// In the baseline, not in the candidate: a model whose export failed must not pass.
    pub missing: Vec<Absent>,
    /// In the candidate only: listed, nothing to compare.
    pub new: Vec<Absent>,
    pub passed: bool,
}

/// Two-sided exact McNemar p-value for `b` and `c` discordant pairs.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let tail = Binomial::new(0.5, n).map(|d| d.cdf(k)).unwrap_or(1.0);
    (2.0 * tail).min(1.0)
}

/// Two-sided p-value of the pooled two-proportion z-test.
pub fn two_proportion(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let p = (k1 + k2) as f64 / (n1 + n2) as f64;
    let se = (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return if p1 == p2 { 1.0 } else { 0.0 };
    }
    let z = (p1 - p2) / se;
    2.0 * (1.0 - Normal::new(0.0, 1.0).expect("standard normal").cdf(z.abs()))
}

/// The manifest hash a results folder recorded for a model's row on a dataset (or view).
fn manifest_hash(store: &ResultsStore, model: &str, dataset: &str) -> Option<String> {
    store
        .run
        .evaluations
        .iter()
        .find(|e| e.model == model && e.views.iter().any(|v| v == dataset))
        .map(|e| e.manifest_sha256.clone())
}

/// Per-image correctness by manifest row, from a predictions file.
fn outcomes(
    store: &ResultsStore,
    model: &str,
    dataset: &str,
) -> Result<Option<HashMap<u32, bool>>> {
    // Names come from evals.csv: one that could leave predictions/ names no file of ours.
    if !(is_safe_name(model) && is_safe_name(dataset)) {
        return Ok(None);
    }
    let path = store.predictions_path(model, dataset);
    if !path.is_file() {
        return Ok(None);
    }
    let df = read_predictions(&path)?;
    let bad = |what: &str| {
        Error::input(
            Location::file(&path),
            format!("predictions file has no usable `{what}` column"),
        )
    };
    let index = df
        .column("index")
        .map_err(|_| bad("index"))?
        .u32()
        .map_err(|_| bad("index"))?
        .clone();
    let correct = df
        .column("correct")
        .map_err(|_| bad("correct"))?
        .bool()
        .map_err(|_| bad("correct"))?
        .clone();
    Ok(Some(
        (0..df.height())
            .filter_map(|i| Some((index.get(i)?, correct.get(i)?)))
            .collect(),
    ))
}

fn open(dir: &Path, side: &str) -> Result<ResultsStore> {
    if !dir.join("evals.csv").is_file() {
        return Err(Error::Usage(format!(
            "--{side} {}: no evals.csv there (is it a results folder?)",
            dir.display()
        )));
    }
    ResultsStore::open(dir)
}

fn verdict(change: f64, threshold: f64, p: Option<f64>, rules: &Rules) -> Verdict {
    let significant = rules.ignore_significance || p.is_none_or(|p| p < rules.alpha);
    if -change > threshold {
        if significant {
            Verdict::Fail
        } else {
            Verdict::Warn
        }
    } else if change > 0.0 && p.is_some_and(|p| p < rules.alpha) {
        Verdict::Improved
    } else {
        Verdict::Pass
    }
}

/// Compare two results folders. `pairs` maps baseline model names to candidate names; empty means
/// every model present on both sides under the same name.
pub fn compare(
    baseline: &Path,
    candidate: &Path,
    pairs: &[(String, String)],
    rules: &Rules,
) -> Result<GateReport> {
    let base = open(baseline, "baseline")?;
    let cand = open(candidate, "candidate")?;
    let pairs = resolve_pairs(&base, &cand, pairs)?;
    let (missing, new) = set_differences(&base, &cand, &pairs, rules);
    let mut checks = Vec::new();
    for (bm, cm) in &pairs {
        for (b, c) in matching_rows(&base, &cand, bm, cm) {
            checks.push(accuracy_check(&base, &cand, (bm, b), (cm, c), rules)?);
        }
    }
    if !rules.accuracy_only {
        let (ba, ca) = (
            fitted(baseline, "baseline")?,
            fitted(candidate, "candidate")?,
        );
        for (bm, cm) in &pairs {
            for b in ba.robustness.iter().filter(|r| &r.model == bm) {
                let found = ca
                    .robustness
                    .iter()
                    .find(|r| &r.model == cm && r.shift == b.shift);
                if let Some(c) = found {
                    let check = robustness_check((bm, b), (cm, c), &checks, rules);
                    checks.push(check);
                }
            }
        }
    }
    let passed = checks.iter().all(|c| c.verdict != Verdict::Fail)
        && missing.iter().all(|m| m.verdict != Verdict::Fail);
    Ok(GateReport {
        baseline: baseline.to_path_buf(),
        candidate: candidate.to_path_buf(),
        rules: rules.clone(),
        checks,
        missing,
        new,
        passed,
    })
}

/// A side's trend fit and effective robustness, as its own run would fit them. A side that cannot
/// be fitted ends the comparison (exit 2), naming the side and why: dropping its ER checks
/// silently would pass a gate that checked nothing.
fn fitted(dir: &Path, side: &str) -> Result<analysis::Analysis> {
    analysis::analyse(dir, &AnalysisSettings::default()).map_err(|e| {
        Error::Usage(format!(
            "--{side} {}: effective robustness cannot be fitted ({e}); \
             pass --accuracy-only to gate on top-1 alone",
            dir.display()
        ))
    })
}

fn model_names(store: &ResultsStore) -> Vec<String> {
    let mut names: Vec<String> = store.evals.iter().map(|r| r.model.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// The model pairs to compare: those given with --pair (each name checked), and every other
/// model present on both sides under the same name.
fn resolve_pairs(
    base: &ResultsStore,
    cand: &ResultsStore,
    pairs: &[(String, String)],
) -> Result<Vec<(String, String)>> {
    for (b, c) in pairs {
        if !base.evals.iter().any(|r| &r.model == b) {
            return Err(Error::Usage(format!(
                "--pair {b}={c}: the baseline has no model `{b}`"
            )));
        }
        if !cand.evals.iter().any(|r| &r.model == c) {
            return Err(Error::Usage(format!(
                "--pair {b}={c}: the candidate has no model `{c}`"
            )));
        }
    }
    let mut all = pairs.to_vec();
    let cand_names = model_names(cand);
    for m in model_names(base) {
        let paired = pairs.iter().any(|(b, _)| b == &m);
        if !paired && cand_names.contains(&m) {
            all.push((m.clone(), m));
        }
    }
    if all.is_empty() {
        return Err(Error::Usage(
            "no model appears in both results folders: check --baseline and --candidate, or name \
             the pairs with --pair BASELINE=CANDIDATE"
                .into(),
        ));
    }
    Ok(all)
}

/// What one side has and the other lacks. A baseline model with no partner, or a paired model's
/// baseline dataset the candidate did not score, fails (warns under `allow_missing`); a
/// candidate model with no partner is new.
fn set_differences(
    base: &ResultsStore,
    cand: &ResultsStore,
    pairs: &[(String, String)],
    rules: &Rules,
) -> (Vec<Absent>, Vec<Absent>) {
    let verdict = if rules.allow_missing {
        Verdict::Warn
    } else {
        Verdict::Fail
    };
    let mut missing = Vec::new();
    for m in model_names(base) {
        match pairs.iter().find(|(b, _)| b == &m) {
            None => missing.push(Absent {
                model: m,
                dataset: None,
                verdict,
            }),
            Some((_, cm)) => {
                let mut datasets: Vec<&String> = base
                    .evals
                    .iter()
                    .filter(|r| r.model == m)
                    .map(|r| &r.dataset)
                    .collect();
                datasets.dedup();
                for d in datasets {
                    if !cand.evals.iter().any(|r| &r.model == cm && &r.dataset == d) {
                        missing.push(Absent {
                            model: m.clone(),
                            dataset: Some(d.clone()),
                            verdict,
                        });
                    }
                }
            }
        }
    }
    let new = model_names(cand)
        .into_iter()
        .filter(|m| !pairs.iter().any(|(_, c)| c == m))
        .map(|m| Absent {
            model: m,
            dataset: None,
            verdict: Verdict::Pass,
        })
        .collect();
    (missing, new)
}

/// The evals.csv rows of `bm` in the baseline and `cm` in the candidate on the same dataset.
fn matching_rows<'a>(
    base: &'a ResultsStore,
    cand: &'a ResultsStore,
    bm: &str,
    cm: &str,
) -> Vec<(&'a EvalRow, &'a EvalRow)> {
    base.evals
        .iter()
        .filter(|r| r.model == bm)
        .filter_map(|b| {
            cand.evals
                .iter()
                .find(|c| c.model == cm && c.dataset == b.dataset)
                .map(|c| (b, c))
        })
        .collect()
}

/// What decides whether a top-1 change is real: its p-value, the test's name, the images that
/// flipped each way (paired test only), and a note when the paired test could not be made.
struct Significance {
    p: Option<f64>,
    test: &'static str,
    flipped: Option<(u64, u64)>,
    note: Option<String>,
}

/// The top-1 check of one model pair on one dataset. The two sides must have scored the same
/// manifest where both recorded its hash.
fn accuracy_check(
    base: &ResultsStore,
    cand: &ResultsStore,
    (bm, b): (&String, &EvalRow),
    (cm, c): (&String, &EvalRow),
    rules: &Rules,
) -> Result<Check> {
    let (bh, ch) = (
        manifest_hash(base, bm, &b.dataset),
        manifest_hash(cand, cm, &c.dataset),
    );
    if let (Some(bh), Some(ch)) = (&bh, &ch) {
        if bh != ch {
            return Err(Error::Usage(format!(
                "{bm} vs {cm} on {}: the two sides scored different manifests (sha256 {}… vs {}…); \
                 a comparison needs the same images",
                b.dataset,
                &bh[..12.min(bh.len())],
                &ch[..12.min(ch.len())]
            )));
        }
    }
    let paired = match (
        bh.is_some() && ch.is_some(),
        outcomes(base, bm, &b.dataset)?,
        outcomes(cand, cm, &c.dataset)?,
    ) {
        (true, Some(bo), Some(co)) => Some((bo, co)),
        _ => None,
    };
    let sig = significance(paired, b, c);
    let threshold = rules
        .datasets
        .get(&b.dataset)
        .map(|d| d.max_drop)
        .unwrap_or(rules.max_drop);
    let change = c.top1 - b.top1;
    Ok(Check {
        rule: "top1".into(),
        baseline_model: bm.clone(),
        candidate_model: cm.clone(),
        dataset: b.dataset.clone(),
        baseline: b.top1,
        candidate: c.top1,
        change,
        threshold,
        p_value: sig.p,
        test: sig.test.into(),
        flipped_to_wrong: sig.flipped.map(|f| f.0),
        flipped_to_right: sig.flipped.map(|f| f.1),
        verdict: verdict(change, threshold, sig.p, rules),
        note: sig.note,
        line_moved_only: false,
    })
}

/// Exact McNemar on the images that flipped when both sides have per-image outcomes of the same
/// manifest; else a two-proportion test on the counts; else none.
type Outcomes = HashMap<u32, bool>;

fn significance(paired: Option<(Outcomes, Outcomes)>, b: &EvalRow, c: &EvalRow) -> Significance {
    match paired {
        Some((bo, co)) => {
            let (mut to_wrong, mut to_right) = (0u64, 0u64);
            for (i, &bc) in &bo {
                match co.get(i) {
                    Some(&cc) if bc && !cc => to_wrong += 1,
                    Some(&cc) if !bc && cc => to_right += 1,
                    _ => {}
                }
            }
            Significance {
                p: Some(mcnemar_exact(to_wrong, to_right)),
                test: "mcnemar-exact",
                flipped: Some((to_wrong, to_right)),
                note: None,
            }
        }
        None if b.n > 0 && c.n > 0 => Significance {
            p: Some(two_proportion(b.correct, b.n, c.correct, c.n)),
            test: "two-proportion",
            flipped: None,
            note: Some(
                "no paired per-image predictions on the same manifest: two-proportion test on the counts"
                    .into(),
            ),
        },
        None => Significance {
            p: None,
            test: "none",
            flipped: None,
            note: Some("no counts: threshold only".into()),
        },
    }
}

/// The effective-robustness check of one model pair on one shift (or their average). An ER drop
/// counts as significant when the OOD accuracy change behind it is (`earlier` holds those checks,
/// and the per-shift ER checks before an average).
fn robustness_check(
    (bm, b): (&String, &Robustness),
    (cm, c): (&String, &Robustness),
    earlier: &[Check],
    rules: &Rules,
) -> Check {
    let average = b.shift == "average";
    let p = if average {
        None
    } else {
        earlier
            .iter()
            .find(|k| {
                k.rule == "top1"
                    && &k.baseline_model == bm
                    && &k.candidate_model == cm
                    && k.dataset == b.shift
            })
            .and_then(|k| k.p_value)
    };
    let threshold = if average {
        rules.max_average_er_drop
    } else {
        rules.max_er_drop
    };
    let change = c.effective_robustness - b.effective_robustness;
    let mut v = verdict(change, threshold, p, rules);
    if average && v == Verdict::Fail && !rules.ignore_significance {
        // No test of its own: fail only if some shift's ER drop is itself significant.
        let any = earlier.iter().any(|k| {
            k.rule == "effective_robustness"
                && &k.baseline_model == bm
                && k.verdict == Verdict::Fail
        });
        if !any {
            v = Verdict::Warn;
        }
    }
    let line_moved_only = change != 0.0
        && if average {
            let shifts: Vec<&Check> = earlier
                .iter()
                .filter(|k| {
                    k.rule == "effective_robustness"
                        && &k.baseline_model == bm
                        && &k.candidate_model == cm
                })
                .collect();
            !shifts.is_empty() && shifts.iter().all(|k| k.line_moved_only || k.change == 0.0)
        } else {
            unchanged(earlier, bm, cm, &b.id_dataset) && unchanged(earlier, bm, cm, &b.shift)
        };
    let note = line_moved_only.then(|| {
        if matches!(v, Verdict::Fail | Verdict::Warn) {
            v = Verdict::Pass;
        }
        format!(
            "{bm}'s own top-1 did not change (no image flipped): its effective robustness moved \
             {change:+.2} pp only because the fitted line moved (other baseline models changed)"
        )
    });
    Check {
        rule: if average {
            "average_effective_robustness".into()
        } else {
            "effective_robustness".into()
        },
        baseline_model: bm.clone(),
        candidate_model: cm.clone(),
        dataset: b.shift.clone(),
        baseline: b.effective_robustness,
        candidate: c.effective_robustness,
        change,
        threshold,
        p_value: p,
        test: if p.is_some() {
            "ood-accuracy-test".into()
        } else {
            "none".into()
        },
        flipped_to_wrong: None,
        flipped_to_right: None,
        verdict: v,
        note,
        line_moved_only,
    }
}

/// Whether the pair's top-1 check on `dataset` shows the model scoring exactly as before: the
/// same top-1 and, where per-image outcomes were paired, no image flipped either way.
fn unchanged(earlier: &[Check], bm: &str, cm: &str, dataset: &str) -> bool {
    earlier
        .iter()
        .find(|k| {
            k.rule == "top1"
                && k.baseline_model == bm
                && k.candidate_model == cm
                && k.dataset == dataset
        })
        .is_some_and(|k| {
            k.change == 0.0
                && k.flipped_to_wrong.unwrap_or(0) == 0
                && k.flipped_to_right.unwrap_or(0) == 0
        })
}

fn p_text(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 1e-4 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
        None => "–".into(),
    }
}

fn model_text(c: &Check) -> String {
    if c.baseline_model == c.candidate_model {
        c.baseline_model.clone()
    } else {
        format!("{} → {}", c.baseline_model, c.candidate_model)
    }
}

fn flips(c: &Check) -> String {
    match (c.flipped_to_wrong, c.flipped_to_right) {
        (Some(w), Some(r)) => format!("{w} / {r}"),
        _ => "–".into(),
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
    for c in report.checks.iter().filter(|c| c.line_moved_only) {
        if let Some(n) = &c.note {
            s += &format!("note: {} on {}: {n}\n", c.rule, c.dataset);
        }
    }
    s += &format!("\n{}\n", summary_line(report));
    s
}

fn absent_text(a: &Absent) -> String {
    match &a.dataset {
        Some(d) => format!("{} on {d}", a.model),
        None => a.model.clone(),
    }
}

/// One line per model (or model × dataset) on one side only, verdict first.
fn set_lines(report: &GateReport) -> Vec<String> {
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

fn summary_line(report: &GateReport) -> String {
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
        "{}: {} checks, {} failed, {} warnings, {} improved{sets} (thresholds: top-1 drop {} pp, ER drop {} pp, average ER drop {} pp; α = {})",
        if report.passed { "PASSED" } else { "FAILED" },
        report.checks.len(),
        count(Verdict::Fail),
        count(Verdict::Warn),
        count(Verdict::Improved),
        report.rules.max_drop,
        report.rules.max_er_drop,
        report.rules.max_average_er_drop,
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
            "- **{}** on **{}**: {} dropped {:.2} pp ({:.2} → {:.2}), p = {} ({}{})\n",
            model_text(c),
            c.dataset,
            c.rule.replace('_', " "),
            -c.change,
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
