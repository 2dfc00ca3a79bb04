//! Slurm: an sbatch array script (task I runs `run --shard auto`, which reads
//! SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT) and a merge script submitted with
//! `--dependency=afterok:<array job>`, so it starts once every task has succeeded. Where the
//! shards may run on TensorRT, an engine script (`run --engines-only`, one task with a shard's
//! resources) comes first, and the array is submitted with `--dependency=afterok:<engine job>`:
//! every engine is built once, by that job, and loaded by every shard. A failed engine job holds
//! the array (`--kill-on-invalid-dep=no`: pending, DependencyNeverSatisfied) rather than letting
//! every shard build the engines itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::{shell_line, shell_quote, ShardedRun};
use crate::error::{Error, Result};
use crate::files::write_atomic;

/// sbatch options the user chose; `None` leaves the cluster's default.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub job_name: String,
    pub partition: Option<String>,
    pub time: Option<String>,
    pub gpus_per_task: Option<u32>,
    pub cpus_per_task: Option<u32>,
    pub mem: Option<String>,
    pub account: Option<String>,
    /// More options for both scripts, each as sbatch takes it (`--qos=high`).
    pub extra: Vec<String>,
}

/// The scripts, written under `<out>/slurm/`.
#[derive(Debug, Clone, Serialize)]
pub struct Scripts {
    /// The engine job, where the study has one.
    pub engines: Option<PathBuf>,
    pub shards: PathBuf,
    pub merge: PathBuf,
}

/// Job ids sbatch gave.
#[derive(Debug, Clone, Serialize)]
pub struct Submitted {
    pub engines_job: Option<String>,
    pub array_job: String,
    pub merge_job: String,
}

/// The folder the scripts and the jobs' logs go to.
pub fn dir(run: &ShardedRun) -> PathBuf {
    run.out.join("slurm")
}

/// Writes `<out>/slurm/shards.sbatch` and `<out>/slurm/merge.sbatch`. `workdir` becomes each
/// job's `--chdir`, so relative paths in the run arguments mean what they meant here.
pub fn write(run: &ShardedRun, options: &SlurmOptions, workdir: &Path) -> Result<Scripts> {
    let dir = dir(run);
    let scripts = Scripts {
        engines: run.engine_job.then(|| dir.join("engines.sbatch")),
        shards: dir.join("shards.sbatch"),
        merge: dir.join("merge.sbatch"),
    };
    // All made before any is written: a refused value leaves no half set behind.
    let engines = match run.engine_job {
        true => Some(engines_script(run, options, workdir)?),
        false => None,
    };
    let (shards, merge) = (
        shards_script(run, options, workdir)?,
        merge_script(run, options, workdir)?,
    );
    if let (Some(path), Some(text)) = (&scripts.engines, engines) {
        write_atomic(path, text.as_bytes())?;
    }
    write_atomic(&scripts.shards, shards.as_bytes())?;
    write_atomic(&scripts.merge, merge.as_bytes())?;
    Ok(scripts)
}

/// The array script: one task per shard.
pub fn shards_script(run: &ShardedRun, options: &SlurmOptions, workdir: &Path) -> Result<String> {
    let log = log_path(&dir(run), "shard-%a.out")?;
    let mut lines = vec![
        directive("--job-name", &options.job_name)?,
        directive("--array", &format!("0-{}", run.shards - 1))?,
        directive("--output", &log)?,
        // A requeued task (preemption, node failure) appends to its log instead of truncating it.
        directive("--open-mode", "append")?,
        directive("--requeue", "")?,
        // One process per array task. Slurm refuses --gpus-per-task without a task count
        // ("--gpus-per-task used without either --gpus or -n/--ntasks is not allowed").
        directive("--ntasks", "1")?,
    ];
    if run.engine_job {
        // Submitted after the engine job (afterok): if it fails, the array stays pending
        // (DependencyNeverSatisfied) whatever the cluster's default, for the user to mend.
        lines.push(directive("--kill-on-invalid-dep", "no")?);
    }
    lines.extend(common(options, workdir)?);
    if let Some(g) = options.gpus_per_task {
        lines.push(directive("--gpus-per-task", &g.to_string())?);
    }
    Ok(script(
        &lines,
        "Task I of the array runs shard I of the suite (`run --shard auto` reads\n\
         # SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT) into <out>/shards/I-of-N. A retried or\n\
         # requeued task resumes: the pairs its folder already holds are not evaluated again.",
        "echo \"robust-eval shard ${SLURM_ARRAY_TASK_ID}: job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}, \
         attempt $(( ${SLURM_RESTART_COUNT:-0} + 1 )), host $(hostname)\" >&2",
        &run.shard_command(),
    ))
}

