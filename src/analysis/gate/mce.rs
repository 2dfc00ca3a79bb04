//! The gate's mCE rule (`max_mce_rise`): a model whose ImageNet-C mCE rose over the baseline's by
//! more than the threshold, significantly, fails.
//!
//! mCE is a weighted sum of the 75 corruption-severity errors, mCE = Σ_d w_d · E_d with
//! w_d = 1 / (15 · 5 · E_AlexNet(c)) (see `analysis::corruptions`), so its change is the same sum
//! of the per-dataset error changes. Each dataset's change has a standard error from its paired
//! per-image outcomes (the images that flipped, as McNemar's test counts them) or, without those,
//! from the counts. The 75 sets are the same source images corrupted 75 ways, so their changes
//! correlate in ways the files do not record; the standard errors are therefore added, not their
//! squares, which bounds the standard error of the sum whatever the correlation (Minkowski). The
//! z test on that bound is conservative.

use statrs::distribution::{ContinuousCDF, Normal};

use super::{verdict, Check, Rules};
use crate::analysis::corruptions::{self, ModelSummary};
use crate::analysis::fit::Accuracy;
use crate::input::corruptions::{dataset_name, imagenet_c, SEVERITIES};
use crate::results::store::{EvalRow, ResultsStore};

/// The rule's name in every output format.
pub const RULE: &str = "mce";

/// What the check is labelled with in the `dataset` column.
const LABEL: &str = "imagenet-c";

/// Each model's mCE summary on one side (complete or not).
fn summaries(store: &ResultsStore) -> Vec<ModelSummary> {
    let accuracies: Vec<Accuracy> = store.evals.iter().map(Accuracy::from).collect();
    // The clean set only feeds relative mCE, which the gate does not check.
    corruptions::compute(&accuracies, "")
        .map(|r| r.models)
        .unwrap_or_default()
}

/// The mCE checks of every model pair with an mCE on both sides. A pair whose candidate lacks a
/// corruption-severity the baseline has is already failed as missing; a pair without a complete
/// mCE on either side has nothing to compare.
pub(super) fn checks(
    base: &ResultsStore,
    cand: &ResultsStore,
    pairs: &[(String, String)],
    earlier: &[Check],
    rules: &Rules,
) -> Vec<Check> {
    let (bs, cs) = (summaries(base), summaries(cand));
    let mce_of = |all: &[ModelSummary], model: &str| {
        all.iter().find(|m| m.model == model).and_then(|m| m.mce)
    };
    pairs
        .iter()
        .filter_map(|(bm, cm)| {
            let (b, c) = (mce_of(&bs, bm)?, mce_of(&cs, cm)?);
            Some(check(base, cand, (bm, b), (cm, c), earlier, rules))
        })
        .collect()
}

/// Standard error (pp) of one dataset's error change, and its flips when paired.
struct DatasetSpread {
    se: f64,
    flips: Option<(u64, u64)>,
}

fn row<'a>(store: &'a ResultsStore, model: &str, dataset: &str) -> Option<&'a EvalRow> {
    store
        .evals
        .iter()
        .find(|r| r.model == model && r.dataset == dataset)
}

/// The spread of `E_cand − E_base` on one dataset: from the top-1 check's flips where it paired
/// the images, else from the two proportions. None when a side has no counts.
fn spread(b: &EvalRow, c: &EvalRow, top1: Option<&Check>) -> Option<DatasetSpread> {
    if b.n == 0 || c.n == 0 {
        return None;
    }
    let paired = top1.and_then(|k| Some((k.flipped_to_wrong?, k.flipped_to_right?)));
    let se = match paired {
        Some((to_wrong, to_right)) if b.n > 1 => {
            // Per image: +1 turned wrong, −1 turned right, 0 else; sample variance of the mean.
            let n = b.n as f64;
            let (k, d) = (
                (to_wrong + to_right) as f64,
                to_wrong as f64 - to_right as f64,
            );
            let variance = ((k - d * d / n) / (n - 1.0)).max(0.0);
            100.0 * (variance / n).sqrt()
        }
        _ => {
            let p = |r: &EvalRow| r.correct as f64 / r.n as f64;
            let (p1, p2) = (p(b), p(c));
            100.0 * (p1 * (1.0 - p1) / b.n as f64 + p2 * (1.0 - p2) / c.n as f64).sqrt()
        }
    };
    Some(DatasetSpread { se, flips: paired })
}

fn check(
    base: &ResultsStore,
    cand: &ResultsStore,
    (bm, b_mce): (&String, f64),
    (cm, c_mce): (&String, f64),
    earlier: &[Check],
    rules: &Rules,
) -> Check {
    let table = imagenet_c();
    let sets = (table.benchmark().count() * SEVERITIES.count()) as f64;
    let mut bound = 0.0;
    let (mut paired, mut counted, mut to_wrong, mut to_right) = (0usize, 0usize, 0u64, 0u64);
    for corruption in table.benchmark() {
        let Some(alexnet) = corruption.alexnet_error else {
            continue;
        };
        for severity in SEVERITIES {
            let dataset = dataset_name(&corruption.name, severity);
            let top1 = earlier.iter().find(|k| {
                k.rule == "top1"
                    && &k.baseline_model == bm
                    && &k.candidate_model == cm
                    && k.dataset == dataset
            });
            let found = row(base, bm, &dataset)
                .zip(row(cand, cm, &dataset))
                .and_then(|(b, c)| spread(b, c, top1));
            if let Some(s) = found {
                bound += s.se / (sets * alexnet);
                counted += 1;
                if let Some((w, r)) = s.flips {
                    paired += 1;
                    to_wrong += w;
                    to_right += r;
                }
            }
        }
    }
    let change = c_mce - b_mce;
    let all = sets as usize;
    let p = (counted == all).then(|| {
        if bound > 0.0 {
            let z = (change / bound).abs();
            2.0 * (1.0 - Normal::new(0.0, 1.0).expect("standard normal").cdf(z))
        } else if change == 0.0 {
            1.0
        } else {
            0.0
        }
    });
    let note = if counted < all {
        Some(format!(
            "mCE of {bm}: {counted} of the {all} corruption-severities have counts on both sides: threshold only"
        ))
    } else if paired < all {
        Some(format!(
            "mCE of {bm}: {paired} of the {all} corruption-severities have paired per-image predictions; the rest are compared on their counts"
        ))
    } else {
        None
    };
    Check {
        rule: RULE.into(),
        baseline_model: bm.clone(),
        candidate_model: cm.clone(),
        dataset: LABEL.into(),
        baseline: b_mce,
        candidate: c_mce,
        change,
        threshold: rules.max_mce_rise,
        p_value: p,
        test: if p.is_some() {
            "mce-z-bound".into()
        } else {
            "none".into()
        },
        flipped_to_wrong: (paired == all).then_some(to_wrong),
        flipped_to_right: (paired == all).then_some(to_right),
        // A rise is the regression: the shared verdict reads a negative change as the bad one.
        verdict: verdict(-change, rules.max_mce_rise, p, rules),
        note,
        line_moved_only: false,
    }
}

/// Whether a check's regression is a rise (mCE) rather than a drop (top-1, ER).
pub fn rises(check: &Check) -> bool {
    check.rule == RULE
}
