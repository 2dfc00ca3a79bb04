//! One (model, dataset) pair put back together from its shards' parts: rows in manifest order,
//! predictions streamed column by column.

use super::*;

/// One shard's part of a pair.
pub(super) struct Part<'a> {
    pub(super) shard: &'a ShardFolder,
    pub(super) rows: RowRange,
    pub(super) evaluation: &'a Evaluation,
}

/// Every part of one pair, in row order, checked to tile the dataset's rows and to come from
/// the same inputs.
pub(super) fn parts_of<'a>(
    shards: &'a [ShardFolder],
    model: &str,
    dataset: &str,
) -> Result<Vec<Part<'a>>> {
    let mut parts = Vec::new();
    for shard in shards {
        let plan = shard
            .store
            .run
            .shard
            .as_ref()
            .expect("loaded shards have a plan");
        for (_, _, rows) in plan
            .assigned
            .iter()
            .filter(|(m, d, _)| m == model && d == dataset)
        {
            let evaluation = shard
                .store
                .run
                .evaluations
                .iter()
                .find(|e| e.model == model && e.dataset == dataset && e.rows.as_ref() == Some(rows))
                .ok_or_else(|| {
                    Error::input(
                        Location::file(shard.store.dir.join("run.json")),
                        format!(
                            "shard {} has not finished `{model}` on `{dataset}` (rows {}..{} of {}): \
                             run the shard again (it resumes), then merge again",
                            shard.name, rows.start, rows.end, rows.of
                        ),
                    )
                })?;
            parts.push(Part {
                shard,
                rows: *rows,
                evaluation,
            });
        }
    }
    parts.sort_by_key(|p| p.rows.start);
    let mut next = 0;
    let of = parts.first().map_or(0, |p| p.rows.of);
    for part in &parts {
        let at = Location::file(part.shard.store.dir.join("run.json"));
        if part.rows.of != of || part.rows.start != next {
            return Err(Error::input(
                at,
                format!(
                    "`{model}` on `{dataset}`: rows {}..{} of {} in shard {} do not follow rows ..{next} \
                     of {of}: the shards were not split the same way",
                    part.rows.start, part.rows.end, part.rows.of, part.shard.name
                ),
            ));
        }
        if let Some((field, first, this)) = different_input(parts[0].evaluation, part.evaluation) {
            return Err(Error::input(
                at,
                format!(
                    "`{model}` on `{dataset}`: shard {} has {field} `{first}` and shard {} `{this}`: \
                     run every shard on the same files with the same settings",
                    parts[0].shard.name, part.shard.name
                ),
            ));
        }
        next = part.rows.end;
    }
    if next != of {
        return Err(Error::input(
            Location::file(shards[0].store.dir.join("run.json")),
            format!(
                "`{model}` on `{dataset}`: rows {next}..{of} are in no shard: the shards were not \
                 split the same way"
            ),
        ));
    }
    Ok(parts)
}

/// Read a predictions file back into columns, to be written again as one.
pub(super) fn read_columns(path: &Path) -> Result<Predictions> {
    let df = read_predictions(path)?;
    let bad = |e: PolarsError| Error::input(Location::file(path), format!("predictions: {e}"));
    let height = df.height();
    if height == 0 {
        // A view that scored no row of this part: an empty file, whose list column has no type.
        return Ok(Predictions::default());
    }
    let missing = |name: &str| {
        Error::input(
            Location::file(path),
            format!("predictions: a null in `{name}`"),
        )
    };
    let u32s = |name: &str| -> Result<Vec<u32>> {
        let column = df.column(name).map_err(bad)?.u32().map_err(bad)?.clone();
        (0..height)
            .map(|i| column.get(i).ok_or_else(|| missing(name)))
            .collect()
    };
    let strings = |name: &str| -> Result<Vec<String>> {
        let column = df.column(name).map_err(bad)?.str().map_err(bad)?.clone();
        (0..height)
            .map(|i| {
                column
                    .get(i)
                    .map(str::to_string)
                    .ok_or_else(|| missing(name))
            })
            .collect()
    };
    let bools = |name: &str| -> Result<Vec<bool>> {
        let column = df.column(name).map_err(bad)?.bool().map_err(bad)?.clone();
        (0..height)
            .map(|i| column.get(i).ok_or_else(|| missing(name)))
            .collect()
    };
    // Files written before confidences were stored have none: the merged file then has none.
    let floats = |name: &str| -> Result<Vec<f64>> {
        let Ok(column) = df.column(name) else {
            return Ok(Vec::new());
        };
        let column = column.f64().map_err(bad)?.clone();
        (0..height)
            .map(|i| column.get(i).ok_or_else(|| missing(name)))
            .collect()
    };
    // An unlabelled view's judged columns are all null: placeholders in memory, null again when
    // written (`Predictions::unlabelled`).
    let unlabelled = df.column("correct").map_err(bad)?.null_count() == height;
    let lists = df.column("top5").map_err(bad)?.list().map_err(bad)?.clone();
    let mut top5 = Vec::with_capacity(height);
    for i in 0..height {
        let ids = lists.get_as_series(i).ok_or_else(|| missing("top5"))?;
        let ids = ids.u32().map_err(bad)?;
        top5.push((0..ids.len()).filter_map(|k| ids.get(k)).collect());
    }
    Ok(Predictions {
        index: u32s("index")?,
        path: strings("path")?,
        label: strings("label")?,
        target: if unlabelled {
            vec![0; height]
        } else {
            u32s("target")?
        },
        top5,
        correct: if unlabelled {
            vec![false; height]
        } else {
            bools("correct")?
        },
        correct_top5: if unlabelled {
            vec![false; height]
        } else {
            bools("correct_top5")?
        },
        confidence: floats("confidence")?,
        entropy: floats("entropy")?,
        unlabelled,
    })
}