/// The engine script: one task with a shard's resources that builds every model's TensorRT
/// engine into `<out>/tensorrt-cache`; the array is submitted to start once it succeeded.
pub fn engines_script(run: &ShardedRun, options: &SlurmOptions, workdir: &Path) -> Result<String> {
    let log = log_path(&dir(run), "engines-%j.out")?;
    let mut lines = vec![
        directive("--job-name", &format!("{}-engines", options.job_name))?,
        directive("--output", &log)?,
        directive("--open-mode", "append")?,
        directive("--requeue", "")?,
        directive("--ntasks", "1")?,
    ];
    lines.extend(common(options, workdir)?);
    if let Some(g) = options.gpus_per_task {
        lines.push(directive("--gpus-per-task", &g.to_string())?);
    }
    Ok(script(
        &lines,
        "Builds the TensorRT engine of every model of the study once, into <out>/tensorrt-cache\n\
         # (`run --engines-only`: nothing is evaluated). The shards' array is submitted with\n\
         # --dependency=afterok:<this job>, so every shard loads the engines instead of building them.",
        "",
        &run.engines_command(),
    ))
}

/// The merge script: submitted to start after every array task succeeded.
pub fn merge_script(run: &ShardedRun, options: &SlurmOptions, workdir: &Path) -> Result<String> {
    let log = log_path(&dir(run), "merge-%j.out")?;
    let mut lines = vec![
        directive("--job-name", &format!("{}-merge", options.job_name))?,
        directive("--output", &log)?,
        // A shard that failed for good leaves the dependency unsatisfiable: cancel the merge then
        // instead of leaving it pending forever.
        directive("--kill-on-invalid-dep", "yes")?,
        directive("--ntasks", "1")?,
    ];
    lines.extend(common(options, workdir)?);
    Ok(script(
        &lines,
        "Runs once every task of the shards' array has succeeded (submitted with\n\
         # --dependency=afterok:<array job>): checks the shards are complete and consistent, and\n\
         # writes into <out> what one run would have written.",
        "",
        &run.merge_command(),
    ))
}

/// The options both scripts carry.
fn common(options: &SlurmOptions, workdir: &Path) -> Result<Vec<String>> {
    let mut lines = vec![directive("--chdir", &path_text(workdir, "--chdir")?)?];
    let optional = [
        ("--partition", &options.partition),
        ("--account", &options.account),
        ("--time", &options.time),
        ("--mem", &options.mem),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            lines.push(directive(name, v)?);
        }
    }
    if let Some(c) = options.cpus_per_task {
        lines.push(directive("--cpus-per-task", &c.to_string())?);
    }
    for extra in &options.extra {
        if !extra.starts_with('-') {
            return Err(Error::Usage(format!(
                "--sbatch `{extra}`: expected an sbatch option such as --qos=high"
            )));
        }
        lines.push(format!("#SBATCH {}", sbatch_word(extra, "--sbatch")?));
    }
    Ok(lines)
}

fn script(directives: &[String], comment: &str, before: &str, command: &[String]) -> String {
    let mut text = String::from("#!/bin/bash\n");
    for d in directives {
        text.push_str(d);
        text.push('\n');
    }
    text.push_str("# Written by `robust-eval slurm`.\n# ");
    text.push_str(comment);
    text.push_str("\nset -euo pipefail\n");
    if !before.is_empty() {
        text.push_str(before);
        text.push('\n');
    }
    text.push_str("exec ");
    text.push_str(&shell_line(command));
    text.push('\n');
    text
}

/// `#SBATCH --name=value` (or `#SBATCH --name` for a flag).
fn directive(name: &str, value: &str) -> Result<String> {
    if value.is_empty() {
        return Ok(format!("#SBATCH {name}"));
    }
    Ok(format!("#SBATCH {name}={}", sbatch_word(value, name)?))
}

