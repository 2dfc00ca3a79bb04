//! One function per subcommand: read the arguments, call the library, print and pick the exit code.

use std::process::ExitCode;

use clap::Parser;

use super::args::{
    BenchArgs, DoctorArgs, FitArgs, FitCommand, GateArgs, InterpolateArgs, KubernetesArgs,
    ManifestArgs, MergeArgs, ModelsArgs, PlotCommand, PruneArgs, ReportCommand, RunArgs,
    RunCommandLine, SlurmArgs, SoupArgs,
};
use super::summary;
use robust_eval::analysis::gate;
use robust_eval::analysis::report::Format;
use robust_eval::analysis::{self, AnalysisSettings};
use robust_eval::engine::pixels::ImageLimits;
use robust_eval::engine::runtime::SessionSettings;
use robust_eval::engine::shard::Shard;
use robust_eval::engine::{doctor, progress};
use robust_eval::input::suite::Suite;
use robust_eval::input::{card, manifest};
use robust_eval::interventions::{self, soup, Ingredient};
use robust_eval::pipeline::engines;
use robust_eval::pipeline::evaluate::{self, RunSettings};
use robust_eval::results::store::{kept_from_earlier, LatestRun, ResultsStore};
use robust_eval::scale::kubernetes::{self, KubernetesOptions};
use robust_eval::scale::slurm::{self, SlurmOptions};
use robust_eval::scale::{self, ShardedRun};
use robust_eval::Error;

mod analysis_commands;
mod intervention_commands;
mod scale_commands;
mod tool_commands;

pub use analysis_commands::*;
pub use intervention_commands::*;
pub use scale_commands::*;
pub use tool_commands::*;

fn to_json(value: &impl serde::Serialize) -> Result<String, Error> {
    serde_json::to_string_pretty(value).map_err(|e| Error::Other(e.to_string()))
}

