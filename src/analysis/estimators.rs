//! Accuracy estimated without labels, and calibration (docs/confidence.md). Pure arithmetic over
//! per-image confidences and top-1 classes; `estimate` reads them from the predictions.
//!
//! - AC: the average max-softmax confidence on the shift.
//! - DoC: ID accuracy minus (average ID confidence − average shift confidence).
//! - ATC (Garg et al., ICLR 2022, as their reference code): the threshold t is the score of the
//!   ID image at which, walking up the ID scores in ascending order, |incorrect above − correct at
//!   or below| is least (first such image); the estimate is the share of shift scores ≥ t.
//! - ALine-S and ALine-D (Baek et al., NeurIPS 2022, as kebaek/Agreement-on-the-line computes
//!   them): see `aline`.

use statrs::distribution::{ContinuousCDF, Normal};

/// Accuracies and agreements are clipped to this distance from 0 and 1 before the probit.
pub const PROBIT_CLIP: f64 = 1e-4;
/// Pairs whose ID or shift agreement lies outside this range are left out of ALine.
pub const AGREEMENT_RANGE: (f64, f64) = (0.05, 0.98);
/// Confidence bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

fn normal() -> Normal {
    Normal::new(0.0, 1.0).expect("the standard normal exists")
}

/// Φ⁻¹ of a fraction, clipped to [1e-4, 1 − 1e-4].
pub fn probit(p: f64) -> f64 {
    normal().inverse_cdf(p.clamp(PROBIT_CLIP, 1.0 - PROBIT_CLIP))
}

/// Φ.
pub fn phi(z: f64) -> f64 {
    normal().cdf(z)
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// ATC's threshold from ID scores and whether each ID image was classified correctly.
pub fn atc_threshold(scores: &[f64], correct: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Stable, so tied scores keep the predictions' row order (the Python check sorts stably too).
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut fp = correct.iter().filter(|&&c| !c).count() as i64;
    let mut fn_ = 0i64;
    let mut best = fp.abs();
    let mut threshold = 0.0;
    for &i in &order {
        if correct[i] {
            fn_ += 1;
        } else {
            fp -= 1;
        }
        if (fp - fn_).abs() < best {
            best = (fp - fn_).abs();
            threshold = scores[i];
        }
    }
    threshold
}

/// ATC's estimate: the share of shift scores at or above the threshold.
pub fn atc_estimate(threshold: f64, scores: &[f64]) -> f64 {
    scores.iter().filter(|&&s| s >= threshold).count() as f64 / scores.len() as f64
}

/// Expected calibration error (a fraction) and Brier score of top-1 correctness.
///
/// Bin k of 15 holds confidences in (k/15, (k+1)/15]; a confidence of 0 goes to the first bin.
/// Each bin adds |accuracy − mean confidence| weighted by its share of images; an empty bin adds
/// nothing. Brier: the mean of (confidence − correct)².
pub fn calibration(confidence: &[f64], correct: &[bool]) -> Calibration {
    let mut bins = vec![Bin::default(); ECE_BINS];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let k = ece_bin(c);
        bins[k].count += 1;
        bins[k].correct += ok as u64;
        bins[k].confidence_sum += c;
    }
    let n = confidence.len() as f64;
    let ece = bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| {
            let count = b.count as f64;
            (count / n) * (b.correct as f64 / count - b.confidence_sum / count).abs()
        })
        .sum();
    let brier = confidence
        .iter()
        .zip(correct)
        .map(|(&c, &ok)| (c - ok as u8 as f64).powi(2))
        .sum::<f64>()
        / n;
    Calibration { ece, brier, bins }
}

/// The bin of a confidence: ⌈15c⌉ − 1, with 0 in bin 0 (and values outside [0, 1] clamped).
pub fn ece_bin(c: f64) -> usize {
    let k = (c * ECE_BINS as f64).ceil() as i64 - 1;
    k.clamp(0, ECE_BINS as i64 - 1) as usize
}

#[derive(Debug, Clone, Default)]
pub struct Bin {
    pub count: u64,
    pub correct: u64,
    pub confidence_sum: f64,
}

#[derive(Debug, Clone)]
pub struct Calibration {
    pub ece: f64,
    pub brier: f64,
    pub bins: Vec<Bin>,
}

/// Marks a class index a model has no prediction for (the image failed for it).
pub const MISSING: u16 = u16::MAX;

