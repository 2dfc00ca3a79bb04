//! `evals.csv`, the one table every later step reads: its row type and its one reader.
//!
//! `run` writes every column. The reader needs only `model`, `dataset` and `top1`, so that `fit`,
//! `plot`, `report` and `gate` also work on published numbers; a missing optional column gets the
//! value that says "unknown" (no counts, an interval of zero width, the default group). Every
//! value is checked, and an error names the file, line and column.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Location, Result};
use crate::input::card::DEFAULT_GROUP;

/// One row of `evals.csv`: a model's score on one dataset (or class-restricted view of one).
///
/// An unlabelled dataset's row (`labelled` false) is written with `correct`, `top1`, `top5` and
/// the interval empty, never 0; its counts in memory mean nothing, and `fit`, `plot`, `report`
/// and `gate` leave such rows out of everything measured.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct EvalRow {
    /// Whether the images had labels (not a column: an empty `top1` says it).
    #[serde(skip, default = "yes")]
    pub labelled: bool,
    pub model: String,
    pub group: String,
    pub dataset: String,
    /// Images scored.
    pub n: u64,
    pub correct: u64,
    /// Top-1 accuracy in percent.
    pub top1: f64,
    /// Top-5 accuracy in percent; empty where the label space has fewer than 5 classes.
    pub top5: Option<f64>,
    /// 95 % Clopper–Pearson interval of top-1, in percent.
    pub top1_ci_low: f64,
    pub top1_ci_high: f64,
    /// Images that could not be read or decoded (listed in failures.csv).
    pub failed: u64,
    /// Images the scoring rule leaves out (ObjectNet folders with no ImageNet counterpart).
    pub skipped: u64,
    pub provider: String,
    pub seconds: f64,
    pub images_per_s: f64,
}

impl EvalRow {
    /// Set the counts and everything computed from them: top-1 and top-5 in percent (top-5 only
    /// where `correct5` is given) and the 95 % Clopper–Pearson interval. One place, so a merged
    /// row's numbers are bit for bit those of a row one run wrote.
    pub fn set_counts(&mut self, n: u64, correct: u64, correct5: Option<u64>) {
        let percent = |k: u64| {
            if n == 0 {
                0.0
            } else {
                100.0 * k as f64 / n as f64
            }
        };
        let (low, high) = crate::results::interval::clopper_pearson(correct, n, 0.95);
        self.n = n;
        self.correct = correct;
        self.top1 = percent(correct);
        self.top5 = correct5.map(percent);
        self.top1_ci_low = 100.0 * low;
        self.top1_ci_high = 100.0 * high;
    }
}

fn yes() -> bool {
    true
}

/// evals.csv's columns as written: the judged ones empty where the dataset has no labels.
#[derive(Serialize)]
struct WrittenRow<'a> {
    model: &'a str,
    group: &'a str,
    dataset: &'a str,
    n: u64,
    correct: Option<u64>,
    top1: Option<f64>,
    top5: Option<f64>,
    top1_ci_low: Option<f64>,
    top1_ci_high: Option<f64>,
    failed: u64,
    skipped: u64,
    provider: &'a str,
    seconds: f64,
    images_per_s: f64,
}

impl Serialize for EvalRow {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        let judged = |v: f64| self.labelled.then_some(v);
        WrittenRow {
            model: &self.model,
            group: &self.group,
            dataset: &self.dataset,
            n: self.n,
            correct: self.labelled.then_some(self.correct),
            top1: judged(self.top1),
            top5: self.top5.filter(|_| self.labelled),
            top1_ci_low: judged(self.top1_ci_low),
            top1_ci_high: judged(self.top1_ci_high),
            failed: self.failed,
            skipped: self.skipped,
            provider: &self.provider,
            seconds: self.seconds,
            images_per_s: self.images_per_s,
        }
        .serialize(serializer)
    }
}

