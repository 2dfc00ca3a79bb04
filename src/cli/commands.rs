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
use robust_eval::engine::evaluate::{self, RunSettings};
use robust_eval::engine::pixels::ImageLimits;
use robust_eval::engine::runtime::SessionSettings;
use robust_eval::engine::shard::Shard;
use robust_eval::engine::{doctor, progress};
use robust_eval::input::suite::Suite;
use robust_eval::input::{card, manifest};
use robust_eval::interventions::{self, soup, Ingredient};
use robust_eval::results::store::{kept_from_earlier, LatestRun, ResultsStore};
use robust_eval::scale::kubernetes::{self, KubernetesOptions};
use robust_eval::scale::slurm::{self, SlurmOptions};
use robust_eval::scale::{self, ShardedRun};
use robust_eval::Error;

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

fn settings_of(args: &FitArgs) -> AnalysisSettings {
    AnalysisSettings {
        transform: args.transform.into(),
        id: args.id.clone(),
        baseline: args.baseline.clone(),
        cloud: args.baseline_cloud.clone(),
        resamples: args.bootstrap,
        seed: args.seed,
        label_points: args.labels,
        split_a: args.split_a.clone(),
    }
}

pub fn run_fit(args: FitCommand) -> Result<ExitCode, Error> {
    let a = analysis::analyse(&args.results, &settings_of(&args.fit))?;
    a.write_fit()?;
    for note in &a.fit.notes {
        eprintln!("note: {note}");
    }
    for c in &a.fit.cautions {
        eprintln!("caution: {c}");
    }
    if args.json {
        println!("{}", a.fit_json()?);
    } else {
        println!(
            "{:<30} {:<30} {:>5} {:>9} {:>10} {:>7}",
            "shift", "ID dataset", "n", "slope", "intercept", "R²"
        );
        for s in &a.fit.shifts {
            println!(
                "{:<30} {:<30} {:>5} {:>9.4} {:>10.4} {:>7.4}{}",
                s.shift,
                s.id_dataset,
                s.line.n,
                s.line.slope,
                s.line.intercept,
                s.line.r2,
                if s.linear {
                    ""
                } else {
                    "  (not linear: see fit.json)"
                }
            );
        }
        eprintln!(
            "wrote {} and {}",
            args.results.join("fit.json").display(),
            args.results.join("robustness.csv").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_plot(args: PlotCommand) -> Result<ExitCode, Error> {
    let a = analysis::analyse(&args.results, &settings_of(&args.fit))?;
    for file in a.write_plots(args.fit.labels)? {
        println!("{}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_report(args: ReportCommand) -> Result<ExitCode, Error> {
    // Any number of models: the accuracy tables always, the fit and ER where they can be made.
    let a = analysis::analyse_accuracies(&args.results, &settings_of(&args.fit))?;
    for c in &a.fit.cautions {
        eprintln!("caution: {c}");
    }
    let format: Format = args.format.into();
    let (name, text) = match format {
        Format::Md => ("report.md", a.report(Format::Md)),
        Format::Html => ("report.html", a.report(Format::Html)),
        Format::Json => ("report.json", a.report(Format::Json)),
    };
    let path = args.results.join(name);
    robust_eval::results::store::write_atomic(&path, text.as_bytes())?;
    if format == Format::Html {
        println!("{}", path.display());
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_prune(args: PruneArgs) -> Result<ExitCode, Error> {
    if !args.results.join("evals.csv").is_file() {
        return Err(Error::Usage(format!(
            "--results {}: no evals.csv there (is it a results folder?)",
            args.results.display()
        )));
    }
    let removed = {
        let mut store = ResultsStore::open_to_write(&args.results)?;
        store.prune(&args.models)?
    };
    for (model, rows) in &removed {
        println!("removed {model}: {rows} rows of evals.csv, its predictions and run.json entries");
    }
    analyse_after_run(&args.fit, false, &args.results);
    Ok(ExitCode::SUCCESS)
}

pub fn run_gate(args: GateArgs) -> Result<ExitCode, Error> {
    let mut rules = match &args.config {
        Some(path) => gate::Rules::load(path)?,
        None => gate::Rules::default(),
    };
    rules.max_drop = args.max_drop.unwrap_or(rules.max_drop);
    rules.max_er_drop = args.max_er_drop.unwrap_or(rules.max_er_drop);
    rules.max_average_er_drop = args
        .max_average_er_drop
        .unwrap_or(rules.max_average_er_drop);
    rules.alpha = args.alpha.unwrap_or(rules.alpha);
    rules.ignore_significance |= args.ignore_significance;
    rules.accuracy_only |= args.accuracy_only;
    rules.allow_missing |= args.allow_missing;
    if !(rules.alpha > 0.0 && rules.alpha < 1.0) {
        return Err(Error::Usage(format!(
            "--alpha {}: must lie between 0 and 1",
            rules.alpha
        )));
    }
    let pairs = args
        .pair
        .iter()
        .map(|p| match p.split_once('=') {
            Some((b, c)) if !b.is_empty() && !c.is_empty() => Ok((b.to_string(), c.to_string())),
            _ => Err(Error::Usage(format!(
                "--pair {p}: expected BASELINE=CANDIDATE"
            ))),
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let report = gate::compare(&args.baseline, &args.candidate, &pairs, &rules)?;
    if let Some(path) = &args.markdown {
        robust_eval::results::store::write_atomic(path, gate::markdown(&report).as_bytes())?;
    }
    if let Some(path) = &args.junit {
        robust_eval::results::store::write_atomic(path, gate::junit(&report).as_bytes())?;
    }
    if args.json {
        println!("{}", to_json(&report)?);
    } else {
        print!("{}", gate::table(&report));
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn run_bench(args: BenchArgs) -> Result<ExitCode, Error> {
    if let Some(threads) = args.threads {
        robust_eval::engine::runtime::set_inference_threads(threads);
    }
    let mut images: Vec<std::path::PathBuf> = std::fs::read_dir(&args.images)
        .map_err(|e| Error::io(&args.images, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && robust_eval::input::manifest::is_image(p))
        .collect();
    images.sort();
    images.truncate(args.limit);
    let model = card::discover(std::slice::from_ref(&args.model), &mut |w| {
        eprintln!("warning: {w}")
    })?
    .remove(0);
    let work = tempfile::tempdir().map_err(|e| Error::Other(e.to_string()))?;
    let f = robust_eval::engine::bench::measure(
        &images,
        &model,
        args.batch_size.max(1),
        args.shared_models,
        args.inference_workers.map_or(0, |n| n as usize),
        &robust_eval::engine::bench::BenchProvider {
            provider: args.provider.into(),
            gpu: args.gpu.options(),
        },
        work.path(),
    )?;
    if args.json {
        println!("{}", to_json(&f)?);
    } else {
        println!(
            "{} images, model {}, batch {}, {} inference threads in {} worker(s), {} cores, ONNX Runtime {} ({})",
            f.images,
            model.name,
            f.batch_size,
            f.threads,
            f.inference_workers,
            f.cores,
            f.onnxruntime,
            f.provider
        );
        println!(
            "  decode alone        {:>8.1} images/s per core",
            f.decode_per_core
        );
        println!(
            "  preprocessing       {:>8.1} images/s per core ({:.0} % of decode)",
            f.preprocess_per_core,
            100.0 * f.preprocess_per_core / f.decode_per_core
        );
        println!("  inference alone     {:>8.1} images/s", f.inference);
        println!(
            "  end to end          {:>8.1} images/s ({:.0} % of the {:.1} images/s limit; {})",
            f.end_to_end,
            100.0 * f.end_to_end / f.limit,
            f.limit,
            f.bound_detail
        );
        if f.shared_models > 1 {
            println!(
                "  {} models sharing   {:>8.1} s (one model {:.1} s; budget {:.1} s = one model + {} x inference alone x 1.1: {:.0} % of it)",
                f.shared_models,
                f.shared_seconds,
                f.one_model_seconds,
                f.shared_budget_seconds,
                f.shared_models - 1,
                100.0 * f.shared_seconds / f.shared_budget_seconds
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn build_manifest(args: ManifestArgs) -> Result<ExitCode, Error> {
    if args.layout == super::choices::LayoutArg::ImagenetC {
        return build_corruption_manifests(&args);
    }
    let scan = manifest::scan(args.layout.into(), &args.root, args.ground_truth.as_deref())?;
    match (scan.form, &args.ground_truth) {
        (Some(form), Some(gt)) => eprintln!("ground truth {}: read as {form}", gt.display()),
        (Some(form), None) => eprintln!("{}: {form}", args.root.display()),
        _ => {}
    }
    manifest::write(&scan.rows, &args.out)?;
    eprintln!("wrote {} ({} images)", args.out.display(), scan.rows.len());
    Ok(ExitCode::SUCCESS)
}

/// `manifest imagenet-c`: every corruption-severity's manifest under the data root `--out`, after
/// the whole tree has been read and checked.
fn build_corruption_manifests(args: &ManifestArgs) -> Result<ExitCode, Error> {
    use robust_eval::input::corruptions;
    if args.ground_truth.is_some() {
        return Err(Error::Usage(
            "--ground-truth is for flat ImageNet val files, not imagenet-c".into(),
        ));
    }
    let tree = corruptions::scan(&args.root)?;
    for line in corruptions::describe(&tree) {
        eprintln!("{line}");
    }
    let written = corruptions::write(&tree, &args.out)?;
    let images: usize = written.iter().map(|(_, n)| n).sum();
    eprintln!(
        "wrote {} manifests ({images} images) under {}",
        written.len(),
        args.out.join(corruptions::DATA_FOLDER).display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_models(args: ModelsArgs) -> Result<ExitCode, Error> {
    let listing = robust_eval::engine::models::check(&args.models)?;
    if args.json {
        println!("{}", to_json(&listing)?);
    } else {
        print!("{}", robust_eval::engine::models::render(&listing));
    }
    Ok(if listing.invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn run_doctor(args: DoctorArgs) -> Result<ExitCode, Error> {
    let report = doctor::diagnose();
    if args.json {
        println!("{}", to_json(&report)?);
    } else {
        print!("{}", doctor::render(&report));
    }
    Ok(if report.library.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn ingredient(path: &std::path::Path) -> Result<Ingredient, Error> {
    Ingredient::load(path, &mut |w| eprintln!("warning: {w}"))
}

pub fn run_interpolate(args: InterpolateArgs) -> Result<ExitCode, Error> {
    let settings = interventions::InterpolateSettings {
        alphas: interventions::parse_alphas(&args.alphas).map_err(Error::Usage)?,
        out: args.out.clone(),
        family: args.family.clone(),
        group: args.group.clone(),
    };
    let (a, b) = (ingredient(&args.zero_shot)?, ingredient(&args.fine_tuned)?);
    if let Some(w) = interventions::folded_warning(&[&a, &b]) {
        eprintln!("warning: {w}");
    }
    let written = interventions::interpolate(&a, &b, &settings)?;
    if args.json {
        println!("{}", to_json(&written)?);
    } else {
        println!("{:>8}  {:<40} card", "alpha", "model");
        for w in &written {
            println!(
                "{:>8}  {:<40} {}",
                w.alpha.map(interventions::alpha_label).unwrap_or_default(),
                w.name,
                w.card.display()
            );
        }
        eprintln!(
            "wrote {} models to {}; evaluate them with `robust-eval run --models {}`",
            written.len(),
            args.out.display(),
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_soup(args: SoupArgs) -> Result<ExitCode, Error> {
    let parts = args
        .models
        .iter()
        .map(|p| ingredient(p))
        .collect::<Result<Vec<_>, Error>>()?;
    if let Some(w) = interventions::folded_warning(&parts.iter().collect::<Vec<_>>()) {
        eprintln!("warning: {w}");
    }
    let default_name = if args.greedy {
        "greedy-soup"
    } else {
        "uniform-soup"
    };
    let settings = soup::SoupSettings {
        out: args.out.clone(),
        name: args.name.clone().unwrap_or_else(|| default_name.into()),
        group: args.group.clone(),
    };
    let (Some(suite), Some(held_out)) = (&args.suite, &args.held_out) else {
        let written = soup::uniform(&parts, &settings)?;
        if args.json {
            println!("{}", to_json(&written)?);
        } else {
            println!(
                "{} ({} models averaged)",
                written.card.display(),
                parts.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    if let Some(threads) = args.threads {
        robust_eval::engine::runtime::set_inference_threads(threads);
    }
    let suite = Suite::find(suite)?;
    if let Some(w) = soup::id_warning(&suite, held_out) {
        eprintln!("warning: {w}");
    }
    let progress = progress::make(args.progress.into());
    let greedy = soup::Greedy {
        suite: &suite,
        held_out: held_out.clone(),
        run: soup_run_settings(&args),
        progress: progress.as_ref(),
    };
    let record = soup::greedy(&parts, &settings, &greedy)?;
    if args.json {
        println!("{}", to_json(&record)?);
    } else {
        print_greedy(&record);
    }
    Ok(ExitCode::SUCCESS)
}

fn soup_run_settings(args: &SoupArgs) -> RunSettings {
    let out = args.out.join("greedy-results");
    RunSettings {
        data_root: args.data_root.clone(),
        datasets: Vec::new(),
        batch_size: args.batch_size as usize,
        loader_threads: robust_eval::engine::cores(),
        prefetch: 2,
        inference_workers: 0,
        session: SessionSettings {
            provider: args.provider.into(),
            trt_cache: out.join("tensorrt-cache"),
            ..Default::default()
        },
        force: false,
        out,
        shard: None,
        memory_budget: None,
    }
}

fn print_greedy(r: &soup::GreedyRecord) {
    println!("held-out top-1 on `{}` (suite {}):", r.held_out, r.suite);
    for c in &r.candidates {
        println!("  {:<40} {:>7.2} %", c.model, c.held_out_top1);
    }
    println!("greedy steps (best first; kept when the soup's top-1 does not drop):");
    for s in &r.steps {
        println!(
            "  + {:<38} soup of {} {:>7.2} %  {}",
            s.candidate,
            s.soup.len(),
            s.soup_top1,
            if s.kept { "kept" } else { "dropped" }
        );
    }
    println!(
        "soup: {} ({} of {} models, held-out top-1 {:.2} %) -> {}",
        r.name,
        r.kept.len(),
        r.candidates.len(),
        r.held_out_top1,
        r.model.card.display()
    );
    if let Some(w) = &r.warning {
        eprintln!("warning: {w}");
    }
}

/// The `run` arguments a scheduler's tasks will pass, checked as `run` parses them (a typo fails
/// here, not in N tasks on the cluster), and the results folder they name.
fn sharded_run(shards: u32, program: String, run: &[String]) -> Result<ShardedRun, Error> {
    scale::refuse_shard_flags(run)?;
    let line = std::iter::once("robust-eval run").chain(run.iter().map(String::as_str));
    let parsed = RunCommandLine::try_parse_from(line).map_err(|e| {
        Error::Usage(format!(
            "the run arguments after `--`: {}",
            e.render().to_string().trim_start_matches("error: ")
        ))
    })?;
    let out = match &parsed.run.out {
        Some(out) => out.clone(),
        None => {
            let suite = Suite::find(&parsed.run.suite).map_err(|e| {
                Error::Usage(format!(
                    "{e} (read to name the default results folder; or pass --out in the run arguments)"
                ))
            })?;
            results_folder(&parsed.run, &suite)
        }
    };
    let mut sharded = ShardedRun::new(shards, program, run.to_vec(), out)?;
    sharded.merge_args = merge_flags(run);
    Ok(sharded)
}

/// The flags among `run` arguments that `merge` takes too, with their values: the analysis flags
/// (FitArgs's) and --allow-failures. Which flags exist and which take a value is read from clap's
/// own definitions, so a flag added later is not missed.
fn merge_flags(run: &[String]) -> Vec<String> {
    use clap::Args;
    let longs = |cmd: clap::Command| -> Vec<(String, bool)> {
        cmd.get_arguments()
            .filter_map(|a| {
                let takes_value = a.get_action().takes_values();
                a.get_long().map(|l| (format!("--{l}"), takes_value))
            })
            .collect()
    };
    let fit = longs(FitArgs::augment_args(clap::Command::new("fit")));
    let all = longs(RunArgs::augment_args(clap::Command::new("run")));
    let mut kept = Vec::new();
    let mut words = run.iter();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, _)) => (flag, true),
            None => (word.as_str(), false),
        };
        let Some((_, takes_value)) = all.iter().find(|(l, _)| l == flag) else {
            continue;
        };
        let value = if *takes_value && !inline {
            words.next()
        } else {
            None
        };
        if flag == "--allow-failures" || fit.iter().any(|(l, _)| l == flag) {
            kept.push(word.clone());
            kept.extend(value.cloned());
        }
    }
    kept
}

fn absolute(path: &std::path::Path) -> Result<std::path::PathBuf, Error> {
    std::path::absolute(path).map_err(|e| Error::io(path, e))
}

pub fn run_slurm(args: SlurmArgs) -> Result<ExitCode, Error> {
    let program = match &args.program {
        Some(p) => absolute(p)?,
        None => std::env::current_exe().map_err(|e| Error::io("robust-eval", e))?,
    };
    let workdir = absolute(std::path::Path::new("."))?;
    let mut run = sharded_run(args.shards, program.display().to_string(), &args.run)?;
    run.out = absolute(&run.out)?;
    let options = SlurmOptions {
        job_name: args.job_name,
        partition: args.partition,
        time: args.time,
        gpus_per_task: args.gpus_per_task,
        cpus_per_task: args.cpus_per_task,
        mem: args.mem,
        account: args.account,
        extra: args.sbatch,
    };
    let scripts = slurm::write(&run, &options, &workdir)?;
    let commands = slurm::commands(&scripts);
    let submitted = if args.submit {
        Some(slurm::submit(&scripts)?)
    } else {
        None
    };
    if args.json {
        let json = serde_json::json!({
            "scripts": scripts, "commands": commands, "submitted": submitted, "out": run.out
        });
        println!("{}", to_json(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "wrote {} ({} array tasks) and {}",
        scripts.shards.display(),
        run.shards,
        scripts.merge.display()
    );
    match submitted {
        Some(s) => println!(
            "submitted the shards as array job {} (logs {}/shard-<task>.out) and the merge as job {}, \
             which starts when every task has succeeded; results in {}",
            s.array_job,
            slurm::dir(&run).display(),
            s.merge_job,
            run.out.display()
        ),
        None => println!("submit them with:\n  {}", commands.join("\n  ")),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_kubernetes(args: KubernetesArgs) -> Result<ExitCode, Error> {
    let run = sharded_run(args.shards, args.program.clone(), &args.run)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| run.out.join("kubernetes"));
    let options = KubernetesOptions {
        name: args.name,
        image: args.image,
        volume_claim: args.volume_claim,
        mount: args.mount,
        gpus: args.gpus,
        cpus: args.cpus,
        memory: args.memory,
        retries: args.retries,
    };
    // The folders the pods write must be on the claim: checked before anything is written.
    kubernetes::check_on_volume("--out", &run.out, &options.mount)?;
    let line = std::iter::once("robust-eval run").chain(args.run.iter().map(String::as_str));
    if let Some(cache) = RunCommandLine::try_parse_from(line)
        .ok()
        .and_then(|p| p.run.trt_cache)
    {
        kubernetes::check_on_volume("--trt-cache", &cache, &options.mount)?;
    }
    let manifests = kubernetes::write(&run, &options, &dir)?;
    let commands = kubernetes::commands(&manifests);
    if args.json {
        let json = serde_json::json!({ "manifests": manifests, "commands": commands });
        println!("{}", to_json(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "wrote {} ({} indexed completions), {} and {}\n\
         run them with (Kubernetes {} or later; it applies the shards, waits until they complete \
         or one fails, then merges):\n  {}",
        manifests.shards.display(),
        run.shards,
        manifests.merge.display(),
        manifests.script.display(),
        kubernetes::MIN_KUBERNETES,
        commands.join("\n  ")
    );
    Ok(ExitCode::SUCCESS)
}