/// Share of images two models classify alike, over the images both have a prediction for;
/// `None` where they share none.
pub fn agreement(a: &[u16], b: &[u16]) -> Option<f64> {
    let (mut both, mut same) = (0u32, 0u32);
    for (&x, &y) in a.iter().zip(b) {
        let present = (x != MISSING) & (y != MISSING);
        both += present as u32;
        same += (present & (x == y)) as u32;
    }
    (both > 0).then(|| same as f64 / both as f64)
}

/// The agreement line over the pairs left after filtering, in probit space.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Line {
    pub slope: f64,
    pub intercept: f64,
    pub r2: f64,
    pub pairs: usize,
}

/// ALine's result: per model, ALine-S and ALine-D as fractions (None: the model is in no pair
/// left after filtering, so ALine-D has nothing to solve for it).
#[derive(Debug, Clone)]
pub struct ALine {
    pub line: Line,
    pub s: Vec<f64>,
    pub d: Vec<Option<f64>>,
}

/// ALine-S and ALine-D from ID accuracies (fractions) and the pairwise agreements
/// (`id_agreement[i][j]`, `ood_agreement[i][j]` for i < j). Refused (Err with the reason) with
/// fewer than 3 models, or fewer than two pairs with different ID agreement left after filtering.
pub fn aline(
    id_accuracy: &[f64],
    id_agreement: &[Vec<Option<f64>>],
    ood_agreement: &[Vec<Option<f64>>],
) -> Result<ALine, String> {
    let n = id_accuracy.len();
    if n < 3 {
        return Err(format!("ALine needs at least 3 models; there are {n}"));
    }
    let (low, high) = AGREEMENT_RANGE;
    let inside = |a: f64| (low..=high).contains(&a);
    let mut pairs = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            if let (Some(id), Some(ood)) = (id_agreement[i][j], ood_agreement[i][j]) {
                if inside(id) && inside(ood) {
                    pairs.push((i, j, probit(id), probit(ood)));
                }
            }
        }
    }
    let xs: Vec<f64> = pairs.iter().map(|p| p.2).collect();
    let ys: Vec<f64> = pairs.iter().map(|p| p.3).collect();
    let line = ols(&xs, &ys).ok_or_else(|| {
        format!(
            "{} pair(s) of models have ID and shift agreement within [{low}, {high}]; the \
             agreement line needs two with different ID agreement",
            pairs.len()
        )
    })?;
    let z_acc: Vec<f64> = id_accuracy.iter().map(|&a| probit(a)).collect();
    let s = z_acc
        .iter()
        .map(|&z| phi(line.slope * z + line.intercept))
        .collect();
    // ½w_i + ½w_j = Φ⁻¹(agr_OOD) + a·(½Φ⁻¹(acc_i) + ½Φ⁻¹(acc_j) − Φ⁻¹(agr_ID)), least squares
    // with the least-norm solution (numpy.linalg.lstsq), through the normal equations.
    let mut ata = vec![vec![0.0; n]; n];
    let mut atb = vec![0.0; n];
    let mut in_pair = vec![false; n];
    for &(i, j, x, y) in &pairs {
        let b = y + line.slope * (0.5 * z_acc[i] + 0.5 * z_acc[j] - x);
        ata[i][i] += 0.25;
        ata[j][j] += 0.25;
        ata[i][j] += 0.25;
        ata[j][i] += 0.25;
        atb[i] += 0.5 * b;
        atb[j] += 0.5 * b;
        in_pair[i] = true;
        in_pair[j] = true;
    }
    let w = least_norm_solve(ata, &atb);
    let d = w
        .iter()
        .zip(&in_pair)
        .map(|(&w, &used)| used.then(|| phi(w)))
        .collect();
    Ok(ALine { line, s, d })
}

/// Ordinary least squares of y on x with R²; None with fewer than two distinct x.
pub fn ols(xs: &[f64], ys: &[f64]) -> Option<Line> {
    let n = xs.len();
    if n < 2 {
        return None;
    }
    let (mx, my) = (mean(xs), mean(ys));
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    if sxx <= 1e-12 * xs.iter().map(|x| x * x).sum::<f64>().max(1e-300) {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let residual: f64 = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (y - intercept - slope * x).powi(2))
        .sum();
    let r2 = if syy > 0.0 { 1.0 - residual / syy } else { 1.0 };
    Some(Line {
        slope,
        intercept,
        r2,
        pairs: n,
    })
}

