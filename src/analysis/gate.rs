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

mod estimate_checks;
mod mce;
mod render;
mod significance;

pub use render::*;
pub use significance::*;

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
    /// Largest allowed rise in ImageNet-C mCE (points of %), checked for every model with an mCE
    /// on both sides.
    #[serde(default = "default_max_mce_rise")]
    pub max_mce_rise: f64,
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
    /// Gate unlabelled datasets on this method's estimated top-1 (`estimates.csv`: AC, DoC,
    /// ATC-MC, ATC-NE, ALine-S, ALine-D). None: unlabelled datasets are listed as not gated.
    #[serde(default)]
    pub estimate: Option<String>,
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
fn default_max_mce_rise() -> f64 {
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
            max_mce_rise: default_max_mce_rise(),
            alpha: default_alpha(),
            ignore_significance: false,
            accuracy_only: false,
            allow_missing: false,
            estimate: None,
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
    /// Candidate minus baseline, percentage points (for mCE a rise is the regression).
    pub change: f64,
    pub threshold: f64,
    pub p_value: Option<f64>,
    /// "mcnemar-exact", "two-proportion", "ood-accuracy-test" (ER), "mce-z-bound" (mCE), or "none".
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
    /// What was not gated and why (unlabelled datasets without `--estimate`).
    pub notes: Vec<String>,
    pub passed: bool,
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
    // mCE needs no trend fit, so it is checked under accuracy_only too.
    let mce_checks = mce::checks(&base, &cand, &pairs, &checks, rules);
    checks.extend(mce_checks);
    let (estimated, notes) = estimate_checks::checks(&base, &cand, &pairs, rules)?;
    checks.extend(estimated);
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
        notes,
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
    // An unlabelled dataset's rows measure nothing: gated through its estimates instead.
    base.evals
        .iter()
        .filter(|r| r.model == bm && r.labelled)
        .filter_map(|b| {
            cand.evals
                .iter()
                .find(|c| c.model == cm && c.dataset == b.dataset && c.labelled)
                .map(|c| (b, c))
        })
        .collect()
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
