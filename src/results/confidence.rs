//! How sure a model was of each image (docs/confidence.md): the softmax over the classes a view
//! scores (the restricted classes for ImageNet-R, -A and ObjectNet, as scored), its largest
//! probability (the confidence) and its entropy. Computed in f64 from the f32 logits every model
//! yields (fp16 and `[head]` models' logits arrive here as f32 too), shifted by the largest logit
//! so that no exponential overflows.

use crate::input::scoring::LabelSpace;

/// One image's confidence: the max softmax probability, and the entropy of the softmax in nats
/// (ATC's negative-entropy score is its negation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    pub max_probability: f64,
    pub entropy: f64,
}

/// The confidence of one row of logits over a label space. NaN logits count as probability 0
/// (they rank lowest in the argmax too); a row with no finite logit is judged uniform.
pub fn of_logits(logits: &[f32], space: &LabelSpace) -> Confidence {
    match space {
        LabelSpace::All => softmax_stats(logits.iter().copied()),
        LabelSpace::Subset(ids) => softmax_stats(ids.iter().map(|&c| logits[c])),
    }
}

fn softmax_stats(values: impl Iterator<Item = f32> + Clone) -> Confidence {
    let usable = |v: f32| (!v.is_nan()).then_some(v as f64);
    let max = values
        .clone()
        .filter_map(usable)
        .fold(f64::NEG_INFINITY, f64::max);
    let count = values.clone().count();
    if count == 0 {
        return Confidence {
            max_probability: 0.0,
            entropy: 0.0,
        };
    }
    if !max.is_finite() {
        // All -inf, all NaN, or a +inf: the argmax's tie rules apply; the softmax is taken as
        // uniform over the +inf (or all) classes.
        let tied = if max == f64::INFINITY {
            values.filter(|&v| v == f32::INFINITY).count()
        } else {
            count
        };
        return Confidence {
            max_probability: 1.0 / tied as f64,
            entropy: (tied as f64).ln(),
        };
    }
    // p_i = e^(z_i - m) / S; H = -sum p_i ln p_i = ln S - sum e^(z_i - m) (z_i - m) / S.
    let (mut sum, mut weighted) = (0.0f64, 0.0f64);
    for z in values.filter_map(usable) {
        let shifted = z - max;
        let e = shifted.exp();
        sum += e;
        if e > 0.0 {
            weighted += e * shifted;
        }
    }
    Confidence {
        max_probability: 1.0 / sum,
        entropy: (sum.ln() - weighted / sum).max(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn matches_a_direct_softmax() {
        let logits = [1.0f32, 2.0, 0.5, -3.0];
        let e: Vec<f64> = logits.iter().map(|&z| (z as f64).exp()).collect();
        let s: f64 = e.iter().sum();
        let p: Vec<f64> = e.iter().map(|x| x / s).collect();
        let h: f64 = -p.iter().map(|q| q * q.ln()).sum::<f64>();
        let c = of_logits(&logits, &LabelSpace::All);
        assert!(close(c.max_probability, p[1]), "{c:?}");
        assert!(close(c.entropy, h), "{c:?} vs {h}");
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let c = of_logits(&[10000.0, 10000.0, -10000.0], &LabelSpace::All);
        assert!(close(c.max_probability, 0.5));
        assert!(close(c.entropy, 2f64.ln()));
    }

    #[test]
    fn subset_restricts_the_softmax() {
        let mut logits = vec![0.0f32; 6];
        logits[0] = 50.0; // outside the subset: ignored
        let c = of_logits(&logits, &LabelSpace::Subset(vec![1, 2]));
        assert!(close(c.max_probability, 0.5));
    }

    #[test]
    fn nan_and_infinite_rows() {
        let c = of_logits(&[f32::NAN, 0.0, 0.0], &LabelSpace::All);
        assert!(close(c.max_probability, 0.5));
        let c = of_logits(&[f32::INFINITY, 1.0, f32::INFINITY], &LabelSpace::All);
        assert!(close(c.max_probability, 0.5));
        let c = of_logits(&[f32::NAN, f32::NAN], &LabelSpace::All);
        assert!(close(c.max_probability, 0.5));
    }
}
