//! Model soups (Wortsman et al., ICML 2022): the uniform soup averages the weights of several
//! fine-tuned models; the greedy soup adds them one at a time in order of held-out accuracy,
//! keeping each only if the soup's held-out accuracy does not drop. The held-out accuracies are
//! measured by the tool itself (`pipeline::evaluate::run`), into a results folder under the output
//! folder so a second run reuses them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::weights::{Recipe, RunningSum, Source};
use super::{check_compatible, write_model, Ingredient, Intervention, Written};
use crate::engine::progress::Progress;
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::input::card::ModelCard;
use crate::input::suite::Suite;
use crate::pipeline::evaluate::{self, RunSettings};
use crate::results::store::ResultsStore;

pub struct SoupSettings {
    pub out: PathBuf,
    pub name: String,
    pub group: String,
}

fn check_all(parts: &[Ingredient]) -> Result<()> {
    if parts.len() < 2 {
        return Err(Error::Usage("a soup needs at least two models".into()));
    }
    let mut names: Vec<&str> = parts.iter().map(|p| p.card.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Usage(format!("two models are named `{}`", w[0])));
    }
    parts[1..]
        .iter()
        .try_for_each(|p| check_compatible(&parts[0], p))
}

fn soup_intervention(members: &[&Ingredient], recipe: &str) -> Intervention {
    let names: Vec<&str> = members.iter().map(|m| m.card.name.as_str()).collect();
    vec![
        ("kind", "soup".into()),
        ("members", names.into()),
        ("recipe", recipe.into()),
    ]
}

/// The uniform soup of all `parts` (the first one's layout and card settings).
pub fn uniform(parts: &[Ingredient], settings: &SoupSettings) -> Result<Written> {
    check_all(parts)?;
    let members: Vec<&Ingredient> = parts.iter().collect();
    let models: Vec<&super::Model> = parts.iter().map(|p| &p.model).collect();
    write_model(
        &settings.out,
        &settings.name,
        &settings.group,
        &members,
        Recipe::Mean,
        &Source::Models(&models, Recipe::Mean),
        &soup_intervention(&members, "uniform"),
    )
}

/// Where and how the greedy soup's candidates are evaluated.
pub struct Greedy<'a> {
    pub suite: &'a Suite,
    pub held_out: String,
    /// Evaluation settings; `out` and `datasets` are set here.
    pub run: RunSettings,
    pub progress: &'a dyn Progress,
}

#[derive(Debug, Serialize)]
pub struct Candidate {
    pub model: String,
    pub held_out_top1: f64,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub candidate: String,
    /// The soup tried: the models kept so far and the candidate.
    pub soup: Vec<String>,
    pub soup_top1: f64,
    pub kept: bool,
}

/// What `<name>.soup.json` records.
#[derive(Debug, Serialize)]
pub struct GreedyRecord {
    pub name: String,
    pub recipe: &'static str,
    pub suite: String,
    pub held_out: String,
    pub id_dataset: String,
    /// Set when the held-out dataset is one the suite reports on (its ID dataset, or a shift
    /// evaluated by default).
    pub warning: Option<String>,
    /// Candidates by held-out top-1, best first (the order they are tried in).
    pub candidates: Vec<Candidate>,
    pub steps: Vec<Step>,
    pub kept: Vec<String>,
    pub held_out_top1: f64,
    pub results: PathBuf,
    pub model: Written,
}

/// The warning when the soup is chosen on a dataset it will be reported on: the suite's ID
/// dataset, or any dataset a default run evaluates (a shift whose accuracy, and the effective
/// robustness from it, the choice then biases). A held-out split marked `default = false` in
/// the suite gets none.
pub fn id_warning(suite: &Suite, held_out: &str) -> Option<String> {
    let advice = "The paper holds out part of the training set; give such a split its own \
                  dataset in the suite (`default = false`, so runs do not report on it) and pass \
                  it as --held-out";
    if suite.id == held_out {
        return Some(format!(
            "the held-out dataset `{held_out}` is suite `{}`'s in-distribution dataset: the soup \
             was chosen on it, so its accuracy there is biased upward and is not an unbiased ID \
             result. {advice}",
            suite.name
        ));
    }
    suite
        .datasets
        .iter()
        .find(|d| d.name == held_out && d.default)
        .map(|_| {
            format!(
                "the held-out dataset `{held_out}` is one suite `{}` reports on (a shift a run \
                 evaluates by default): the soup was chosen on it, so its accuracy there and its \
                 effective robustness are biased upward. {advice}",
                suite.name
            )
        })
}

