//! Reports (docs/design.md, section 7): Markdown for pull requests and READMEs, one self-contained HTML
//! file (plots inline, sortable tables) and JSON for scripts. Each renderer returns text and does
//! no I/O; `analysis` decides where it goes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::fit::{Accuracy, FitReport, Robustness};
use crate::analysis::markup::{escape_markdown, escape_xml, Table};
use crate::input::card::Intervention;
use crate::results::store::RunInfo;

mod data;
mod html;
mod text;

pub use data::*;
pub use html::*;
pub use text::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Md,
    Html,
    Json,
}

/// The result in a few lines, for the end of `run`: each shift's fit and the models with the
/// highest and lowest average effective robustness.
#[derive(Debug, Serialize)]
pub struct Headline {
    pub id_dataset: String,
    pub transform: String,
    pub fits: Vec<HeadlineFit>,
    /// Highest average effective robustness first.
    pub highest: Vec<Ranked>,
    /// Lowest average effective robustness first.
    pub lowest: Vec<Ranked>,
    /// Said before the ranking: unreliable fits, models kept from earlier runs, a ranking whose
    /// models' intervals all overlap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cautions: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct HeadlineFit {
    pub shift: String,
    pub slope: f64,
    pub r2: f64,
    pub n: usize,
}

#[derive(Debug, Serialize)]
pub struct Ranked {
    pub model: String,
    pub group: String,
    pub average_effective_robustness: f64,
}

/// Up to `k` models at each end of the average-effective-robustness ranking; with fewer than
/// 2·k models the two lists split them rather than repeat one.
pub fn headline(data: &ReportData, k: usize) -> Headline {
    let mut ranked: Vec<Ranked> = data
        .models
        .iter()
        .filter_map(|m| {
            m.average_effective_robustness.map(|er| Ranked {
                model: m.model.clone(),
                group: m.group.clone(),
                average_effective_robustness: er,
            })
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.average_effective_robustness
            .total_cmp(&a.average_effective_robustness)
            .then_with(|| a.model.cmp(&b.model))
    });
    let mut cautions = data.cautions.clone();
    if ranked.len() > 1 && intervals_all_overlap(data, &ranked) {
        cautions.push(format!(
            "the {} ranked models' effective-robustness intervals overlap on every shift: \
             the ranking below is no evidence that one is more robust than another",
            ranked.len()
        ));
    }
    let n = ranked.len();
    let lowest: Vec<Ranked> = ranked.drain(n - k.min(n / 2)..).rev().collect();
    ranked.truncate(k.min(n.div_ceil(2)));
    Headline {
        id_dataset: data.id_dataset.clone(),
        transform: data.transform.clone(),
        fits: data
            .fits
            .iter()
            .map(|f| HeadlineFit {
                shift: f.shift.clone(),
                slope: f.slope,
                r2: f.r2,
                n: f.n,
            })
            .collect(),
        highest: ranked,
        lowest,
        cautions,
    }
}

/// Whether, on every shift, the ranked models' ER intervals share a common point: then no pair
/// of them differs beyond its uncertainty.
fn intervals_all_overlap(data: &ReportData, ranked: &[Ranked]) -> bool {
    data.shifts.iter().all(|shift| {
        let cells: Vec<&ShiftCell> = ranked
            .iter()
            .filter_map(|r| data.models.iter().find(|m| m.model == r.model))
            .filter_map(|m| m.shifts.get(shift))
            .collect();
        let low = cells.iter().map(|c| c.er_low).fold(f64::MIN, f64::max);
        let high = cells.iter().map(|c| c.er_high).fold(f64::MAX, f64::min);
        low <= high
    })
}

impl std::fmt::Display for Headline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.fits.is_empty() {
            // A suite of the ID set alone (or shifts that could not be fitted): no empty table.
            writeln!(
                f,
                "Trend fit: nothing to fit (no shift of ID {} was fitted)",
                self.id_dataset
            )?;
        } else {
            self.fit_table(f)?;
        }
        self.rankings(f)
    }
}

impl Headline {
    fn fit_table(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Trend fit ({}, ID {}):", self.transform, self.id_dataset)?;
        let width = self
            .fits
            .iter()
            .map(|s| s.shift.chars().count())
            .max()
            .unwrap_or(5);
        writeln!(
            f,
            "  {:<width$}  {:>6}  {:>6}  {:>5}",
            "shift", "slope", "R²", "n"
        )?;
        for s in &self.fits {
            writeln!(
                f,
                "  {:<width$}  {:>6.3}  {:>6.3}  {:>5}",
                s.shift, s.slope, s.r2, s.n
            )?;
        }
        Ok(())
    }

    fn rankings(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |models: &[Ranked]| {
            models
                .iter()
                .map(|m| {
                    format!(
                        "{} {:+.2} ({})",
                        m.model, m.average_effective_robustness, m.group
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        for c in &self.cautions {
            writeln!(f, "Caution: {c}.")?;
        }
        if self.highest.is_empty() {
            return writeln!(
                f,
                "No model was scored on every shift: no average effective robustness."
            );
        }
        writeln!(
            f,
            "Highest average effective robustness (pp): {}",
            list(&self.highest)
        )?;
        if !self.lowest.is_empty() {
            writeln!(
                f,
                "Lowest average effective robustness (pp):  {}",
                list(&self.lowest)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
