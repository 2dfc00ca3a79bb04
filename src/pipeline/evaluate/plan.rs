//! Planning a run: which datasets and rows each model is scored on, which (model, dataset)
//! pairs are still to do, and how a preprocessing group is cut into passes (waves).

use super::*;

/// One row of evals.csv's worth of scoring: a label space and which images count.
#[derive(Debug, Clone)]
pub struct View {
    /// Dataset name in evals.csv: the dataset's own, or `<id>@<shift>` for class-restricted ID views.
    pub name: String,
    pub space: LabelSpace,
    /// Per manifest row: what counts as correct, or `None` if this view does not score the row.
    pub targets: Vec<Option<Target>>,
}

impl View {
    /// Whether the view's images have labels; an unlabelled view's predictions are stored with
    /// null correctness and its evals.csv row has empty accuracy fields.
    pub fn labelled(&self) -> bool {
        !self
            .targets
            .iter()
            .any(|t| matches!(t, Some(Target::Unlabelled)))
    }
}

/// A dataset ready to evaluate: manifest read, labels resolved, views built.
pub struct DatasetPlan {
    pub dataset: Dataset,
    pub manifest: Manifest,
    pub views: Vec<View>,
    /// Manifest rows at least one view scores; only these are read.
    pub load: Vec<usize>,
}

/// Read every manifest and resolve every label before any image is read.
pub fn plan_datasets(suite: &Suite, settings: &RunSettings) -> Result<Vec<DatasetPlan>> {
    let selected = suite.select(&settings.datasets)?;
    check_manifests_exist(suite, &selected, settings)?;
    let mut plans: Vec<DatasetPlan> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for dataset in &selected {
        let path = suite.manifest_path(dataset, settings.data_root.as_deref())?;
        if !path.is_file() && dataset.optional && dataset.name != suite.id {
            skipped.push(dataset.name.clone());
            continue;
        }
        let manifest = Manifest::load(&path)?;
        let targets = if is_labelled(suite, dataset, &manifest)? {
            manifest.targets(dataset.scoring)?
        } else {
            vec![Some(Target::Unlabelled); manifest.rows.len()]
        };
        let space = match dataset.scoring {
            Scoring::ImageNet1k | Scoring::AllClasses => LabelSpace::All,
            other => other
                .restriction()
                .expect("restricted scorings have a label space"),
        };
        let views = vec![View {
            name: dataset.name.clone(),
            space,
            targets,
        }];
        plans.push(DatasetPlan {
            dataset: dataset.clone(),
            manifest,
            views,
            load: Vec::new(),
        });
    }
    if !skipped.is_empty() {
        eprintln!(
            "note: {} optional dataset(s) skipped, no manifest: {}",
            skipped.len(),
            skipped.join(", ")
        );
    }
    // Class-restricted ID views, one per restricted shift: the ID point the literature compares to.
    let id_scoring = plans[0].dataset.scoring;
    if id_scoring == Scoring::ImageNet1k {
        let restricted: Vec<(String, LabelSpace)> = plans[1..]
            .iter()
            .filter_map(|p| {
                p.dataset
                    .scoring
                    .restriction()
                    .map(|s| (p.dataset.name.clone(), s))
            })
            .collect();
        let id = &mut plans[0];
        let id_targets = id.views[0].targets.clone();
        for (shift, space) in restricted {
            let LabelSpace::Subset(classes) = &space else {
                continue;
            };
            let targets = id_targets
                .iter()
                .map(|t| match t {
                    Some(Target::Class(c)) if classes.binary_search(c).is_ok() => {
                        Some(Target::Class(*c))
                    }
                    _ => None,
                })
                .collect();
            id.views.push(View {
                name: format!("{}@{shift}", id.dataset.name),
                space,
                targets,
            });
        }
    }
    for plan in &mut plans {
        plan.load = (0..plan.manifest.rows.len())
            .filter(|&i| plan.views.iter().any(|v| v.targets[i].is_some()))
            .collect();
    }
    Ok(plans)
}

/// Whether a dataset's images are judged against labels: the suite's `labels`, else the manifest's
/// own (docs/datasets.md). The ID set needs labels: every shift is measured against it.
fn is_labelled(suite: &Suite, dataset: &Dataset, manifest: &Manifest) -> Result<bool> {
    let labelled = match dataset.labels {
        Some(false) => false,
        Some(true) | None => {
            let has = manifest.labelled()?;
            if !has && dataset.labels == Some(true) {
                return Err(Error::input(
                    Location::file(&manifest.file).line(1).field("label"),
                    format!(
                        "dataset `{}` is marked `labels = true` in {}, but its manifest has no labels",
                        dataset.name,
                        suite.file.display()
                    ),
                ));
            }
            has
        }
    };
    if !labelled && dataset.name == suite.id {
        return Err(Error::input(
            Location::file(&suite.file).field(format!("datasets.{}.labels", dataset.name)),
            format!(
                "the in-distribution dataset `{}` has no labels ({}): shifts are measured and \
                 estimated against it, so it needs them",
                dataset.name,
                manifest.file.display()
            ),
        ));
    }
    Ok(labelled)
}

