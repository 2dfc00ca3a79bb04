//! Scaling out: front ends that write what a scheduler needs to run one suite as N shards
//! (`run --shard auto` in each task) followed by one `merge` of their folders.
//!
//! - [`slurm`]: an sbatch array script and a merge script that depends on the array (afterok);
//! - [`kubernetes`]: an Indexed Job and a merge Job sharing a volume for the results.
//!
//! Where the shards may run on TensorRT ([`EngineJob`]), both put an engine job first
//! (`run --engines-only`), which builds every model's engine once, and start the shards only
//! once it succeeded.
//!
//! Nothing here schedules or retries anything itself: the scheduler does, and a retried shard
//! resumes because `run` skips the pairs its folder already holds.

pub mod kubernetes;
pub mod slurm;

use std::path::PathBuf;

use crate::engine::runtime::ProviderChoice;
use crate::error::{Error, Result};

/// Whether a sharded study starts with an engine job (`run --engines-only`, which builds every
/// model's TensorRT engine once) before its shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineJob {
    /// When the shards may run on TensorRT: `--provider tensorrt`, or `auto` with GPUs asked for.
    #[default]
    Auto,
    Yes,
    No,
}

impl EngineJob {
    /// Decided for the run's provider and whether the shards are given GPUs. `yes` with a
    /// provider that builds no engines (cpu, cuda) is refused.
    pub fn wanted(self, provider: ProviderChoice, gpus: bool) -> Result<bool> {
        let builds_engines = matches!(provider, ProviderChoice::Tensorrt | ProviderChoice::Auto);
        match self {
            EngineJob::No => Ok(false),
            EngineJob::Yes if !builds_engines => Err(Error::Usage(format!(
                "--engine-job yes: the run's --provider {} builds no TensorRT engines; leave the \
                 engine job out (--engine-job no)",
                format!("{provider:?}").to_lowercase()
            ))),
            EngineJob::Yes => Ok(true),
            EngineJob::Auto => {
                Ok(provider == ProviderChoice::Tensorrt
                    || (provider == ProviderChoice::Auto && gpus))
            }
        }
    }
}

/// One suite run split into shards, as the scheduler's scripts will start it.
#[derive(Debug, Clone)]
pub struct ShardedRun {
    /// How many shards (array tasks, Job completions).
    pub shards: u32,
    /// The robust-eval the tasks run (an absolute path for Slurm, a name on the image's PATH for
    /// Kubernetes).
    pub program: String,
    /// The user's `run` arguments, without `--shard`: the front end adds its own.
    pub run_args: Vec<String>,
    /// The results folder the shards write under (`<out>/shards/I-of-N`) and `merge` fills.
    pub out: PathBuf,
    /// The analysis flags among the run arguments (--baseline, --transform, ...): `merge` is
    /// given them so its fit, plots and reports are the ones one run would have made.
    pub merge_args: Vec<String>,
    /// Whether the shards wait for an engine job (`engines_command`) that builds every model's
    /// TensorRT engine once, so that no shard builds one.
    pub engine_job: bool,
}

impl ShardedRun {
    /// Checks what the front ends rely on: at least one shard, and no shard flags of the user's
    /// own (the scripts pass `--shard auto`, and two would contradict each other).
    pub fn new(shards: u32, program: String, run_args: Vec<String>, out: PathBuf) -> Result<Self> {
        if shards == 0 {
            return Err(Error::Usage("--shards must be at least 1".into()));
        }
        refuse_shard_flags(&run_args)?;
        Ok(ShardedRun {
            shards,
            program,
            run_args,
            out,
            merge_args: Vec::new(),
            engine_job: false,
        })
    }

    /// The command each task runs. The count is given, not read from the array: a resubmission
    /// of some tasks (`sbatch --array=3,7`) is an array of 2, whose tasks are still shards 3 and 7
    /// of N.
    pub fn shard_command(&self) -> Vec<String> {
        let mut command = vec![self.program.clone(), "run".to_string()];
        command.extend(self.run_args.iter().cloned());
        command.extend(["--shard".to_string(), "auto".to_string()]);
        command.extend(["--shard-count".to_string(), self.shards.to_string()]);
        command
    }

    /// The command the engine job runs: the shards' run, whole, building engines only.
    pub fn engines_command(&self) -> Vec<String> {
        let mut command = vec![self.program.clone(), "run".to_string()];
        command.extend(self.run_args.iter().cloned());
        command.push("--engines-only".to_string());
        command
    }

    /// The command the merge job runs.
    pub fn merge_command(&self) -> Vec<String> {
        let mut command = vec![
            self.program.clone(),
            "merge".to_string(),
            self.out.display().to_string(),
        ];
        command.extend(self.merge_args.iter().cloned());
        command
    }
}

/// The scripts pass `--shard auto` (and the engine job `--engines-only`) themselves; one of the
/// user's would contradict it.
pub fn refuse_shard_flags(run_args: &[String]) -> Result<()> {
    let is_shard_flag = |arg: &&String| {
        ["--shard", "--shard-count", "--engines-only"]
            .iter()
            .any(|f| *arg == f || arg.starts_with(&format!("{f}=")))
    };
    match run_args.iter().find(is_shard_flag) {
        Some(flag) => Err(Error::Usage(format!(
            "`{flag}` in the run arguments: the scheduler's scripts pass `--shard auto` (and \
             `--engines-only` to the engine job) themselves; leave it out and give the number of \
             shards with --shards (and the engine job with --engine-job)"
        ))),
        None => Ok(()),
    }
}

/// One word for a POSIX shell, whatever it holds: bare when it is made of characters no shell
/// treats specially, otherwise in single quotes (a quote inside becomes `'\''`).
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A command line for a POSIX shell, every word quoted as needed.
pub fn shell_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("--out=/a/b_c.d"), "--out=/a/b_c.d");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
        assert_eq!(shell_quote("*"), "'*'");
    }

    #[test]
    fn the_users_shard_flags_are_refused() {
        for flag in [
            "--shard",
            "--shard=1/2",
            "--shard-count",
            "--shard-count=3",
            "--engines-only",
        ] {
            let args = vec!["--suite".into(), "demo".into(), flag.into()];
            let e = ShardedRun::new(2, "robust-eval".into(), args, "out".into()).unwrap_err();
            assert!(e.to_string().contains(flag), "{e}");
        }
        assert!(ShardedRun::new(0, "x".into(), vec![], "out".into()).is_err());
    }

    #[test]
    fn the_engine_job_comes_where_shards_may_build_engines() {
        use ProviderChoice::*;
        assert!(EngineJob::Auto.wanted(Tensorrt, false).unwrap());
        assert!(EngineJob::Auto.wanted(Auto, true).unwrap());
        assert!(!EngineJob::Auto.wanted(Auto, false).unwrap());
        assert!(!EngineJob::Auto.wanted(Cuda, true).unwrap());
        assert!(!EngineJob::Auto.wanted(Cpu, true).unwrap());
        assert!(EngineJob::Yes.wanted(Auto, false).unwrap());
        assert!(!EngineJob::No.wanted(Tensorrt, true).unwrap());
        for provider in [Cpu, Cuda] {
            let e = EngineJob::Yes.wanted(provider, true).unwrap_err();
            assert!(e.to_string().contains("--engine-job"), "{e}");
        }
    }
}
