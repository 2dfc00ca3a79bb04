//! `slurm` and `kubernetes`: a run cut into shards for a scheduler, and the merge after it.

use super::*;

/// The `run` arguments a scheduler's tasks will pass, checked as `run` parses them (a typo fails
/// here, not in N tasks on the cluster), and the results folder they name.
pub(super) fn sharded_run(
    shards: u32,
    program: String,
    run: &[String],
    engine_job: scale::EngineJob,
    gpus: bool,
) -> Result<ShardedRun, Error> {
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
    sharded.engine_job = engine_job.wanted(parsed.run.provider.into(), gpus)?;
    Ok(sharded)
}

/// The flags among `run` arguments that `merge` takes too, with their values: the analysis flags
/// (FitArgs's) and --allow-failures. Which flags exist and which take a value is read from clap's
/// own definitions, so a flag added later is not missed.
pub(super) fn merge_flags(run: &[String]) -> Vec<String> {
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

pub(super) fn absolute(path: &std::path::Path) -> Result<std::path::PathBuf, Error> {
    std::path::absolute(path).map_err(|e| Error::io(path, e))
}

pub fn run_slurm(args: SlurmArgs) -> Result<ExitCode, Error> {
    let program = match &args.program {
        Some(p) => absolute(p)?,
        None => std::env::current_exe().map_err(|e| Error::io("robust-eval", e))?,
    };
    let workdir = absolute(std::path::Path::new("."))?;
    let gpus = args.gpus_per_task.is_some_and(|g| g > 0);
    let mut run = sharded_run(
        args.shards,
        program.display().to_string(),
        &args.run,
        args.engine_job.into(),
        gpus,
    )?;
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
    if let Some(engines) = &scripts.engines {
        println!(
            "wrote {}: the engine job, which builds every model's TensorRT engine once before the \
             shards start (--engine-job no leaves it out)",
            engines.display()
        );
    }
    match submitted {
        Some(s) => {
            if let Some(engines) = &s.engines_job {
                println!(
                    "submitted the engine job as job {engines} (log {}/engines-<job>.out); the \
                     array starts once it succeeded",
                    slurm::dir(&run).display()
                );
            }
            println!(
                "submitted the shards as array job {} (logs {}/shard-<task>.out) and the merge as \
                 job {}, which starts when every task has succeeded; results in {}",
                s.array_job,
                slurm::dir(&run).display(),
                s.merge_job,
                run.out.display()
            )
        }
        None => println!("submit them with:\n  {}", commands.join("\n  ")),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_kubernetes(args: KubernetesArgs) -> Result<ExitCode, Error> {
    let gpus = args.gpus.is_some_and(|g| g > 0);
    let run = sharded_run(
        args.shards,
        args.program.clone(),
        &args.run,
        args.engine_job.into(),
        gpus,
    )?;
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
    if let Some(engines) = &manifests.engines {
        println!(
            "wrote {}: the engine Job, which builds every model's TensorRT engine once; run.sh \
             applies it first and starts the shards once it completed (--engine-job no leaves it \
             out)",
            engines.display()
        );
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
