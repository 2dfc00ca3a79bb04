//! One shift's line: OLS on probit- or logit-transformed accuracies, its bootstrap band, and the
//! cautions a small or poor fit earns.

use super::*;

/// Accuracies are clipped to [ε, 1 − ε] (as fractions) before transforming, so 0 % and 100 % stay finite.
pub const EPSILON: f64 = 1e-4;

/// Grid points of the bootstrap band.
pub(super) const BAND_POINTS: usize = 60;

/// Most bootstrap resamples: the band's percentiles are steady long before this.
pub const MAX_RESAMPLES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    Probit,
    Logit,
}

impl Transform {
    /// Accuracy in percent → transformed scale.
    pub fn forward(self, percent: f64) -> f64 {
        let p = (percent / 100.0).clamp(EPSILON, 1.0 - EPSILON);
        match self {
            Transform::Probit => standard_normal().inverse_cdf(p),
            Transform::Logit => (p / (1.0 - p)).ln(),
        }
    }

    /// Transformed scale → accuracy in percent.
    pub fn inverse(self, z: f64) -> f64 {
        100.0
            * match self {
                Transform::Probit => standard_normal().cdf(z),
                Transform::Logit => 1.0 / (1.0 + (-z).exp()),
            }
    }
}

pub(super) fn standard_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("standard normal")
}

/// One model's accuracy pair on a shift.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub model: String,
    pub group: String,
    /// ID top-1 (%), class-restricted where the shift restricts classes.
    pub id: f64,
    /// OOD top-1 (%).
    pub ood: f64,
    /// 95 % interval of the OOD top-1 (%), where known.
    pub ood_ci: Option<(f64, f64)>,
}

/// A fitted line `T(ood) = slope · T(id) + intercept`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    pub slope: f64,
    pub intercept: f64,
    pub r2: f64,
    pub n: usize,
}

