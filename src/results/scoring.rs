//! Judging logits by a dataset's scoring rule (docs/design.md, section 4). This module alone knows
//! that ImageNet-R and ImageNet-A restrict the logits to 200 classes and that ObjectNet maps 125
//! ImageNet classes onto 113 of its own; models only ever produce full logit rows.

use crate::input::labels;
use crate::input::scoring::{LabelSpace, Target};
use crate::results::confidence::{self, Confidence};

/// Result of scoring one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Up to five predicted class ids, best first, in the model's (offset-corrected) class indices.
    pub top5: Vec<u32>,
    pub correct: bool,
    pub correct_top5: bool,
    /// The softmax over the same classes: its max probability and entropy.
    pub confidence: Confidence,
}

// The judging half of `LabelSpace`, kept beside the confidences it also computes.
impl LabelSpace {
    /// Score one row of logits against a target.
    pub fn score(&self, logits: &[f32], target: Target) -> Scored {
        let top5 = match self {
            LabelSpace::All => top_k(logits.len(), |i| i, logits, 5),
            LabelSpace::Subset(ids) => top_k(ids.len(), |i| ids[i], logits, 5),
        };
        let hits = |class: u32| match target {
            Target::Class(t) => class as usize == t,
            Target::ObjectNet(t) => {
                labels::objectnet()
                    .objectnet_of_imagenet
                    .get(&(class as usize))
                    == Some(&t)
            }
            Target::Unlabelled => false,
        };
        Scored {
            correct: top5.first().is_some_and(|&c| hits(c)),
            correct_top5: top5.iter().any(|&c| hits(c)),
            confidence: confidence::of_logits(logits, self),
            top5,
        }
    }
}

/// The k highest-scoring class ids among `n` candidates (`id(i)` is the i-th candidate's class),
/// best first. NaN scores rank lowest; ties keep the lower class id first, as argmax does.
fn top_k(n: usize, id: impl Fn(usize) -> usize, logits: &[f32], k: usize) -> Vec<u32> {
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for i in 0..n {
        let class = id(i);
        let v = logits[class];
        let v = if v.is_nan() { f32::NEG_INFINITY } else { v };
        if best.len() == k && v <= best[k - 1].0 {
            continue;
        }
        let pos = best.iter().position(|&(b, _)| v > b).unwrap_or(best.len());
        best.insert(pos, (v, class));
        best.truncate(k);
    }
    best.into_iter().map(|(_, c)| c as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::scoring::Scoring;

    #[test]
    fn subset_restricts_argmax() {
        let mut logits = vec![0.0f32; 1000];
        logits[0] = 9.0; // not an ImageNet-R class
        logits[1] = 5.0; // goldfish, an R class
        let r = Scoring::ImageNetR.restriction().unwrap();
        let s = r.score(&logits, Target::Class(1));
        assert!(s.correct);
        assert_eq!(s.top5[0], 1);
        let full = LabelSpace::All.score(&logits, Target::Class(1));
        assert!(!full.correct && full.correct_top5);
    }

    #[test]
    fn objectnet_counts_any_mapped_imagenet_class() {
        let mut logits = vec![0.0f32; 1000];
        logits[530] = 3.0; // digital clock → ObjectNet "alarm_clock" (class 0)
        let space = Scoring::ObjectNet.restriction().unwrap();
        assert!(space.score(&logits, Target::ObjectNet(0)).correct);
        assert!(!space.score(&logits, Target::ObjectNet(1)).correct);
    }

    #[test]
    fn ties_and_nans() {
        let logits = [1.0, f32::NAN, 1.0, 0.5];
        let s = LabelSpace::All.score(&logits, Target::Class(0));
        assert_eq!(s.top5, vec![0, 2, 3, 1]);
    }
}
