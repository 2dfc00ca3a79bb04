//! What makes shards one run: the same suite, models, settings and build, each shard complete
//! and unchanged since it finished, and the same images under every manifest.

use super::*;

pub(super) fn run_json_digest(dir: &Path) -> Result<String> {
    crate::input::manifest::sha256_file(&dir.join("run.json"))
}

/// Before the merged tables are written: every shard, its lock taken and released in turn, is
/// as it was read. A shard that a task wrote to meanwhile (a requeue the scheduler started) is
/// named, and nothing of the merged folder's evals.csv and run.json is changed.
pub(super) fn check_unchanged(shards: &[ShardFolder]) -> Result<()> {
    for shard in shards {
        let dir = &shard.store.dir;
        let _lock = WriterLock::acquire(dir)?;
        if run_json_digest(dir)? != shard.run_json {
            return Err(Error::input(
                Location::file(dir.join("run.json")),
                format!(
                    "shard {} was written to while it was merged: merge again once its task has \
                     ended",
                    shard.name
                ),
            ));
        }
    }
    Ok(())
}

/// A shard's run.json is checked before any of it is used: a shard of a real split, in the
/// folder of its own name, whose model, dataset and view names are safe as file names (they
/// name the merged predictions files). Returns the shard's name, `I-of-N`.
pub(super) fn check_shard(dir: &Path, store: &ResultsStore) -> Result<String> {
    let at = || Location::file(dir.join("run.json"));
    let plan = store.run.shard.as_ref().ok_or_else(|| {
        Error::input(
            at(),
            "not a shard's results (no `shard` entry): was it run with --shard I/N?",
        )
    })?;
    let shard = Shard::new(plan.index, plan.count)
        .map_err(|e| Error::input(at().field("shard"), e.to_string()))?;
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if folder.contains("-of-") && folder != shard.name() {
        return Err(Error::input(
            at().field("shard"),
            format!("says shard {}, but its folder is {folder}", shard.name()),
        ));
    }
    let unsafe_name = |what: &str, name: &str| {
        Error::input(
            at(),
            format!(
                "{what} name `{name}` is not a safe file name: this is no run.json `run` wrote"
            ),
        )
    };
    for (model, dataset) in &plan.pairs {
        check_name("model", model).map_err(|_| unsafe_name("model", model))?;
        check_name("dataset", dataset).map_err(|_| unsafe_name("dataset", dataset))?;
    }
    for (model, dataset, rows) in &plan.assigned {
        if !plan.pairs.iter().any(|(m, d)| m == model && d == dataset) {
            return Err(Error::input(
                at().field("shard.assigned"),
                format!("`{model}` on `{dataset}` is no pair of the run"),
            ));
        }
        if rows.start >= rows.end || rows.end > rows.of {
            return Err(Error::input(
                at().field("shard.assigned"),
                format!(
                    "`{model}` on `{dataset}`: rows {}..{} of {} is no range of rows",
                    rows.start, rows.end, rows.of
                ),
            ));
        }
    }
    for evaluation in &store.run.evaluations {
        if let Some(view) = evaluation.views.iter().find(|v| !is_safe_name(v)) {
            return Err(unsafe_name("view", view));
        }
    }
    Ok(shard.name())
}

/// The shards must be parts of one run: the same suite and the same pairs, in the same order.
pub(super) fn check_same_run(shards: &[ShardFolder]) -> Result<()> {
    let first = &shards[0];
    let plan0 = first
        .store
        .run
        .shard
        .as_ref()
        .expect("loaded shards have a plan");
    for shard in &shards[1..] {
        let plan = shard
            .store
            .run
            .shard
            .as_ref()
            .expect("loaded shards have a plan");
        let differs = if shard.store.run.suite != first.store.run.suite {
            Some("suite")
        } else if shard.store.run.id != first.store.run.id {
            Some("in-distribution dataset")
        } else if plan.pairs != plan0.pairs {
            Some("models or datasets")
        } else {
            None
        };
        if let Some(what) = differs {
            return Err(Error::input(
                Location::file(shard.store.dir.join("run.json")),
                format!(
                    "shard {} and shard {} differ in their {what}: every shard must be run with the \
                     same suite, models and datasets",
                    shard.name, first.name
                ),
            ));
        }
        check_same_build(first, shard)?;
    }
    Ok(())
}

/// Shards of one run come from one build of robust-eval on one ONNX Runtime: another build may
/// decode, resize or score differently, and the merged run.json names one build for all.
pub(super) fn check_same_build(first: &ShardFolder, shard: &ShardFolder) -> Result<()> {
    let (a, b) = (&first.store.run, &shard.store.run);
    let differs = if a.build != b.build {
        Some(("robust-eval build", &a.build, &b.build))
    } else if a.onnxruntime_version != b.onnxruntime_version {
        Some((
            "ONNX Runtime version",
            &a.onnxruntime_version,
            &b.onnxruntime_version,
        ))
    } else {
        None
    };
    match differs {
        None => Ok(()),
        Some((what, ours, theirs)) => Err(Error::input(
            Location::file(shard.store.dir.join("run.json")).field(if what.starts_with("ONNX") {
                "onnxruntime_version"
            } else {
                "build"
            }),
            format!(
                "shard {} was run with {what} `{}` and shard {} with `{}`: run every shard with the \
                 same robust-eval and ONNX Runtime (run the odd shards again after deleting their \
                 folders), then merge again",
                first.name,
                shown(ours),
                shard.name,
                shown(theirs)
            ),
        )),
    }
}

pub(super) fn shown(value: &str) -> &str {
    if value.is_empty() {
        "(not recorded)"
    } else {
        value
    }
}

/// The first input or result-changing setting two parts of a pair disagree on, if any, with
/// both values. The execution provider and the batch size change the kernels ONNX Runtime runs
/// and so the last digits of the logits (a near-tie can flip): parts must agree on them too.
pub(super) fn different_input(
    a: &Evaluation,
    b: &Evaluation,
) -> Option<(&'static str, String, String)> {
    let pairs: [(&'static str, String, String); 9] = [
        (
            "model sha256",
            a.model_sha256.clone(),
            b.model_sha256.clone(),
        ),
        (
            "model card settings",
            a.model_setup.clone(),
            b.model_setup.clone(),
        ),
        (
            "manifest sha256",
            a.manifest_sha256.clone(),
            b.manifest_sha256.clone(),
        ),
        ("preprocessing", a.preprocess.key(), b.preprocess.key()),
        ("border", a.border.to_string(), b.border.to_string()),
        (
            "scoring",
            format!("{} {:?}", a.scoring, a.views),
            format!("{} {:?}", b.scoring, b.views),
        ),
        ("execution provider", a.provider.clone(), b.provider.clone()),
        (
            "batch size",
            a.batch_size.to_string(),
            b.batch_size.to_string(),
        ),
        // fp32, TF32 and fp16 logits differ in the last bits, enough to flip near ties.
        (
            "precision (--tf32, --fp16)",
            a.execution.precision.clone(),
            b.execution.precision.clone(),
        ),
    ];
    pairs.into_iter().find(|(_, x, y)| x != y)
}
