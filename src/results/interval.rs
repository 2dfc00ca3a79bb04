//! Confidence intervals for accuracies: the exact binomial interval evals.csv gives each top-1.

use statrs::distribution::{Beta, ContinuousCDF};

/// Exact (Clopper–Pearson) two-sided interval for `k` successes in `n` trials, as fractions.
/// For `n = 0` the interval is the whole [0, 1].
pub fn clopper_pearson(k: u64, n: u64, confidence: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let alpha = 1.0 - confidence;
    let (k, n) = (k as f64, n as f64);
    let low = if k == 0.0 {
        0.0
    } else {
        Beta::new(k, n - k + 1.0)
            .map(|b| b.inverse_cdf(alpha / 2.0))
            .unwrap_or(0.0)
    };
    let high = if k == n {
        1.0
    } else {
        Beta::new(k + 1.0, n - k)
            .map(|b| b.inverse_cdf(1.0 - alpha / 2.0))
            .unwrap_or(1.0)
    };
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy() {
        // scipy.stats.beta.ppf(0.025, 7, 4), beta.ppf(0.975, 8, 3)
        let (lo, hi) = clopper_pearson(7, 10, 0.95);
        assert!((lo - 0.34754715).abs() < 1e-6, "{lo}");
        assert!((hi - 0.93326049).abs() < 1e-6, "{hi}");
        let (lo, hi) = clopper_pearson(0, 20, 0.95);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.16843347).abs() < 1e-6, "{hi}");
        assert_eq!(clopper_pearson(5, 5, 0.95).1, 1.0);
    }
}