/// The columns `run` writes, in order.
pub const HEADER: &[&str] = &[
    "model",
    "group",
    "dataset",
    "n",
    "correct",
    "top1",
    "top5",
    "top1_ci_low",
    "top1_ci_high",
    "failed",
    "skipped",
    "provider",
    "seconds",
    "images_per_s",
];

/// Largest evals.csv read: about two million rows, far beyond any study, and a bound on memory
/// when a path points at something that is not a table.
pub const MAX_BYTES: u64 = 512 << 20;

/// Read an evals.csv; a missing file is an error.
pub fn read(path: &Path) -> Result<Vec<EvalRow>> {
    let text = crate::input::read_text(path, MAX_BYTES)?;
    read_from(path, &text)
}

/// Read evals.csv text; `path` only names the file in errors.
pub fn read_from(path: &Path, text: &str) -> Result<Vec<EvalRow>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| Error::input(Location::file(path).line(1), e.to_string()))?
        .clone();
    let columns = Columns::find(path, &headers)?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            Error::input(
                Location::file(path).line(line),
                format!("malformed CSV row: {e}"),
            )
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        rows.push(columns.row(&record, &|field| {
            Location::file(path).line(line).field(field)
        })?);
    }
    Ok(rows)
}

/// Where each column is; `None` for an optional column the file does not have.
struct Columns {
    at: Vec<Option<usize>>,
}

const REQUIRED: &[&str] = &["model", "dataset", "top1"];

impl Columns {
    fn find(path: &Path, headers: &csv::StringRecord) -> Result<Columns> {
        let at: Vec<Option<usize>> = HEADER
            .iter()
            .map(|name| headers.iter().position(|h| h.trim() == *name))
            .collect();
        for name in REQUIRED {
            let i = HEADER.iter().position(|h| h == name).unwrap_or(0);
            if at[i].is_none() {
                return Err(Error::input(
                    Location::file(path).line(1).field(*name),
                    format!("missing column `{name}` (evals.csv needs model, dataset, top1; the others are optional)"),
                ));
            }
        }
        Ok(Columns { at })
    }

