//! Reliability diagrams (docs/confidence.md#reliability-diagrams): per model and dataset view, the
//! top-1 accuracy of each of the 15 ECE bins against its confidence range, with the bin's share of
//! images below. `estimate` writes the bins to reliability.csv; the HTML report draws them as
//! small SVGs with a tooltip per bin (`<title>`, as the other charts have). Their bins are not
//! `.tip`s: the model filter rings the points of the accuracy charts, not these bars.

use serde::{Deserialize, Serialize};

use crate::analysis::estimators::{self, ECE_BINS};
use crate::analysis::markup::escape_xml;

/// One non-empty bin of one model's predictions on one view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReliabilityRow {
    pub model: String,
    pub dataset: String,
    /// 0 to 14; bin k holds confidences in (k/15, (k+1)/15].
    pub bin: usize,
    /// Images in the bin.
    pub n: u64,
    /// Top-1 accuracy of the bin's images, percent.
    pub accuracy: f64,
    /// Their mean confidence, percent.
    pub confidence: f64,
}

pub const HEADER: &[&str] = &["model", "dataset", "bin", "n", "accuracy", "confidence"];

/// The non-empty bins of a model's predictions on a view (the bins ECE is computed over).
pub fn rows(model: &str, view: &str, confidence: &[f64], correct: &[bool]) -> Vec<ReliabilityRow> {
    estimators::calibration(confidence, correct)
        .bins
        .iter()
        .enumerate()
        .filter(|(_, b)| b.count > 0)
        .map(|(k, b)| ReliabilityRow {
            model: model.to_string(),
            dataset: view.to_string(),
            bin: k,
            n: b.count,
            accuracy: 100.0 * b.correct as f64 / b.count as f64,
            confidence: 100.0 * b.confidence_sum / b.count as f64,
        })
        .collect()
}

const SIZE: f64 = 200.0;
const STRIP: f64 = 36.0;
const PAD: f64 = 30.0;

/// One diagram: accuracy bars over the bins' confidence ranges, y = x dashed, each bin's share of
/// the images as a grey bar under the axis; a tooltip per bin.
pub fn svg(model: &str, group: &str, dataset: &str, bins: &[&ReliabilityRow]) -> String {
    let total: u64 = bins.iter().map(|b| b.n).sum();
    let most = bins.iter().map(|b| b.n).max().unwrap_or(1).max(1) as f64;
    let (w, h) = (SIZE + 2.0 * PAD, SIZE + STRIP + 2.0 * PAD);
    let x = |v: f64| PAD + SIZE * v;
    let y = |v: f64| PAD + SIZE * (1.0 - v);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-size=\"10\" font-family=\"sans-serif\">\
         <rect x=\"{PAD}\" y=\"{PAD}\" width=\"{SIZE}\" height=\"{SIZE}\" fill=\"none\" stroke=\"#999\"/>\
         <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#777\" stroke-dasharray=\"4 3\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">confidence</text>\
         <text x=\"10\" y=\"{}\" transform=\"rotate(-90 10 {})\" text-anchor=\"middle\">accuracy</text>",
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0),
        x(0.5),
        h - 4.0,
        y(0.5),
        y(0.5)
    );
    let step = 1.0 / ECE_BINS as f64;
    for b in bins {
        let lo = b.bin as f64 * step;
        let acc = b.accuracy / 100.0;
        let share = b.n as f64 / most;
        let tip = format!(
            "{} on {}\nconfidence ({:.3}, {:.3}]: {} images ({:.1} %)\naccuracy: {:.2} %\nmean confidence: {:.2} %",
            escape_xml(model),
            escape_xml(dataset),
            lo,
            lo + step,
            b.n,
            100.0 * b.n as f64 / total.max(1) as f64,
            b.accuracy,
            b.confidence
        );
        s += &format!(
            "<rect class=\"bin\" data-model=\"{}\" data-group=\"{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#4878a8\" fill-opacity=\"0.8\"><title>{tip}</title></rect>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#aaa\"><title>{tip}</title></rect>",
            escape_xml(model),
            escape_xml(group),
            x(lo) + 0.5,
            y(acc),
            SIZE * step - 1.0,
            SIZE * acc,
            x(lo) + 0.5,
            PAD + SIZE + STRIP - STRIP * 0.8 * share,
            SIZE * step - 1.0,
            STRIP * 0.8 * share
        );
    }
    s + "</svg>"
}
