//! Recording a finished (model, dataset) pair: its evals.csv row, failures and predictions,
//! stored atomically with the timings of the pass.

use super::*;

/// When a pass ran and what bounded it.
pub(super) struct Timing {
    pub(super) started: String,
    pub(super) finished: String,
    pub(super) seconds: f64,
    pub(super) bound: Boundedness,
}

/// Store one member's results of a pass; returns the line that summarises them.
pub(super) fn record_member(
    plan: &DatasetPlan,
    rows_read: &Range<usize>,
    member: &Member<'_>,
    tally: Vec<Tally>,
    failures: &[(usize, String)],
    timing: &Timing,
    store: &mut ResultsStore,
) -> Result<String> {
    let (seconds, loaded) = (timing.seconds, rows_read.len() as u64);
    let manifest_rows = manifest_span(plan, rows_read);
    let provider = member.provider.clone();
    let mut rows = Vec::new();
    let mut predictions = Vec::new();
    for (view, mut t) in plan.views.iter().zip(tally) {
        t.skipped = view.targets[manifest_rows.clone()]
            .iter()
            .filter(|t| t.is_none())
            .count() as u64;
        let labelled = view.labelled();
        t.predictions.unlabelled = !labelled;
        let mut row = EvalRow {
            labelled,
            model: member.card.name.clone(),
            group: member.card.group.clone(),
            dataset: view.name.clone(),
            n: 0,
            correct: 0,
            top1: 0.0,
            top5: None,
            top1_ci_low: 0.0,
            top1_ci_high: 0.0,
            failed: t.failed,
            skipped: t.skipped,
            provider: provider.clone(),
            seconds,
            images_per_s: if seconds > 0.0 {
                loaded as f64 / seconds
            } else {
                0.0
            },
        };
        let top5 = view.space.len(member.card.num_classes) >= 5;
        row.set_counts(t.n, t.correct, top5.then_some(t.correct5));
        rows.push(row);
        predictions.push((view.name.clone(), t.predictions));
    }
    let failure_rows: Vec<FailureRow> = failures
        .iter()
        .map(|(row, reason)| FailureRow {
            model: member.card.name.clone(),
            dataset: plan.dataset.name.clone(),
            index: *row as u64,
            path: plan.manifest.rows[*row].path.clone(),
            reason: reason.clone(),
        })
        .collect();
    let mut evaluation = member.evaluation.clone();
    evaluation.provider = provider.clone();
    evaluation.execution = member.execution.clone();
    evaluation.started = timing.started.clone();
    evaluation.finished = timing.finished.clone();
    evaluation.seconds = seconds;
    evaluation.waiting_for_images = timing.bound.waiting_fraction;
    let first = &rows[0];
    let summary = format!(
        "{} · {}: top-1 {:.2}% of {} images{}{} [{:.1}s, {:.0} images/s, {}]",
        member.card.name,
        plan.dataset.name,
        first.top1,
        first.n,
        if first.failed > 0 {
            format!(", {} failed", first.failed)
        } else {
            String::new()
        },
        if first.skipped > 0 {
            format!(", {} skipped (unmapped classes)", first.skipped)
        } else {
            String::new()
        },
        seconds,
        first.images_per_s,
        provider
    );
    store.record(evaluation, rows, failure_rows, predictions)?;
    Ok(summary)
}

/// The manifest rows a range of loaded rows spans, so that the skipped rows between them are
/// counted by exactly one shard: from the first loaded row (the manifest's start for the first
/// range) to the next range's first row (the manifest's end for the last).
pub(super) fn manifest_span(plan: &DatasetPlan, rows: &Range<usize>) -> Range<usize> {
    let at = |i: usize| match i {
        0 => 0,
        i if i >= plan.load.len() => plan.manifest.rows.len(),
        i => plan.load[i],
    };
    at(rows.start)..at(rows.end)
}
