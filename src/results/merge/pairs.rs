//! One (model, dataset) pair put back together from its shards' parts: rows in manifest order,
//! predictions streamed column by column; a shard's tables held only while its pairs are merged.

use super::*;

/// One shard's part of a pair.
pub(super) struct Part<'a> {
    pub(super) shard: &'a ShardFolder,
    pub(super) part: &'a PartOf,
}

/// Every part of one pair (the `pair`-th of the plan), in row order, checked to tile the
/// dataset's rows and to come from the same inputs as the part holding the first row.
pub(super) fn parts_of<'a>(
    shards: &'a [ShardFolder],
    start: &PairStart,
    pair: usize,
    (model, dataset): &(String, String),
) -> Result<Vec<Part<'a>>> {
    let mut parts: Vec<Part> = shards
        .iter()
        .flat_map(|shard| {
            shard
                .parts
                .iter()
                .filter(move |p| p.pair == pair)
                .map(move |part| Part { shard, part })
        })
        .collect();
    parts.sort_by_key(|p| p.part.rows.start);
    let mut next = 0;
    let of = parts.first().map_or(0, |p| p.part.rows.of);
    for Part { shard, part } in &parts {
        let rows = part.rows;
        if rows.of != of || rows.start != next {
            return Err(Error::input(
                Location::file(shard.dir.join("run.json")),
                format!(
                    "`{model}` on `{dataset}`: rows {}..{} of {} in shard {} do not follow rows ..{next} \
                     of {of}: the shards were not split the same way",
                    rows.start, rows.end, rows.of, shard.name
                ),
            ));
        }
        let first = start
            .evaluation
            .as_ref()
            .expect("the part of row 0 was kept");
        if part.inputs != inputs_digest(first) {
            return Err(different_inputs(
                parts[0].shard,
                first,
                shard,
                part,
                model,
                dataset,
            ));
        }
        next = rows.end;
    }
    if next != of {
        return Err(Error::input(
            Location::file(shards[0].dir.join("run.json")),
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

/// A shard's evals.csv and failures.csv: only its own parts' rows.
pub(super) struct ShardTables {
    pub(super) evals: Vec<EvalRow>,
    pub(super) failures: Vec<FailureRow>,
}

/// The tables of the shards whose pairs are being merged: each read when its first pair comes
/// (under its lock, its run.json checked to be the one read before) and let go after its last.
/// Shards hold contiguous stretches of the run's work, so only a few are held at once.
pub(super) struct Tables<'a> {
    pub(super) shards: &'a [ShardFolder],
    pub(super) held: HashMap<usize, ShardTables>,
}

impl<'a> Tables<'a> {
    pub(super) fn new(shards: &'a [ShardFolder]) -> Self {
        Tables {
            shards,
            held: HashMap::new(),
        }
    }

    /// Read the tables of every shard with a part in `parts` that are not held yet.
    pub(super) fn load(&mut self, parts: &[Part<'_>]) -> Result<()> {
        for part in parts {
            let shard = part.shard;
            if self.held.contains_key(&shard.index) {
                continue;
            }
            let lock = WriterLock::acquire(&shard.dir)?;
            if run_json_digest(&shard.dir)? != shard.run_json {
                return Err(written_meanwhile(shard));
            }
            let evals_csv = shard.dir.join("evals.csv");
            let tables = ShardTables {
                evals: if evals_csv.exists() {
                    evals::read(&evals_csv)?
                } else {
                    Vec::new()
                },
                failures: read_failures(&shard.dir)?,
            };
            drop(lock);
            self.held.insert(shard.index, tables);
        }
        Ok(())
    }

    pub(super) fn of(&self, shard: &ShardFolder) -> &ShardTables {
        &self.held[&shard.index]
    }

    /// Let go of the tables of the shards with no part in a pair after the `pair`-th.
    pub(super) fn release_done(&mut self, pair: usize) {
        // Shards are in index order, every index once (`check_every_shard_once`).
        let shards = self.shards;
        self.held
            .retain(|&index, _| shards[index].parts.iter().any(|p| p.pair > pair));
    }
}

pub(super) fn merge_pair(
    parts: &[Part<'_>],
    start: &PairStart,
    tables: &Tables<'_>,
) -> Result<MergedPair> {
    let first = start.evaluation.as_ref().expect("checked by parts_of");
    let mut evaluation = first.clone();
    evaluation.rows = None;
    evaluation.seconds = parts.iter().map(|p| p.part.seconds).sum();
    evaluation.started = start.started.clone().unwrap_or_default();
    evaluation.finished = start.finished.clone().unwrap_or_default();
    // Every part ran on the same provider (checked by parts_of).
    evaluation.waiting_for_images = if evaluation.seconds > 0.0 {
        parts
            .iter()
            .map(|p| p.part.waiting_for_images * p.part.seconds)
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
        let (row, predictions) = merge_view(parts, tables, &first.model, view)?;
        merged.rows.push(row);
        merged.predictions.push((view.clone(), predictions));
    }
    for part in parts {
        merged.failures.extend(
            tables
                .of(part.shard)
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
    tables: &Tables<'_>,
    model: &str,
    view: &str,
) -> Result<(EvalRow, Predictions)> {
    let mut all = Predictions::default();
    let mut merged: Option<EvalRow> = None;
    let mut has_top5 = false;
    let (mut n, mut correct, mut loaded) = (0u64, 0u64, 0usize);
    for part in parts {
        let dir = &part.shard.dir;
        let row = tables
            .of(part.shard)
            .evals
            .iter()
            .find(|r| r.model == model && r.dataset == view)
            .ok_or_else(|| {
                Error::input(
                    Location::file(dir.join("evals.csv")),
                    format!("has no row for `{model}` on `{view}`, which its run.json lists: run the shard again"),
                )
            })?;
        let path = predictions_file(dir, model, view);
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
        loaded += part.part.rows.end - part.part.rows.start;
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