/// Ordinary least squares of y on x; R² in the same (transformed) space.
pub fn ols(x: &[f64], y: &[f64]) -> Line {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxx: f64 = x.iter().map(|v| (v - mx) * (v - mx)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let syy: f64 = y.iter().map(|v| (v - my) * (v - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let r2 = if syy == 0.0 {
        1.0
    } else {
        sxy * sxy / (sxx * syy)
    };
    Line {
        slope,
        intercept,
        r2,
        n: x.len(),
    }
}

/// Bootstrap band: at each ID accuracy on a grid, the 2.5th and 97.5th percentile of the OOD
/// accuracy predicted by lines fitted to resampled baseline models.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Band {
    pub level: f64,
    pub resamples: usize,
    pub seed: u64,
    pub id: Vec<f64>,
    pub low: Vec<f64>,
    pub high: Vec<f64>,
}

/// The fit for one shift.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShiftFit {
    pub shift: String,
    /// The dataset the ID accuracies come from (`imagenet@imagenet-r` for a class-restricted shift).
    pub id_dataset: String,
    pub transform: Transform,
    #[serde(flatten)]
    pub line: Line,
    pub baseline_models: Vec<String>,
    pub band: Band,
    /// False where the ID–OOD relation is known not to be linear (ImageNet-A).
    pub linear: bool,
    pub note: Option<String>,
    /// Bootstrap lines, kept for effective-robustness intervals (not written).
    #[serde(skip)]
    pub resampled: Vec<(f64, f64)>,
    /// Piecewise fit (ImageNet-A with `--split-a MODEL`, as imagenet-testbed draws it): the line
    /// for ID accuracies at or above `split_at`, the named model's; `line` covers those below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<Box<ShiftFit>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_model: Option<String>,
    /// Why this line should not be trusted (too few baseline models, or R² under the floor);
    /// absent for a fit that meets both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caution: Option<String>,
}

/// The errors that mean the models cannot carry a line at all (as against a setting that is
/// wrong): `report` then shows the accuracies alone.
pub(super) const TOO_FEW_TO_FIT: &str = "a fit needs at least 3";

pub(super) const NO_LINE: &str = "no line can be fitted";

pub fn too_few_to_fit(e: &Error) -> bool {
    matches!(e, Error::Usage(m) if m.contains(TOO_FEW_TO_FIT) || m.contains(NO_LINE))
}

/// A trend line is reported as reliable from this many baseline models: with 3 or 4 points a
/// line always fits well enough to look meaningful, and one model moves it a long way.
pub const MIN_RELIABLE_BASELINE: usize = 5;

/// And with at least this R² (in the transformed space): below it the baseline models do not
/// lie on a line and "expected OOD accuracy" means little. The shifts of Taori et al. (2020) fit
/// with R² well above 0.9 over hundreds of models.
pub const MIN_RELIABLE_R2: f64 = 0.8;

/// The caution a fit carries, if any.
pub(super) fn caution(line: &Line) -> Option<String> {
    let mut why = Vec::new();
    if line.n < MIN_RELIABLE_BASELINE {
        why.push(format!(
            "n = {} baseline models (fewer than {MIN_RELIABLE_BASELINE})",
            line.n
        ));
    }
    if line.r2 < MIN_RELIABLE_R2 {
        why.push(format!("R² = {:.2} (below {MIN_RELIABLE_R2})", line.r2));
    }
    (!why.is_empty()).then(|| {
        format!(
            "{}: the line is not reliable; read effective robustness on it as indicative only",
            why.join(", ")
        )
    })
}

impl ShiftFit {
    /// OOD top-1 (%) the line expects at an ID top-1 (%).
    pub fn expected(&self, id: f64) -> f64 {
        if let Some(upper) = self.piece_above(id) {
            return upper.expected(id);
        }
        self.line_at(self.line.slope, self.line.intercept, id)
    }

    /// The upper piece of a piecewise fit, if `id` falls in it.
    pub(super) fn piece_above(&self, id: f64) -> Option<&ShiftFit> {
        match (self.split_at, &self.upper) {
            (Some(at), Some(upper)) if id >= at => Some(upper),
            _ => None,
        }
    }

    pub(super) fn line_at(&self, slope: f64, intercept: f64, id: f64) -> f64 {
        self.transform
            .inverse(slope * self.transform.forward(id) + intercept)
    }

    /// 2.5th / 97.5th percentile of the expected OOD top-1 over the bootstrap lines.
    pub fn expected_interval(&self, id: f64) -> (f64, f64) {
        if let Some(upper) = self.piece_above(id) {
            return upper.expected_interval(id);
        }
        let mut v: Vec<f64> = self
            .resampled
            .iter()
            .map(|&(a, b)| self.line_at(a, b, id))
            .collect();
        if v.is_empty() {
            let e = self.expected(id);
            return (e, e);
        }
        v.sort_by(f64::total_cmp);
        (percentile(&v, 0.025), percentile(&v, 0.975))
    }
}

pub(super) fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// splitmix64: a tiny, fully specified generator, so a documented seed gives the same band on
/// every platform and in every version.
pub(super) struct SplitMix(u64);

impl SplitMix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Fit one shift on the baseline points.
pub fn fit_shift(
    shift: &str,
    id_dataset: &str,
    baseline: &[&Point],
    transform: Transform,
    resamples: usize,
    seed: u64,
) -> Result<ShiftFit> {
    let x: Vec<f64> = baseline.iter().map(|p| transform.forward(p.id)).collect();
    let y: Vec<f64> = baseline.iter().map(|p| transform.forward(p.ood)).collect();
    if x.iter().all(|v| *v == x[0]) {
        return Err(Error::Usage(format!(
            "shift `{shift}`: all {} baseline models have the same ID accuracy on the fit's scale \
             ({:.2} %, accuracies are clipped to [{:.2}, {:.2}] %), so {NO_LINE}",
            x.len(),
            baseline[0]
                .id
                .clamp(100.0 * EPSILON, 100.0 * (1.0 - EPSILON)),
            100.0 * EPSILON,
            100.0 * (1.0 - EPSILON)
        )));
    }
    let line = ols(&x, &y);
    let resampled = bootstrap_lines(&x, &y, resamples, seed);
    let (lo, hi) = baseline
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), p| (l.min(p.id), h.max(p.id)));
    let (zlo, zhi) = (transform.forward(lo), transform.forward(hi));
    let mut fit = ShiftFit {
        shift: shift.to_string(),
        id_dataset: id_dataset.to_string(),
        transform,
        line,
        baseline_models: baseline.iter().map(|p| p.model.clone()).collect(),
        band: Band {
            level: 0.95,
            resamples,
            seed,
            id: Vec::new(),
            low: Vec::new(),
            high: Vec::new(),
        },
        linear: true,
        note: None,
        resampled,
        upper: None,
        split_at: None,
        split_model: None,
        caution: None,
    };
    for i in 0..BAND_POINTS {
        let z = zlo + (zhi - zlo) * i as f64 / (BAND_POINTS - 1) as f64;
        let id = transform.inverse(z);
        let (l, h) = fit.expected_interval(id);
        fit.band.id.push(id);
        fit.band.low.push(l);
        fit.band.high.push(h);
    }
    Ok(fit)
}

/// Most resamples drawn per bootstrap line kept: a resample whose ID accuracies are all equal has
/// no slope and is drawn again, and with two or more distinct ID accuracies among n ≥ 3 models at
/// most about a third of draws are like that; the cap ends the loop whatever the data.
pub(super) const DRAWS_PER_LINE: usize = 100;

/// `resamples` lines fitted on resamples of the models (drawn with replacement).
pub(super) fn bootstrap_lines(
    x: &[f64],
    y: &[f64],
    resamples: usize,
    seed: u64,
) -> Vec<(f64, f64)> {
    let mut rng = SplitMix(seed);
    let mut lines = Vec::with_capacity(resamples);
    let n = x.len();
    for _ in 0..resamples.saturating_mul(DRAWS_PER_LINE) {
        if lines.len() == resamples {
            break;
        }
        let idx: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
        let bx: Vec<f64> = idx.iter().map(|&i| x[i]).collect();
        if bx.iter().all(|v| *v == bx[0]) {
            continue; // a degenerate resample has no slope
        }
        let by: Vec<f64> = idx.iter().map(|&i| y[i]).collect();
        let l = ols(&bx, &by);
        lines.push((l.slope, l.intercept));
    }
    lines
}
