//! `fit`, `plot`, `report`, `prune` and `gate`: the commands that read a results folder.

use super::*;

pub(super) fn settings_of(args: &FitArgs) -> AnalysisSettings {
    AnalysisSettings {
        transform: args.transform.into(),
        id: args.id.clone(),
        baseline: args.baseline.clone(),
        cloud: args.baseline_cloud.clone(),
        resamples: args.bootstrap,
        seed: args.seed,
        label_points: args.labels,
        split_a: args.split_a.clone(),
        held_out: args.held_out.clone(),
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
    robust_eval::files::write_atomic(&path, text.as_bytes())?;
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
    rules.max_mce_rise = args.max_mce_rise.unwrap_or(rules.max_mce_rise);
    rules.alpha = args.alpha.unwrap_or(rules.alpha);
    rules.ignore_significance |= args.ignore_significance;
    rules.accuracy_only |= args.accuracy_only;
    rules.allow_missing |= args.allow_missing;
    if args.estimate.is_some() {
        rules.estimate = args.estimate.clone();
    }
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
        robust_eval::files::write_atomic(path, gate::markdown(&report).as_bytes())?;
    }
    if let Some(path) = &args.junit {
        robust_eval::files::write_atomic(path, gate::junit(&report).as_bytes())?;
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