/// Every selected dataset's manifest is there, or one error names all that are missing and the
/// `--datasets` that would run the ones present (the ID dataset among them).
pub(super) fn check_manifests_exist(
    suite: &Suite,
    selected: &[Dataset],
    settings: &RunSettings,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut present = Vec::new();
    for dataset in selected {
        let path = suite.manifest_path(dataset, settings.data_root.as_deref())?;
        if path.is_file() {
            present.push(dataset.name.as_str());
        } else if !(dataset.optional && dataset.name != suite.id) {
            missing.push(format!("{} ({})", dataset.name, path.display()));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let hint = if present.contains(&suite.id.as_str()) {
        format!("; to run what is there: --datasets {}", present.join(","))
    } else {
        String::new()
    };
    let first_missing = selected
        .iter()
        .find(|d| !present.contains(&d.name.as_str()))
        .map_or("", |d| d.name.as_str());
    Err(Error::input(
        Location::file(&suite.file).field(format!("datasets.{first_missing}.manifest")),
        format!(
            "{} of {} manifests do not exist: {} (build them with `robust-eval manifest`){hint}",
            missing.len(),
            selected.len(),
            missing.join(", ")
        ),
    ))
}

/// Check that every model can be scored on every dataset (label space, class count), before work.
pub fn check_models_fit(models: &[ModelCard], plans: &[DatasetPlan]) -> Result<()> {
    for model in models {
        for plan in plans {
            let at = || model.card_file.clone().unwrap_or(model.onnx.clone());
            if plan.dataset.scoring.needs_imagenet_logits() && model.num_classes != 1000 {
                return Err(Error::input(
                    Location::file(at()).field("output.num_classes"),
                    format!(
                        "model `{}` has {} classes, but dataset `{}` is scored `{}`, which needs the 1000 ImageNet classes",
                        model.name, model.num_classes, plan.dataset.name, plan.dataset.scoring
                    ),
                ));
            }
            if plan.dataset.scoring == Scoring::AllClasses {
                for (i, t) in plan.views[0].targets.iter().enumerate() {
                    if let Some(Target::Class(c)) = t {
                        if *c >= model.num_classes {
                            return Err(Error::input(
                                Location::file(&plan.manifest.file)
                                    .line(plan.manifest.rows[i].line)
                                    .field("label"),
                                format!(
                                    "class {c} is out of range for model `{}` ({} classes)",
                                    model.name, model.num_classes
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// CPU inference workers for a requested count (0: one per inference thread).
pub fn cpu_workers(requested: usize) -> usize {
    match requested {
        0 => crate::engine::runtime::inference_threads(),
        n => n,
    }
}

/// The models grouped by preprocessing (in a fixed order: the group's key, then the models'
/// order), so each group decodes a dataset once; the order is the order results are stored in.
pub(super) fn preprocessing_groups(models: &[ModelCard]) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (m, model) in models.iter().enumerate() {
        groups.entry(model.preprocess.key()).or_default().push(m);
    }
    groups.into_values().collect()
}

/// Per group and dataset, the loaded rows this process evaluates: all of them, or, in a
/// shard, its part (none where the cell is other shards' work).
pub(super) fn cell_rows(
    groups: &[Vec<usize>],
    plans: &[DatasetPlan],
    shard: Option<Shard>,
) -> Vec<Vec<Option<Range<usize>>>> {
    let Some(shard) = shard else {
        return groups
            .iter()
            .map(|_| plans.iter().map(|p| Some(0..p.load.len())).collect())
            .collect();
    };
    let cells: Vec<(usize, usize)> = groups
        .iter()
        .flat_map(|g| plans.iter().map(move |p| (g.len(), p.load.len())))
        .collect();
    let assigned = shard::assign(&cells, shard);
    assigned
        .chunks(plans.len().max(1))
        .map(<[Option<Range<usize>>]>::to_vec)
        .collect()
}

/// A shard's run.json entry: every pair of the whole run in stored order, and its own part.
pub(super) fn shard_plan(
    shard: Shard,
    models: &[ModelCard],
    groups: &[Vec<usize>],
    plans: &[DatasetPlan],
    rows: &[Vec<Option<Range<usize>>>],
) -> ShardPlan {
    let mut plan = ShardPlan {
        index: shard.index,
        count: shard.count,
        ..Default::default()
    };
    for (g, group) in groups.iter().enumerate() {
        for (p, dataset) in plans.iter().enumerate() {
            for &m in group {
                let pair = (models[m].name.clone(), dataset.dataset.name.clone());
                if let Some(r) = &rows[g][p] {
                    let range = row_range(r, dataset);
                    plan.assigned.push((pair.0.clone(), pair.1.clone(), range));
                }
                plan.pairs.push(pair);
            }
        }
    }
    plan
}

pub(super) fn row_range(rows: &Range<usize>, plan: &DatasetPlan) -> RowRange {
    RowRange {
        start: rows.start,
        end: rows.end,
        of: plan.load.len(),
    }
}

/// Per model and dataset: the evaluation to run, or `None` when stored results are up to date
/// or the pair is another shard's work.
#[allow(clippy::too_many_arguments)]
pub(super) fn pending_pairs(
    models: &[ModelCard],
    keys: &[(String, String)],
    plans: &[DatasetPlan],
    rows_of: &dyn Fn(usize, usize) -> Option<Range<usize>>,
    settings: &RunSettings,
    store: &ResultsStore,
    progress: &dyn Progress,
    summary: &mut RunSummary,
) -> Vec<Vec<Option<Evaluation>>> {
    models
        .iter()
        .zip(keys)
        .enumerate()
        .map(|(m, (model, (sha256, setup)))| {
            plans
                .iter()
                .enumerate()
                .map(|(p, plan)| {
                    let rows = rows_of(m, p)?;
                    let evaluation = Evaluation {
                        model: model.name.clone(),
                        dataset: plan.dataset.name.clone(),
                        views: plan.views.iter().map(|v| v.name.clone()).collect(),
                        scoring: plan.dataset.scoring.to_string(),
                        model_file: model.onnx.clone(),
                        model_sha256: sha256.clone(),
                        model_setup: setup.clone(),
                        manifest: plan.manifest.file.clone(),
                        manifest_sha256: plan.manifest.sha256.clone(),
                        preprocess: plan.dataset.resize.apply(model.preprocess),
                        resize: plan.dataset.resize,
                        border: plan.dataset.scoring.border(),
                        provider: String::new(),
                        batch_size: settings.batch_size,
                        started: String::new(),
                        finished: String::new(),
                        seconds: 0.0,
                        waiting_for_images: 0.0,
                        rows: settings.shard.map(|_| row_range(&rows, plan)),
                        execution: Default::default(),
                        labelled: plan.views[0].labelled(),
                    };
                    if settings.force || !store.up_to_date(&evaluation) {
                        return Some(evaluation);
                    }
                    progress.message(&format!(
                        "{} on {}: up to date, not evaluated again",
                        model.name, plan.dataset.name
                    ));
                    summary
                        .up_to_date
                        .push((model.name.clone(), plan.dataset.name.clone()));
                    None
                })
                .collect()
        })
        .collect()
}

/// The shape of a group's passes, for estimating their memory.
pub(super) fn pass_shape(first: &ModelCard, settings: &RunSettings, workers: Workers) -> PassShape {
    PassShape {
        batch_size: settings.batch_size.max(1),
        per_image: first.preprocess.tensor_len(),
        workers: workers.count,
        prefetch: settings.prefetch,
    }
}

/// A group's models (indices into `models`) cut into waves under the budget; one wave without.
pub(super) fn split_group(
    group: &[usize],
    sizes: &[u64],
    shape: &PassShape,
    budget: Option<&Budget>,
) -> Waves {
    match budget {
        Some(budget) => {
            let footprints: Vec<u64> = group.iter().map(|&m| shape.model(sizes[m])).collect();
            waves::plan(&footprints, budget.room(shape))
        }
        None => Waves {
            waves: std::iter::once(0..group.len()).collect(),
            oversized: Vec::new(),
        },
    }
}

/// Say how many waves a group takes and why, and warn of a model over the budget on its own.
pub(super) fn announce_waves(
    models: &[ModelCard],
    group: &[usize],
    sizes: &[u64],
    shape: &PassShape,
    split: &Waves,
    budget: &Budget,
    progress: &dyn Progress,
) {
    for &i in &split.oversized {
        let m = group[i];
        progress.message(&format!(
            "warning: model `{}` alone is estimated at {} besides {} for a batch, over the memory \
             budget of {} ({}); it runs in a wave of its own",
            models[m].name,
            waves::show(shape.model(sizes[m])),
            waves::show(shape.fixed()),
            waves::show(budget.bytes),
            budget.why
        ));
    }
    if split.waves.len() < 2 {
        return;
    }
    let total: u64 = group.iter().map(|&m| shape.model(sizes[m])).sum();
    let largest = split
        .waves
        .iter()
        .map(ExactSizeIterator::len)
        .max()
        .unwrap_or(0);
    progress.message(&format!(
        "memory: {} models sharing preprocessing run in {} waves of at most {largest}, each its \
         own pass over the datasets: their sessions are estimated at {} and a batch at {}, over \
         the memory budget of {} ({})",
        group.len(),
        split.waves.len(),
        waves::show(total),
        waves::show(shape.fixed()),
        waves::show(budget.bytes),
        budget.why
    ));
}

/// Per (model, view) of a group: its place in the order one pass over every dataset stores
/// pairs (dataset, then model, then view).
pub(super) fn stored_order(
    models: &[ModelCard],
    group: &[usize],
    plans: &[DatasetPlan],
) -> std::collections::HashMap<(String, String), usize> {
    let mut order = std::collections::HashMap::new();
    for plan in plans {
        for &m in group {
            for view in &plan.views {
                let next = order.len();
                order.insert((models[m].name.clone(), view.name.clone()), next);
            }
        }
    }
    order
}
