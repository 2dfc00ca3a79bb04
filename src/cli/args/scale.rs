//! Options of `slurm` and `kubernetes`.

use super::*;

#[derive(Debug, Args)]
pub struct SlurmArgs {
    /// Number of shards: array tasks 0 to N-1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub shards: u32,
    /// Partition (queue) for both jobs. Default: the cluster's.
    #[arg(long, value_name = "NAME")]
    pub partition: Option<String>,
    /// Time limit of each task and of the merge, as sbatch takes it (e.g. 2:00:00).
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// GPUs for each shard (the merge gets none).
    #[arg(long, value_name = "N")]
    pub gpus_per_task: Option<u32>,
    /// CPU cores for each task. Pass --threads with the same number in RUN ARGS so the run uses
    /// what it was given.
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// Memory for each task, as sbatch takes it (e.g. 16G).
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// Account to charge.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Job name; the merge job is NAME-merge.
    #[arg(long, value_name = "NAME", default_value = "robust-eval")]
    pub job_name: String,
    /// Any other sbatch option for both scripts, written as one word (e.g. --sbatch=--qos=high).
    /// Repeatable.
    #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch: Vec<String>,
    /// The robust-eval the jobs run. Default: this one (its absolute path, which the compute
    /// nodes must see).
    #[arg(long, value_name = "PATH")]
    pub program: Option<PathBuf>,
    /// A first job that builds every model's TensorRT engine once (`run --engines-only`) into
    /// <out>/tensorrt-cache; the shards start only once it succeeded, and load the engines
    /// instead of building them. auto: when the shards may run on TensorRT (--provider tensorrt
    /// in RUN ARGS, or auto, the default, with GPUs requested).
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub engine_job: EngineJobArg,
    /// Submit the scripts with sbatch: the engine job, the array with
    /// --dependency=afterok:<engine job>, then the merge with --dependency=afterok:<array>.
    #[arg(long)]
    pub submit: bool,
    /// Print the scripts' paths, the commands and the job ids as JSON.
    #[arg(long)]
    pub json: bool,
    /// The arguments of `robust-eval run`, after `--` (without --shard).
    #[arg(last = true, required = true, value_name = "RUN ARGS")]
    pub run: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KubernetesArgs {
    /// Number of shards: completion indexes 0 to N-1, all running at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub shards: u32,
    /// Container image with robust-eval (and ONNX Runtime) installed.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// PersistentVolumeClaim (ReadWriteMany) that holds the results, and the models and data
    /// if they are not in the image.
    #[arg(long, value_name = "PVC")]
    pub volume_claim: String,
    /// Where the claim is mounted in the pods; also their working folder.
    #[arg(long, value_name = "PATH", default_value = "/results")]
    pub mount: String,
    /// GPUs for each shard's pod (nvidia.com/gpu).
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// CPUs requested for each pod (e.g. 8 or 500m).
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<String>,
    /// Memory requested and limited for each pod (e.g. 16Gi).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Job name; the merge Job is NAME-merge.
    #[arg(long, value_name = "NAME", default_value = "robust-eval")]
    pub name: String,
    /// Failed attempts allowed per shard (backoffLimitPerIndex) and for the merge.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries: u32,
    /// The robust-eval in the image.
    #[arg(long, value_name = "PATH", default_value = "robust-eval")]
    pub program: String,
    /// A first job that builds every model's TensorRT engine once (`run --engines-only`) into
    /// <out>/tensorrt-cache; the shards start only once it succeeded, and load the engines
    /// instead of building them. auto: when the shards may run on TensorRT (--provider tensorrt
    /// in RUN ARGS, or auto, the default, with GPUs requested).
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub engine_job: EngineJobArg,
    /// Folder the manifests are written to. Default: <out>/kubernetes, <out> as seen from here.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print the manifests' paths and the commands as JSON.
    #[arg(long)]
    pub json: bool,
    /// The arguments of `robust-eval run`, after `--` (without --shard); paths as the pods see
    /// them.
    #[arg(last = true, required = true, value_name = "RUN ARGS")]
    pub run: Vec<String>,
}

/// `robust-eval run` alone, to check the arguments a scheduler's script will pass to it.
#[derive(Debug, Parser)]
#[command(name = "robust-eval run")]
pub struct RunCommandLine {
    #[command(flatten)]
    pub run: RunArgs,
}