/// The least-norm solution of the symmetric positive semi-definite system M w = v: the
/// pseudo-inverse through a Jacobi eigendecomposition, eigenvalues below 1e-10 of the largest
/// taken as zero (M = AᵀA, so these are A's singular values below 1e-5 of its largest).
fn least_norm_solve(mut m: Vec<Vec<f64>>, v: &[f64]) -> Vec<f64> {
    let n = v.len();
    let mut q: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| (i == j) as u8 as f64).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i][j] * m[i][j])
            .sum();
        let scale: f64 = (0..n).map(|i| m[i][i] * m[i][i]).sum::<f64>().max(1e-300);
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for r in p + 1..n {
                if m[p][r].abs() < 1e-300 {
                    continue;
                }
                let theta = (m[r][r] - m[p][p]) / (2.0 * m[p][r]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in m.iter_mut() {
                    let (mkp, mkr) = (row[p], row[r]);
                    row[p] = c * mkp - s * mkr;
                    row[r] = s * mkp + c * mkr;
                }
                // Rows p and r at once: indices say it more plainly than two iterators.
                #[allow(clippy::needless_range_loop)]
                for k in 0..n {
                    let (mpk, mrk) = (m[p][k], m[r][k]);
                    m[p][k] = c * mpk - s * mrk;
                    m[r][k] = s * mpk + c * mrk;
                }
                for row in q.iter_mut() {
                    let (qp, qr) = (row[p], row[r]);
                    row[p] = c * qp - s * qr;
                    row[r] = s * qp + c * qr;
                }
            }
        }
    }
    let largest = (0..n).map(|i| m[i][i].abs()).fold(0.0, f64::max);
    let mut w = vec![0.0; n];
    for k in 0..n {
        let lambda = m[k][k];
        if lambda <= 1e-10 * largest {
            continue;
        }
        let projection: f64 = (0..n).map(|i| q[i][k] * v[i]).sum::<f64>() / lambda;
        for i in 0..n {
            w[i] += projection * q[i][k];
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_bins_edges() {
        assert_eq!(ece_bin(0.0), 0);
        assert_eq!(ece_bin(1.0 / 15.0), 0);
        assert_eq!(ece_bin(1.0 / 15.0 + 1e-12), 1);
        assert_eq!(ece_bin(1.0), 14);
        let c = calibration(&[0.9, 0.9, 0.5, 0.5], &[true, false, true, true]);
        // bin of 0.9: accuracy 0.5, conf 0.9 → 0.4 × ½; bin of 0.5: 1.0 vs 0.5 → 0.5 × ½.
        assert!((c.ece - 0.45).abs() < 1e-12, "{}", c.ece);
        assert!((c.brier - (0.01 + 0.81 + 0.25 + 0.25) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn atc_matches_the_reference_walk() {
        // Scores ascending with correctness F F T F T T: 3 incorrect, so the walk starts at
        // |fp − fn| = 3 and goes 2 (t = 0.1), 1 (t = 0.2), 0 (t = 0.3), then never below 0.
        let scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let correct = [false, false, true, false, true, true];
        let t = atc_threshold(&scores, &correct);
        assert_eq!(t, 0.3);
        assert!((atc_estimate(t, &[0.1, 0.25, 0.9]) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn least_norm_solution_of_a_rank_deficient_system() {
        // Two models in one pair: ½w0 + ½w1 = 1 has least-norm solution w0 = w1 = 1.
        let m = vec![vec![0.25, 0.25], vec![0.25, 0.25]];
        let w = least_norm_solve(m, &[0.5, 0.5]);
        assert!(
            (w[0] - 1.0).abs() < 1e-9 && (w[1] - 1.0).abs() < 1e-9,
            "{w:?}"
        );
    }

    #[test]
    fn aline_recovers_a_line_it_was_built_on() {
        // Agreements built to lie exactly on z_ood = 0.8 z_id − 0.3.
        let acc = [0.6, 0.7, 0.8, 0.9];
        let n = acc.len();
        let mut id = vec![vec![None; n]; n];
        let mut ood = vec![vec![None; n]; n];
        for i in 0..n {
            for j in i + 1..n {
                let a = 0.5 + 0.1 * (i + j) as f64 / 2.0;
                id[i][j] = Some(a);
                ood[i][j] = Some(phi(0.8 * probit(a) - 0.3));
            }
        }
        let r = aline(&acc, &id, &ood).unwrap();
        assert!((r.line.slope - 0.8).abs() < 1e-9 && (r.line.intercept + 0.3).abs() < 1e-9);
        assert!((r.line.r2 - 1.0).abs() < 1e-9);
        assert!((r.s[2] - phi(0.8 * probit(0.8) - 0.3)).abs() < 1e-12);
        assert!(aline(&acc[..2], &id, &ood).is_err());
    }
}
