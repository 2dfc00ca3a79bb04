//! `interpolate` and `soup`: new models made from exported ones.

use super::*;

pub(super) fn ingredient(path: &std::path::Path) -> Result<Ingredient, Error> {
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

pub(super) fn soup_run_settings(args: &SoupArgs) -> RunSettings {
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

pub(super) fn print_greedy(r: &soup::GreedyRecord) {
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
