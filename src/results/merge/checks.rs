//! What makes shards one run: the same suite, models, settings and build, each shard complete
//! and unchanged since it finished, and the same images under every manifest.

use super::*;

pub(super) fn run_json_digest(dir: &Path) -> Result<String> {
    crate::input::manifest::sha256_file(&dir.join("run.json"))
}

/// A shard that a task wrote to since it was read (a requeue the scheduler started) is named:
/// merge again once its task has ended.
pub(super) fn written_meanwhile(shard: &ShardFolder) -> Error {
    Error::input(
        Location::file(shard.dir.join("run.json")),
        format!(
            "shard {} was written to while it was merged: merge again once its task has ended",
            shard.name
        ),
    )
}

/// Before the merged tables are written: every shard, its lock taken and released in turn, is
/// as it was read. Nothing of the merged folder's evals.csv and run.json is changed otherwise.
pub(super) fn check_unchanged(shards: &[ShardFolder]) -> Result<()> {
    for shard in shards {
        let _lock = WriterLock::acquire(&shard.dir)?;
        if run_json_digest(&shard.dir)? != shard.run_json {
            return Err(written_meanwhile(shard));
        }
    }
    Ok(())
}

/// A shard's run.json is checked before any of it is used: a shard of a real split, in the
/// folder of its own name, whose model, dataset and view names are safe as file names (they
/// name the merged predictions files). Returns the shard's name, `I-of-N`.
pub(super) fn check_shard(dir: &Path, run: &RunInfo) -> Result<String> {
    let at = || Location::file(dir.join("run.json"));
    let plan = run.shard.as_ref().ok_or_else(|| {
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
    for evaluation in &run.evaluations {
        if let Some(view) = evaluation.views.iter().find(|v| !is_safe_name(v)) {
            return Err(unsafe_name("view", view));
        }
    }
    Ok(shard.name())
}

/// The shards must be parts of one run: the same suite and the same pairs, in the same order,
/// from one build. Each shard's plan is compared with the one copy kept, the first shard's.
pub(super) fn check_same_run(
    all: &Loaded,
    name: &str,
    run: &RunInfo,
    plan: &ShardPlan,
    dir: &Path,
) -> Result<()> {
    let first = &all.first;
    let first_name = &all.shards.first().map_or("0", |s| s.name.as_str());
    let differs = if run.suite != first.suite {
        Some("suite")
    } else if run.id != first.id {
        Some("in-distribution dataset")
    } else if plan.pairs != all.pairs {
        Some("models or datasets")
    } else {
        None
    };
    if let Some(what) = differs {
        return Err(Error::input(
            Location::file(dir.join("run.json")),
            format!(
                "shard {name} and shard {first_name} differ in their {what}: every shard must be \
                 run with the same suite, models and datasets"
            ),
        ));
    }
    check_same_build(first, first_name, run, name, dir)
}

/// Shards of one run come from one build of robust-eval on one ONNX Runtime: another build may
/// decode, resize or score differently, and the merged run.json names one build for all.
pub(super) fn check_same_build(
    a: &RunInfo,
    first_name: &str,
    b: &RunInfo,
    name: &str,
    dir: &Path,
) -> Result<()> {
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
            Location::file(dir.join("run.json")).field(if what.starts_with("ONNX") {
                "onnxruntime_version"
            } else {
                "build"
            }),
            format!(
                "shard {first_name} was run with {what} `{}` and shard {name} with `{}`: run every \
                 shard with the same robust-eval and ONNX Runtime (run the odd shards again after \
                 deleting their folders), then merge again",
                shown(ours),
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

/// The refusal of a part made from other inputs or settings than the pair's first part: its
/// evaluation is read again (only its digest was kept) to name both values.
pub(super) fn different_inputs(
    first_shard: &ShardFolder,
    first: &Evaluation,
    shard: &ShardFolder,
    part: &PartOf,
    model: &str,
    dataset: &str,
) -> Error {
    let at = Location::file(shard.dir.join("run.json"));
    let theirs = read_run_info(&shard.dir).ok().flatten().and_then(|run| {
        run.evaluations.into_iter().find(|e| {
            e.model == model && e.dataset == dataset && e.rows.as_ref() == Some(&part.rows)
        })
    });
    match theirs.as_ref().and_then(|e| different_input(first, e)) {
        Some((field, ours, theirs)) => Error::input(
            at,
            format!(
                "`{model}` on `{dataset}`: shard {} has {field} `{ours}` and shard {} `{theirs}`: \
                 run every shard on the same files with the same settings",
                first_shard.name, shard.name
            ),
        ),
        None => written_meanwhile(shard),
    }
}

/// The inputs and result-changing settings two parts of a pair must agree on, as text.
pub(super) fn agreed_on(e: &Evaluation) -> [(&'static str, String); 9] {
    [
        ("model sha256", e.model_sha256.clone()),
        ("model card settings", e.model_setup.clone()),
        ("manifest sha256", e.manifest_sha256.clone()),
        ("preprocessing", e.preprocess.key()),
        ("border", e.border.to_string()),
        ("scoring", format!("{} {:?}", e.scoring, e.views)),
        ("execution provider", e.provider.clone()),
        ("batch size", e.batch_size.to_string()),
        // fp32, TF32 and fp16 logits differ in the last bits, enough to flip near ties.
        ("precision (--tf32, --fp16)", e.execution.precision.clone()),
    ]
}

/// sha256 of `agreed_on`, each value closed by a NUL.
pub(super) fn inputs_digest(e: &Evaluation) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (_, value) in agreed_on(e) {
        h.update(value.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// The first input or result-changing setting two parts of a pair disagree on, if any, with
/// both values. The execution provider and the batch size change the kernels ONNX Runtime runs
/// and so the last digits of the logits (a near-tie can flip): parts must agree on them too.
pub(super) fn different_input(
    a: &Evaluation,
    b: &Evaluation,
) -> Option<(&'static str, String, String)> {
    agreed_on(a)
        .into_iter()
        .zip(agreed_on(b))
        .find(|((_, x), (_, y))| x != y)
        .map(|((field, x), (_, y))| (field, x, y))
}