    /// The trimmed text of column `name`, or "" where the file has no such column.
    fn get<'r>(&self, record: &'r csv::StringRecord, name: &str) -> &'r str {
        HEADER
            .iter()
            .position(|h| *h == name)
            .and_then(|i| self.at[i])
            .and_then(|c| record.get(c))
            .unwrap_or("")
            .trim()
    }

    fn row(&self, record: &csv::StringRecord, at: &dyn Fn(&str) -> Location) -> Result<EvalRow> {
        let text = |name: &str| self.get(record, name);
        let nonempty = |name: &str| -> Result<String> {
            match text(name) {
                "" => Err(Error::input(at(name), format!("empty {name}"))),
                v => Ok(v.to_string()),
            }
        };
        let percent = |name: &str| -> Result<f64> {
            let v = text(name);
            let x: f64 = v
                .parse()
                .map_err(|_| Error::input(at(name), format!("`{v}` is not a number")))?;
            if !(0.0..=100.0).contains(&x) {
                return Err(Error::input(
                    at(name),
                    format!("{x} is not an accuracy in percent (0–100)"),
                ));
            }
            Ok(x)
        };
        let optional = |name: &str, read: &dyn Fn(&str) -> Result<f64>| -> Result<Option<f64>> {
            if text(name).is_empty() {
                Ok(None)
            } else {
                read(name).map(Some)
            }
        };
        let count = |name: &str| -> Result<u64> {
            match text(name) {
                "" => Ok(0),
                v => v
                    .parse()
                    .map_err(|_| Error::input(at(name), format!("`{v}` is not a whole number"))),
            }
        };
        let non_negative = |name: &str| -> Result<f64> {
            let v = text(name);
            let x: f64 = v
                .parse()
                .map_err(|_| Error::input(at(name), format!("`{v}` is not a number")))?;
            if !(x.is_finite() && x >= 0.0) {
                return Err(Error::input(
                    at(name),
                    format!("{x} is not a non-negative number"),
                ));
            }
            Ok(x)
        };
        // An empty top1 is an unlabelled dataset's row: its judged fields stay 0 in memory.
        let labelled = !text("top1").is_empty();
        let top1 = if labelled { percent("top1")? } else { 0.0 };
        // Published numbers bring no interval: one of zero width, so it adds nothing.
        let (low, high) = match (
            optional("top1_ci_low", &percent)?,
            optional("top1_ci_high", &percent)?,
        ) {
            (Some(l), Some(h)) => (l, h),
            _ => (top1, top1),
        };
        let (n, correct) = (count("n")?, count("correct")?);
        if correct > n {
            return Err(Error::input(
                at("correct"),
                format!("{correct} correct of {n} images"),
            ));
        }
        Ok(EvalRow {
            labelled,
            model: nonempty("model")?,
            group: match text("group") {
                "" => DEFAULT_GROUP.to_string(),
                g => g.to_string(),
            },
            dataset: nonempty("dataset")?,
            n,
            correct,
            top1,
            top5: optional("top5", &percent)?,
            top1_ci_low: low,
            top1_ci_high: high,
            failed: count("failed")?,
            skipped: count("skipped")?,
            provider: text("provider").to_string(),
            seconds: optional("seconds", &non_negative)?.unwrap_or(0.0),
            images_per_s: optional("images_per_s", &non_negative)?.unwrap_or(0.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_name_line_and_column() {
        let p = Path::new("evals.csv");
        let err = |text: &str| read_from(p, text).unwrap_err().to_string();
        assert!(err("model,top1\nm,50\n").contains("evals.csv:1: field `dataset`"));
        let e = err("model,dataset,top1\nm,imagenet,50\nm,v2,abc\n");
        assert!(e.contains("evals.csv:3: field `top1`"), "{e}");
        let e = err("model,dataset,top1\nm,imagenet,150\n");
        assert!(
            e.contains("evals.csv:2: field `top1`") && e.contains("0–100"),
            "{e}"
        );
        let e = err("model,dataset,top1,n,correct\nm,imagenet,50,10,11\n");
        assert!(e.contains("field `correct`"), "{e}");
        let e = err("model,dataset,top1\n,imagenet,50\n");
        assert!(e.contains("field `model`"), "{e}");
    }

    #[test]
    fn an_unlabelled_row_reads_and_writes_with_empty_accuracy_fields() {
        let text = "model,group,dataset,n,correct,top1,top5,top1_ci_low,top1_ci_high,failed,skipped,provider,seconds,images_per_s\n\
                    m,g,field,300,,,,,,0,0,cpu,1.5,200.0\n";
        let rows = read_from(Path::new("evals.csv"), text).unwrap();
        assert!(!rows[0].labelled);
        assert_eq!(rows[0].n, 300);
        let written = crate::results::store::csv_bytes(&rows, HEADER).unwrap();
        assert_eq!(String::from_utf8(written).unwrap(), text);
        let mut labelled = rows[0].clone();
        labelled.labelled = true;
        labelled.set_counts(300, 150, None);
        let written = crate::results::store::csv_bytes(&[labelled], HEADER).unwrap();
        assert!(String::from_utf8(written)
            .unwrap()
            .contains("m,g,field,300,150,50.0,,"));
    }

    #[test]
    fn published_numbers_need_three_columns() {
        let rows = read_from(
            Path::new("t.csv"),
            "dataset,top1,model\nimagenet,76.1,resnet50\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.model.as_str(), r.group.as_str(), r.n),
            ("resnet50", DEFAULT_GROUP, 0)
        );
        assert_eq!((r.top1_ci_low, r.top1_ci_high, r.top5), (76.1, 76.1, None));
    }
}