/// One word of an `#SBATCH` line, written for sbatch's own parser (`_get_argument` in Slurm's
/// src/sbatch/opt.c), not a shell's: words end at blanks outside quotes, `'` and `"` group, a
/// backslash takes the next character as it is (inside quotes too), and an unquoted `#` begins a
/// comment. So a value of plain characters goes bare, and any other in double quotes with `\`
/// and `"` escaped. What no line can carry is refused: control characters (a newline ends the
/// line) and the words `packjob` and `hetjob`, which sbatch blanks out or splits the job at
/// wherever they appear on a line.
pub fn sbatch_word(value: &str, option: &str) -> Result<String> {
    let refuse = |why: String| {
        Err(Error::Usage(format!(
            "{option} {value:?}: {why}; an sbatch script line cannot carry it"
        )))
    };
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return refuse(format!("it holds the control character {c:?}"));
    }
    let lower = value.to_ascii_lowercase();
    if let Some(word) = ["packjob", "hetjob"].iter().find(|w| lower.contains(*w)) {
        return refuse(format!(
            "sbatch reads `{word}` as a job separator wherever it appears"
        ));
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if value.chars().all(plain) {
        return Ok(value.to_string());
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(format!("\"{escaped}\""))
}

/// A path as text for an `#SBATCH` line.
fn path_text(path: &Path, option: &str) -> Result<String> {
    path.to_str().map(str::to_string).ok_or_else(|| {
        Error::Usage(format!(
            "{option} {}: not valid UTF-8, which sbatch cannot be given",
            path.display()
        ))
    })
}

/// A log file's path for `--output`: Slurm replaces `%x` patterns there (the folder's own `%`
/// are written `%%`), and a backslash anywhere turns every pattern off, so none may come from
/// the user's folder.
fn log_path(dir: &Path, file: &str) -> Result<String> {
    let text = path_text(dir, "--output")?;
    if text.contains('\\') {
        return Err(Error::Usage(format!(
            "--output {text:?}: Slurm turns its %a/%j patterns off for a log path holding `\\`; \
             choose a results folder without one"
        )));
    }
    Ok(format!("{}/{file}", text.replace('%', "%%")))
}

/// The commands that submit the scripts by hand, as `--submit` would.
pub fn commands(scripts: &Scripts) -> Vec<String> {
    let quoted = |path: &Path| shell_quote(&path.display().to_string());
    let (shards, merge) = (quoted(&scripts.shards), quoted(&scripts.merge));
    let mut lines = Vec::new();
    let after_engines = match &scripts.engines {
        Some(engines) => {
            lines.push(format!("engines=$(sbatch --parsable {})", quoted(engines)));
            "--dependency=afterok:${engines%%;*} "
        }
        None => "",
    };
    lines.push(format!(
        "array=$(sbatch --parsable {after_engines}{shards})"
    ));
    lines.push(format!(
        "sbatch --parsable --dependency=afterok:${{array%%;*}} {merge}"
    ));
    lines
}

/// Submits the engine job if there is one, the array depending on it, then the merge depending
/// on the array.
pub fn submit(scripts: &Scripts) -> Result<Submitted> {
    let engines_job = match &scripts.engines {
        Some(engines) => Some(sbatch(&[], engines)?),
        None => None,
    };
    let array_job = match &engines_job {
        Some(engines) => {
            let dependency = format!("--dependency=afterok:{engines}");
            sbatch(&[&dependency], &scripts.shards).map_err(|e| {
                Error::Other(format!(
                    "{e}\nthe engine job {engines} was submitted: cancel it with `scancel {engines}`, \
                     mend the cause and submit again"
                ))
            })?
        }
        None => sbatch(&[], &scripts.shards)?,
    };
    let dependency = format!("--dependency=afterok:{array_job}");
    let merge_job = sbatch(&[&dependency], &scripts.merge).map_err(|e| {
        Error::Other(format!(
            "{e}\nthe shards' array job {array_job} was submitted: submit the merge by hand with \
             `sbatch {dependency} {}`, or cancel the array with `scancel {array_job}`",
            shell_quote(&scripts.merge.display().to_string())
        ))
    })?;
    Ok(Submitted {
        engines_job,
        array_job,
        merge_job,
    })
}

/// `sbatch --parsable [options] script`: the job id it prints (`id` or `id;cluster`).
fn sbatch(options: &[&str], script: &Path) -> Result<String> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .args(options)
        .arg(script)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Usage(
                "--submit: `sbatch` is not on PATH; run this on a Slurm login node, or leave out \
                 --submit and run the printed sbatch commands where Slurm is"
                    .into(),
            ),
            _ => Error::Other(format!("could not start sbatch: {e}")),
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(Error::Other(format!(
            "sbatch {} failed ({}): {}",
            script.display(),
            output.status,
            stderr.trim()
        )));
    }
    let id = stdout.trim().split(';').next().unwrap_or("");
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::Other(format!(
            "sbatch {} printed {:?}, not a job id",
            script.display(),
            stdout.trim()
        )));
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> ShardedRun {
        let args = vec![
            "--suite".into(),
            "demo".into(),
            "--out".into(),
            "/r/x".into(),
        ];
        ShardedRun::new(3, "/bin/robust-eval".into(), args, "/r/x".into()).unwrap()
    }

    #[test]
    fn the_array_covers_every_shard_and_logs_per_task() {
        let options = SlurmOptions {
            job_name: "eval".into(),
            partition: Some("gpu".into()),
            gpus_per_task: Some(1),
            ..Default::default()
        };
        let text = shards_script(&run(), &options, Path::new("/home/u")).unwrap();
        for line in [
            "#SBATCH --array=0-2",
            "#SBATCH --output=/r/x/slurm/shard-%a.out",
            "#SBATCH --chdir=/home/u",
            "#SBATCH --partition=gpu",
            "#SBATCH --gpus-per-task=1",
            "exec /bin/robust-eval run --suite demo --out /r/x --shard auto --shard-count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        let merge = merge_script(&run(), &options, Path::new("/home/u")).unwrap();
        assert!(
            merge.contains("exec /bin/robust-eval merge /r/x\n"),
            "{merge}"
        );
        assert!(!merge.contains("--gpus-per-task"), "{merge}");
    }

    /// sbatch's reading of one `#SBATCH` line (Slurm 22.05, src/sbatch/opt.c `_get_argument`,
    /// `packjob` aside): its words after the magic word, or `None` where sbatch stops with a fatal
    /// error (an unmatched quote).
    fn sbatch_reads(line: &str) -> Option<Vec<String>> {
        let rest = line.strip_prefix("#SBATCH").expect("an #SBATCH line");
        let mut chars = rest.chars().peekable();
        let mut words = Vec::new();
        loop {
            while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none() {
                return Some(words);
            }
            let (mut word, mut quote, mut escaped) = (String::new(), None, false);
            while let Some(&c) = chars.peek() {
                if quote.is_none() && c.is_ascii_whitespace() || c == '\n' {
                    break;
                }
                chars.next();
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                    continue;
                } else if let Some(q) = quote {
                    if c == q {
                        quote = None;
                        continue;
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                    continue;
                } else if c == '#' {
                    // The rest of the line is a comment.
                    if !word.is_empty() {
                        words.push(word);
                    }
                    return Some(words);
                }
                word.push(c);
            }
            if quote.is_some() {
                return None;
            }
            words.push(word);
        }
    }

    #[test]
    fn sbatch_reads_back_every_value_as_written() {
        let values = [
            "plain-value_1.2",
            "my eval",
            "it's",
            "a\"b",
            "/home/u/study #1/results",
            "back\\slash",
            "50% of it",
            "tab\tno",
            " leading and trailing ",
            "#",
            "'\"\\# mixed \\\"",
            "ünïcode ✓",
        ];
        for value in values {
            match directive("--job-name", value) {
                Ok(line) => assert_eq!(
                    sbatch_reads(&line),
                    Some(vec![format!("--job-name={value}")]),
                    "{line}"
                ),
                Err(e) => {
                    assert!(value.chars().any(char::is_control), "{value:?}: {e}");
                    assert!(e.to_string().contains("--job-name"), "{e}");
                }
            }
        }
        for bad in ["two\nlines", "my-packjob", "HetJob"] {
            let e = directive("--comment", bad).unwrap_err().to_string();
            assert!(e.contains("--comment"), "{e}");
        }
    }

    #[test]
    fn log_paths_keep_their_percent_and_refuse_a_backslash() {
        assert_eq!(
            log_path(Path::new("/r/50%"), "shard-%a.out").unwrap(),
            "/r/50%%/shard-%a.out"
        );
        let e = log_path(Path::new("/r/a\\b"), "x").unwrap_err().to_string();
        assert!(e.contains("--output"), "{e}");
    }

    #[test]
    fn a_gpu_array_asks_for_one_task_per_element() {
        let options = SlurmOptions {
            job_name: "eval".into(),
            gpus_per_task: Some(1),
            ..Default::default()
        };
        let text = shards_script(&run(), &options, Path::new("/w")).unwrap();
        assert!(text.contains("#SBATCH --ntasks=1\n"), "{text}");
        assert!(text.contains("#SBATCH --gpus-per-task=1\n"), "{text}");
    }
}