/// The greedy soup: candidates ranked by held-out top-1, then added one at a time while the
/// soup's held-out top-1 does not drop (ties kept, as the paper's "does not decrease").
pub fn greedy(parts: &[Ingredient], settings: &SoupSettings, g: &Greedy) -> Result<GreedyRecord> {
    check_all(parts)?;
    // The soups tried are stored in one results folder with the candidates: a name shared with
    // a candidate would overwrite its stored result.
    let tried: Vec<String> = std::iter::once(settings.name.clone())
        .chain((2..=parts.len()).map(|k| format!("{}-step{k}", settings.name)))
        .collect();
    if let Some(clash) = parts.iter().find(|p| tried.contains(&p.card.name)) {
        return Err(Error::Usage(format!(
            "a candidate is named `{}`, as a soup this would write is: choose another --name",
            clash.card.name
        )));
    }
    let results = settings.out.join("greedy-results");
    let steps_dir = results.join("soups");
    let cards: Vec<ModelCard> = parts.iter().map(|p| p.card.clone()).collect();
    let scores = evaluate_on(&cards, g, &results)?;
    let mut order: Vec<&Ingredient> = parts.iter().collect();
    order.sort_by(|a, b| scores[&b.card.name].total_cmp(&scores[&a.card.name]));
    let candidates: Vec<Candidate> = order
        .iter()
        .map(|p| Candidate {
            model: p.card.name.clone(),
            held_out_top1: scores[&p.card.name],
        })
        .collect();
    // The kept models' weights as a running float64 sum: each trial is that sum plus one
    // candidate, over the count, so memory stays one model's worth whatever the number kept.
    let mut kept = vec![order[0]];
    let mut sum = RunningSum::new();
    sum.add(&order[0].model)?;
    let mut best = candidates[0].held_out_top1;
    let mut steps = Vec::new();
    for (k, candidate) in order.iter().enumerate().skip(1) {
        let mut trial = kept.clone();
        trial.push(candidate);
        let name = format!("{}-step{}", settings.name, k + 1);
        let written = write_model(
            &steps_dir,
            &name,
            &settings.group,
            &trial,
            Recipe::Mean,
            &Source::Sum(&sum, Some(&candidate.model)),
            &soup_intervention(&trial, "uniform"),
        )?;
        let card = ModelCard::load(&written.card)?;
        let top1 = evaluate_on(std::slice::from_ref(&card), g, &results)?[&name];
        // Its result is stored; the tried soup itself is not kept on disk (the final soup is
        // written below), so disk use stays one model whatever the number of steps.
        remove_written(&card)?;
        let keep = top1 >= best;
        steps.push(Step {
            candidate: candidate.card.name.clone(),
            soup: trial.iter().map(|p| p.card.name.clone()).collect(),
            soup_top1: top1,
            kept: keep,
        });
        if keep {
            sum.add(&candidate.model)?;
            kept = trial;
            best = top1;
        }
    }
    // One model kept is its own soup: the written model is then a copy of it.
    let model = write_model(
        &settings.out,
        &settings.name,
        &settings.group,
        &kept,
        Recipe::Mean,
        &Source::Sum(&sum, None),
        &soup_intervention(&kept, "greedy"),
    )?;
    let record = GreedyRecord {
        name: settings.name.clone(),
        recipe: "greedy",
        suite: g.suite.name.clone(),
        held_out: g.held_out.clone(),
        id_dataset: g.suite.id.clone(),
        warning: id_warning(g.suite, &g.held_out),
        candidates,
        steps,
        kept: kept.iter().map(|p| p.card.name.clone()).collect(),
        held_out_top1: best,
        results,
        model,
    };
    let json = serde_json::to_string_pretty(&record).map_err(|e| Error::Other(e.to_string()))?;
    write_atomic(
        &settings.out.join(format!("{}.soup.json", settings.name)),
        json.as_bytes(),
    )?;
    Ok(record)
}

/// Delete a written step soup: its card, model, external data and head files.
fn remove_written(card: &ModelCard) -> Result<()> {
    let mut files: Vec<&Path> = vec![&card.onnx];
    files.extend(card.external_data.iter().map(PathBuf::as_path));
    if let Some(h) = &card.head {
        files.push(&h.weights_file);
        files.extend(h.bias_file.as_deref());
    }
    files.extend(card.card_file.as_deref());
    for f in files {
        std::fs::remove_file(f).map_err(|e| Error::io(f, e))?;
    }
    Ok(())
}

/// Held-out top-1 (percent) of each of `cards`, evaluated into `results` (reused when up to date).
fn evaluate_on(cards: &[ModelCard], g: &Greedy, results: &Path) -> Result<HashMap<String, f64>> {
    let dataset = g
        .suite
        .datasets
        .iter()
        .find(|d| d.name == g.held_out)
        .ok_or_else(|| {
            let known: Vec<&str> = g.suite.datasets.iter().map(|d| d.name.as_str()).collect();
            Error::Usage(format!(
                "--held-out: suite `{}` has no dataset `{}` (it has: {})",
                g.suite.name,
                g.held_out,
                known.join(", ")
            ))
        })?;
    // A suite of the held-out dataset alone, so no other dataset is evaluated.
    let suite = Suite {
        id: dataset.name.clone(),
        datasets: vec![dataset.clone()],
        ..g.suite.clone()
    };
    let settings = RunSettings {
        out: results.to_path_buf(),
        datasets: Vec::new(),
        ..g.run.clone()
    };
    evaluate::run(&suite, cards, &settings, g.progress)?;
    let store = ResultsStore::open(results)?;
    cards
        .iter()
        .map(|c| {
            store
                .evals
                .iter()
                .find(|r| r.model == c.name && r.dataset == g.held_out)
                .map(|r| (c.name.clone(), r.top1))
                .ok_or_else(|| {
                    Error::Other(format!(
                        "no held-out result for `{}` in {}",
                        c.name,
                        results.display()
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greedy_soup_warns_for_any_dataset_the_suite_reports_on() {
        let mut suite = Suite::find("demo").unwrap();
        let id = id_warning(&suite, "shapes").unwrap();
        assert!(
            id.contains("in-distribution") && id.contains("biased upward"),
            "{id}"
        );
        let shift = id_warning(&suite, "shapes-v2").unwrap();
        assert!(
            shift.contains("reports on") && shift.contains("effective robustness"),
            "{shift}"
        );
        // A split a run does not evaluate by default is a held-out set: no warning.
        let held_out = suite
            .datasets
            .iter_mut()
            .find(|d| d.name == "shapes-v2")
            .unwrap();
        held_out.default = false;
        assert_eq!(id_warning(&suite, "shapes-v2"), None);
    }
}