pub fn run(args: RunArgs) -> Result<ExitCode, Error> {
    if let Some(threads) = args.threads {
        robust_eval::engine::runtime::set_inference_threads(threads);
    }
    robust_eval::engine::pixels::set_image_limits(ImageLimits {
        max_file_bytes: args.max_image_mb.saturating_mul(1 << 20),
        max_pixels: args.max_image_pixels,
    });
    let suite = Suite::find(&args.suite)?;
    let progress = progress::make(args.progress.into());
    let model_paths = match (&args.models[..], &suite.models) {
        ([], Some(p)) => vec![p.clone()],
        ([], None) => {
            return Err(Error::Usage(format!(
                "suite `{}` brings no models: pass --models PATH",
                suite.name
            )))
        }
        (given, _) => given.to_vec(),
    };
    // Printed whatever --progress says: an assumed preprocessing changes the results.
    let models = card::discover(&model_paths, &mut |w| eprintln!("warning: {w}"))?;
    let settings = run_settings(&args, &suite)?;
    if args.engines_only {
        return build_engines(&args, &models, &settings);
    }
    let summary = evaluate::run(&suite, &models, &settings, progress.as_ref())?;
    print_evaluation(&args, &settings.out, &models, &summary)?;
    if settings.shard.is_none() {
        note_kept_results(&settings.out, &models, &summary)?;
    }
    match settings.shard {
        // A shard's results are a part: the fit and reports come from the merged folder.
        Some(shard) => eprintln!(
            "shard {} of {} stored in {}; when every shard is done: robust-eval merge {}",
            shard.index,
            shard.count,
            settings.out.display(),
            results_folder(&args, &suite).display()
        ),
        None => analyse_after_run(&args.fit, args.json, &settings.out),
    }
    if summary.failed_images > args.allow_failures {
        eprintln!(
            "error: {} images could not be read (listed in {}); pass --allow-failures N to accept up to N",
            summary.failed_images,
            settings.out.join("failures.csv").display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `run --engines-only`: every model's TensorRT engine built into the study's cache
/// (`pipeline::engines::build_for_study`), nothing evaluated.
fn build_engines(
    args: &RunArgs,
    models: &[card::ModelCard],
    settings: &RunSettings,
) -> Result<ExitCode, Error> {
    let session = SessionSettings {
        batch_size: settings.batch_size,
        ..settings.session.clone()
    };
    let study = settings.session.trt_cache.clone();
    let own = match &args.trt_cache {
        Some(_) => study.clone(),
        None => settings.out.join("engine-build").join("tensorrt-cache"),
    };
    let mut note = |line: String| eprintln!("{line}");
    let built = engines::build_for_study(models, &session, &own, &study, &mut note)?;
    if args.json {
        println!("{}", to_json(&built)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &built.skipped {
        Some(why) => println!("no TensorRT engines built: {why}"),
        None => println!(
            "TensorRT engines of {} models built or loaded; {} new engine files published to {}, \
             which every shard loads them from",
            built.models.len(),
            built.published,
            built.cache.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's results folder (a shard writes a folder inside it).
fn results_folder(args: &RunArgs, suite: &Suite) -> std::path::PathBuf {
    args.out
        .clone()
        .unwrap_or_else(|| std::path::Path::new("results").join(&suite.name))
}

fn run_settings(args: &RunArgs, suite: &Suite) -> Result<RunSettings, Error> {
    let shard = match &args.shard {
        Some(text) => Some(Shard::parse(text, args.shard_count)?),
        None => None,
    };
    // A shard's own folder, TensorRT cache included: ONNX Runtime writes engines in place, so
    // shards sharing a cache could read one another's half-written engine. A shard builds only
    // the engines of the models it has work for; finished engines are shared with the other
    // shards through <out>/tensorrt-cache (`shared_engines`).
    let out = match shard {
        Some(shard) => shard.folder(&results_folder(args, suite)),
        None => results_folder(args, suite),
    };
    Ok(RunSettings {
        data_root: args.data_root.clone(),
        datasets: args.datasets.clone(),
        batch_size: args.batch_size as usize,
        loader_threads: args
            .loader_threads
            .unwrap_or_else(robust_eval::engine::cores),
        prefetch: args.prefetch,
        inference_workers: args.inference_workers.map_or(0, |n| n as usize),
        session: SessionSettings {
            provider: args.provider.into(),
            trt_cache: args
                .trt_cache
                .clone()
                .unwrap_or_else(|| out.join("tensorrt-cache")),
            gpu: args.gpu.options(),
            ..Default::default()
        },
        force: args.force,
        out,
        shard,
        memory_budget: args.memory_budget,
    })
}

/// The run's models' rows of evals.csv: a table, or JSON with the run's summary.
fn print_evaluation(
    args: &RunArgs,
    out: &std::path::Path,
    models: &[card::ModelCard],
    summary: &evaluate::RunSummary,
) -> Result<(), Error> {
    let store = ResultsStore::open(out)?;
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let rows: Vec<_> = store
        .evals
        .iter()
        .filter(|r| names.contains(&r.model.as_str()))
        .collect();
    if args.json {
        let json = serde_json::json!({ "summary": summary, "evals": rows });
        println!("{}", to_json(&json)?);
        return Ok(());
    }
    let mut datasets: Vec<String> = Vec::new();
    for r in &rows {
        if !datasets.contains(&r.dataset) {
            datasets.push(r.dataset.clone());
        }
    }
    print!(
        "{}",
        summary::top1_table(&rows, &datasets, summary::terminal_width())
    );
    println!(
        "\n{} pairs evaluated, {} up to date; results in {}",
        summary.evaluated.len(),
        summary.up_to_date.len(),
        out.display()
    );
    Ok(())
}

/// Record what this run evaluated in run.json and name what the folder kept from earlier runs:
/// those rows are in the fit, plots, reports and gate as much as this run's.
fn note_kept_results(
    out: &std::path::Path,
    models: &[card::ModelCard],
    summary: &evaluate::RunSummary,
) -> Result<(), Error> {
    let mut store = ResultsStore::open_to_write(out)?;
    let pairs: Vec<&(String, String)> = summary
        .evaluated
        .iter()
        .chain(&summary.up_to_date)
        .collect();
    let mut datasets: Vec<String> = Vec::new();
    for e in &store.run.evaluations {
        if pairs.iter().any(|(m, d)| m == &e.model && d == &e.dataset) {
            datasets.push(e.dataset.clone());
            datasets.extend(e.views.iter().cloned());
        }
    }
    datasets.extend(pairs.iter().map(|(_, d)| d.clone()));
    datasets.sort();
    datasets.dedup();
    let latest = LatestRun {
        models: models.iter().map(|m| m.name.clone()).collect(),
        datasets,
    };
    let rows: Vec<(String, String)> = store
        .evals
        .iter()
        .map(|r| (r.model.clone(), r.dataset.clone()))
        .collect();
    let kept = kept_from_earlier(&rows, &latest);
    if store.run.latest_run.as_ref() != Some(&latest) {
        store.run.latest_run = Some(latest);
        store.save_run()?;
    }
    if !kept.is_empty() {
        // Printed whatever --progress says: it changes what the fit and reports mean.
        eprintln!(
            "kept from earlier runs: {kept}. They are in the fit, plots, reports and gate; \
             remove a model with `robust-eval prune --results {} --models NAME`",
            out.display()
        );
    }
    Ok(())
}

/// Fit, plots and reports after a run, then the headline. The evaluation is stored and the
/// analysis can be redone with `fit`/`plot`/`report`, so one that cannot be made (too few
/// models, say) is a warning, not a failed run.
fn analyse_after_run(fit: &FitArgs, json: bool, out: &std::path::Path) {
    super::estimate::estimate_after_run(out);
    match analysis::analyse(out, &settings_of(fit)).and_then(|a| {
        let mut files = a.write_fit()?;
        // A redraw keeps the labels the charts were last drawn with.
        files.extend(a.write_plots(fit.labels || analysis::labels_kept(out))?);
        files.extend(a.write_reports()?);
        for note in &a.fit.notes {
            eprintln!("note: {note}");
        }
        Ok((files, a.headline(3)))
    }) {
        Ok((files, headline)) => {
            eprintln!(
                "fit, plots and reports: {} files in {}",
                files.len(),
                out.display()
            );
            // The result without opening a file (stdout stays pure JSON with --json).
            if !json {
                print!("\n{headline}");
            }
        }
        Err(e) => {
            // Too few models to fit: the reports still show the accuracy tables.
            let reports = analysis::analyse_accuracies(out, &settings_of(fit))
                .and_then(|a| a.write_reports());
            match reports {
                Ok(files) => eprintln!(
                    "warning: no fit or plots: {e}; the reports ({} files in {}) hold the accuracy \
                     tables (evaluation results are stored)",
                    files.len(),
                    out.display()
                ),
                Err(_) => eprintln!(
                    "warning: no fit, plots or report: {e} (evaluation results are stored)"
                ),
            }
        }
    }
}

pub fn run_merge(args: MergeArgs) -> Result<ExitCode, Error> {
    let dirs = (!args.shards.is_empty()).then_some(&args.shards[..]);
    let summary = robust_eval::results::merge::merge(&args.out, dirs)?;
    if args.json {
        println!("{}", to_json(&summary)?);
    } else {
        println!(
            "merged {} shards: {} pairs, {} rows of evals.csv, in {}",
            summary.shards,
            summary.pairs,
            summary.rows,
            summary.out.display()
        );
    }
    analyse_after_run(&args.fit, args.json, &args.out);
    if summary.failed_images > args.allow_failures {
        eprintln!(
            "error: {} images could not be read (listed in {}); pass --allow-failures N to accept up to N",
            summary.failed_images,
            args.out.join("failures.csv").display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
