//! `bench`, `manifest`, `models` and `doctor`: the tools around a run.

use super::*;

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
    let mut model = card::discover(std::slice::from_ref(&args.model), &mut |w| {
        eprintln!("warning: {w}")
    })?
    .remove(0);
    // The spec `run` gives the model on a dataset with this `resize` mode.
    model.preprocess = args.resize.apply(model.preprocess);
    let work = tempfile::tempdir().map_err(|e| Error::Other(e.to_string()))?;
    let f = robust_eval::pipeline::bench::measure(
        &images,
        &model,
        args.batch_size.max(1),
        args.shared_models,
        args.inference_workers.map_or(0, |n| n as usize),
        &robust_eval::pipeline::bench::BenchProvider {
            provider: args.provider.into(),
            gpu: args.gpu.options(),
        },
        work.path(),
    )?;
    if args.json {
        println!("{}", to_json(&f)?);
    } else {
        println!(
            "{} images, model {} (resize {}: {} → {}), batch {}, {} inference threads in {} worker(s), {} cores, ONNX Runtime {} ({})",
            f.images,
            model.name,
            args.resize,
            model.preprocess.resize,
            model.preprocess.crop,
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
        if f.inference_workers == 1 {
            // The GPU-like plan: end to end is the loader's throughput when inference is cheap.
            let decode = f.loader_threads as f64 * f.decode_per_core;
            println!(
                "  loader              {:>8.1} images/s = {:.0} % of decode alone on {} loader threads ({:.1} images/s)",
                f.end_to_end,
                100.0 * f.end_to_end / decode,
                f.loader_threads,
                decode
            );
        }
        match f.gpu_busy {
            Some(busy) => println!(
                "  GPU busy            {:>8.0} % of the end-to-end pass ({:.1} s of {:.1} s; {})",
                100.0 * busy,
                busy * f.one_model_seconds,
                f.one_model_seconds,
                f.gpu_busy_note
            ),
            None => println!("  GPU busy time       {}", f.gpu_busy_note),
        }
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
    if args.layout == crate::cli::choices::LayoutArg::ImagenetC {
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
pub(super) fn build_corruption_manifests(args: &ManifestArgs) -> Result<ExitCode, Error> {
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