pub(super) fn append(all: &mut Predictions, part: Predictions) {
    let (rows_before, rows) = (all.index.len(), part.index.len());
    all.index.extend(part.index);
    all.path.extend(part.path);
    all.label.extend(part.label);
    all.target.extend(part.target);
    all.top5.extend(part.top5);
    all.correct.extend(part.correct);
    all.correct_top5.extend(part.correct_top5);
    // Confidences only where every part has them (an empty part has nothing to lack).
    if rows == 0 {
        return;
    }
    if all.confidence.len() == rows_before && part.confidence.len() == rows {
        all.confidence.extend(part.confidence);
        all.entropy.extend(part.entropy);
    } else {
        all.confidence.clear();
        all.entropy.clear();
    }
}

/// A pair merged: its rows of evals.csv, predictions per view, failures and provenance.
pub(super) struct MergedPair {
    pub(super) rows: Vec<EvalRow>,
    pub(super) predictions: Vec<(String, Predictions)>,
    pub(super) failures: Vec<FailureRow>,
    pub(super) evaluation: Evaluation,
}

pub(super) fn merge_pair(parts: &[Part<'_>]) -> Result<MergedPair> {
    let first = parts[0].evaluation;
    let mut evaluation = first.clone();
    evaluation.rows = None;
    evaluation.seconds = parts.iter().map(|p| p.evaluation.seconds).sum();
    evaluation.started = parts
        .iter()
        .map(|p| p.evaluation.started.clone())
        .min()
        .unwrap_or_default();
    evaluation.finished = parts
        .iter()
        .map(|p| p.evaluation.finished.clone())
        .max()
        .unwrap_or_default();
    evaluation.provider = joined(parts.iter().map(|p| p.evaluation.provider.as_str()));
    evaluation.waiting_for_images = if evaluation.seconds > 0.0 {
        parts
            .iter()
            .map(|p| p.evaluation.waiting_for_images * p.evaluation.seconds)
            .sum::<f64>()
            / evaluation.seconds
    } else {
        0.0
    };
    let mut merged = MergedPair {
        rows: Vec::new(),
        predictions: Vec::new(),
        failures: Vec::new(),
        evaluation,
    };
    for view in &first.views {
        let (row, predictions) = merge_view(parts, &first.model, view)?;
        merged.rows.push(row);
        merged.predictions.push((view.clone(), predictions));
    }
    for part in parts {
        let store = &part.shard.store;
        merged.failures.extend(
            store
                .failures
                .iter()
                .filter(|f| f.model == first.model && f.dataset == first.dataset)
                .cloned(),
        );
    }
    Ok(merged)
}

/// One view's row: counts added over the parts, numbers computed from them as one run does.
pub(super) fn merge_view(
    parts: &[Part<'_>],
    model: &str,
    view: &str,
) -> Result<(EvalRow, Predictions)> {
    let mut all = Predictions::default();
    let mut merged: Option<EvalRow> = None;
    let mut has_top5 = false;
    let (mut n, mut correct, mut loaded) = (0u64, 0u64, 0usize);
    for part in parts {
        let store = &part.shard.store;
        let row = store
            .evals
            .iter()
            .find(|r| r.model == model && r.dataset == view)
            .ok_or_else(|| {
                Error::input(
                    Location::file(store.dir.join("evals.csv")),
                    format!("has no row for `{model}` on `{view}`, which its run.json lists: run the shard again"),
                )
            })?;
        let path = store.predictions_path(model, view);
        let predictions = read_columns(&path)?;
        if predictions.index.len() as u64 != row.n {
            return Err(Error::input(
                Location::file(&path),
                format!(
                    "holds {} predictions where evals.csv counts {}: run the shard again",
                    predictions.index.len(),
                    row.n
                ),
            ));
        }
        append(&mut all, predictions);
        n += row.n;
        correct += row.correct;
        loaded += part.rows.end - part.rows.start;
        has_top5 |= row.top5.is_some();
        match &mut merged {
            None => merged = Some(row.clone()),
            Some(m) => {
                m.failed += row.failed;
                m.skipped += row.skipped;
                m.seconds += row.seconds;
                if !m.provider.split(',').any(|p| p == row.provider) {
                    m.provider = format!("{},{}", m.provider, row.provider);
                }
            }
        }
    }
    let mut row = merged.ok_or_else(|| Error::Other(format!("`{model}` on `{view}`: no parts")))?;
    all.unlabelled = !row.labelled;
    let correct5 = all.correct_top5.iter().filter(|&&c| c).count() as u64;
    row.set_counts(n, correct, has_top5.then_some(correct5));
    row.images_per_s = if row.seconds > 0.0 {
        loaded as f64 / row.seconds
    } else {
        0.0
    };
    Ok((row, all))
}

pub(super) fn joined<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for v in values {
        if !unique.contains(&v) {
            unique.push(v);
        }
    }
    unique.join(",")
}
