//! Command-line definition. Kept apart from the work: each command turns its flags into checked
//! library settings and calls the library, so tests and benchmarks run the same code users run.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::choices::{EngineJobArg, FormatArg, LayoutArg, ProgressArg, ProviderArg, TransformArg};

mod help;
mod interventions;
mod scale;

use help::*;
pub use interventions::*;
pub use scale::*;

#[derive(Debug, Parser)]
#[command(
    name = "robust-eval",
    version,
    about = "Measure how image classifiers hold up under natural distribution shift",
    long_about = "robust-eval runs ONNX image classifiers through ONNX Runtime (TensorRT, CUDA or CPU) over \
ImageNet and its shifted test sets (ImageNetV2, ImageNet-Sketch, ImageNet-R, ObjectNet, ImageNet-A), \
scoring each the way the literature does, and stores per-model accuracies, per-image predictions and \
provenance in a results folder.\n\nStart with `robust-eval run --suite demo`: it needs no datasets and no downloads.",
    after_long_help = EXIT_STATUS
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Give a bare .onnx, or a card whose [preprocess] leaves keys out, ImageNet's preprocessing
    /// (resize 256, crop 224, bilinear, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225];
    /// 1000 classes for a bare .onnx) instead of refusing it. A card can say the same with
    /// `defaults = "imagenet"` in [preprocess].
    #[arg(long, global = true)]
    pub assume_imagenet_preprocessing: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate models on a suite of datasets and store the results.
    #[command(long_about = RUN_ABOUT, after_long_help = EXIT_STATUS)]
    Run(RunArgs),
    /// Put the shards of a sharded run (run --shard I/N) together into one results folder.
    #[command(long_about = MERGE_ABOUT, after_long_help = EXIT_STATUS)]
    Merge(MergeArgs),
    /// Write (and with --submit, submit) Slurm jobs running a suite as N shards, then a merge.
    #[command(long_about = SLURM_ABOUT, after_long_help = SCHEDULER_EXIT_STATUS)]
    Slurm(SlurmArgs),
    /// Write Kubernetes Jobs running a suite as N shards (an Indexed Job), then a merge.
    #[command(long_about = KUBERNETES_ABOUT, after_long_help = SCHEDULER_EXIT_STATUS)]
    Kubernetes(KubernetesArgs),
    /// WiSE-FT: write models whose weights interpolate a zero-shot and a fine-tuned model.
    #[command(long_about = INTERPOLATE_ABOUT, after_long_help = INTERVENTION_EXIT_STATUS)]
    Interpolate(InterpolateArgs),
    /// Model soups: average the weights of fine-tuned models (uniform, or greedy on held-out data).
    #[command(long_about = SOUP_ABOUT, after_long_help = INTERVENTION_EXIT_STATUS)]
    Soup(SoupArgs),
    /// Build a manifest (path,label CSV) from a dataset's published folder layout.
    #[command(long_about = MANIFEST_ABOUT, after_long_help = EXIT_STATUS)]
    Manifest(ManifestArgs),
    /// Fit the accuracy-on-the-line trend per shift and compute effective robustness.
    #[command(long_about = FIT_ABOUT, after_long_help = EXIT_STATUS)]
    Fit(FitCommand),
    /// Draw accuracy-on-the-line charts and the effective-robustness bar chart (PNG and SVG).
    #[command(after_long_help = EXIT_STATUS)]
    Plot(PlotCommand),
    /// Write a report of a results folder as Markdown, self-contained HTML or JSON.
    #[command(after_long_help = EXIT_STATUS)]
    Report(ReportCommand),
    /// Remove models from a results folder: their rows, predictions and run.json entries.
    #[command(long_about = PRUNE_ABOUT, after_long_help = PRUNE_EXIT_STATUS)]
    Prune(PruneArgs),
    /// Estimate each model's accuracy on every shift without its labels (AC, DoC, ATC, ALine), and
    /// its calibration (ECE, Brier).
    #[command(long_about = ESTIMATE_ABOUT, after_long_help = ESTIMATE_EXIT_STATUS)]
    Estimate(EstimateArgs),
    /// Compare a candidate's results with a baseline's; fail on significant regressions (for CI).
    #[command(long_about = GATE_ABOUT, after_long_help = GATE_EXIT_STATUS)]
    Gate(GateArgs),
    /// List model cards and check each against its ONNX file, without running any images.
    #[command(long_about = MODELS_ABOUT, after_long_help = MODELS_EXIT_STATUS)]
    Models(ModelsArgs),
    /// Measure decode, preprocessing, inference and end-to-end throughput on real images.
    #[command(after_long_help = EXIT_STATUS)]
    Bench(BenchArgs),
    /// Report which ONNX Runtime library is found and which execution providers initialise.
    #[command(after_long_help = EXIT_STATUS)]
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Suite to run: a built-in name (imagenet-shifts, demo) or the path of a suite file.
    #[arg(long, value_name = "NAME|PATH")]
    pub suite: String,

    /// Models: a folder of model cards (*.toml beside *.onnx), one card, or one .onnx (a bare .onnx
    /// gets the standard ImageNet preprocessing). Repeat to combine. Default: the suite's own models.
    #[arg(long, value_name = "PATH")]
    pub models: Vec<PathBuf>,

    /// Folder the suite's relative manifest paths are resolved against.
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,

    /// Results folder. Default: results/<suite name>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Datasets to evaluate, comma-separated ("all" for every one, including those off by default,
    /// such as imagenetv2-threshold0.7). The in-distribution dataset is always included.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub datasets: Vec<String>,

    /// Execution provider: auto tries TensorRT, then CUDA, then CPU, using the first that
    /// initialises; naming one makes its absence an error.
    #[arg(long, value_enum, default_value = "auto")]
    pub provider: ProviderArg,

    /// Images per inference batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch_size: u32,

    /// Threads for ONNX Runtime inference, split among --inference-workers on the CPU. Default:
    /// the number of CPU cores.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Threads decoding and preprocessing images ahead of a single inference worker (a GPU, or
    /// --inference-workers 1; several CPU workers decode their own batches). Default: the
    /// number of CPU cores.
    #[arg(long, value_name = "N")]
    pub loader_threads: Option<usize>,

    /// On the CPU, workers that each decode a batch and infer it with their own session of the
    /// model (--threads / N intra-op threads each). Default: one per --threads, the fastest on
    /// the CNNs measured; 1 runs a single session on all --threads fed by --loader-threads,
    /// holding one copy of the model in memory instead of N. GPU providers use one session.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub inference_workers: Option<u32>,

    /// Batches decoded ahead of a single inference worker (a GPU, or --inference-workers 1);
    /// bounds memory. The loader holds at most N + 1 batches, all decoding at once while
    /// inference waits for images, so no core waits for the slowest image of a batch.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub prefetch: usize,

    /// Memory the run's estimated footprint is held to, e.g. 8GB or 500MB (units are powers of
    /// 1024). The models of a preprocessing group whose sessions would not fit together run in
    /// waves, each its own pass over the datasets, with results identical to one pass. The
    /// estimate: a batch (its buffers and activation arena) plus, per model, its file size times
    /// a factor. Default: 80 % of MemAvailable (and of the GPU's free memory on a GPU provider).
    /// A budget that cannot hold one batch is exit status 2, naming the figure that would.
    #[arg(long, value_name = "SIZE", value_parser = robust_eval::engine::waves::parse_size)]
    pub memory_budget: Option<u64>,

    /// TensorRT engine cache folder. Default: <out>/tensorrt-cache (a shard's own folder with
    /// --shard: ONNX Runtime writes engines in place, so shards must not share one as they run).
    #[arg(long, value_name = "DIR")]
    pub trt_cache: Option<PathBuf>,

    #[command(flatten)]
    pub gpu: GpuArgs,

    /// Images that may fail to load before the exit status is 1: the images of the pairs this
    /// run evaluated that could not be read, each (dataset, manifest row) counted once however
    /// many models or preprocessings read it. `merge` counts by the same rule.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub allow_failures: u64,

    /// Largest image file read, in MB; a larger one is listed as failed, not read.
    #[arg(long, default_value_t = 256, value_name = "MB")]
    pub max_image_mb: u64,

    /// Most pixels an image may declare (PIL's default limit); a larger one (a decompression
    /// bomb, say) is listed as failed before any pixel is decoded.
    #[arg(long, default_value_t = 178_956_970, value_name = "N")]
    pub max_image_pixels: u64,

    /// Evaluate every pair again, even those whose stored results are up to date.
    #[arg(long)]
    pub force: bool,

    /// Evaluate only shard I of N (0 ≤ I < N) of the work, into <out>/shards/I-of-N; `merge`
    /// puts the shards together. The split is deterministic: the pairs of models and datasets,
    /// and the rows of large datasets, cut into N equal shares of model-images. `auto` reads the
    /// scheduler's variables: SLURM_ARRAY_TASK_ID (with SLURM_ARRAY_TASK_COUNT) in an sbatch
    /// array, JOB_COMPLETION_INDEX in a Kubernetes Indexed Job (with --shard-count).
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<String>,

    /// The number of shards, for --shard auto where the scheduler does not say it (a Kubernetes
    /// Indexed Job's completions). Also read from ROBUST_EVAL_SHARD_COUNT.
    #[arg(long, value_name = "N", requires = "shard")]
    pub shard_count: Option<usize>,

    /// Build the TensorRT engine of every model, as the shards will open it, and evaluate
    /// nothing: the first job of a sharded study (`slurm` and `kubernetes` write it), so each
    /// engine is built once per study instead of once per shard. The engines are built in a
    /// folder of the job's own (<out>/engine-build/tensorrt-cache) and published whole into
    /// <out>/tensorrt-cache, which every shard loads them from; with --trt-cache they are built
    /// there. With --provider auto and no TensorRT in ONNX Runtime nothing is built (exit 0);
    /// --provider cpu or cuda builds no engines (exit 2).
    #[arg(long, conflicts_with_all = ["shard", "force"])]
    pub engines_only: bool,

    /// Progress display: bars on a terminal and plain lines otherwise (auto), bar, plain, or
    /// none (no progress lines; warnings and notes, such as the memory waves, are still printed).
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,

    /// Print a JSON summary (pairs evaluated, rows) on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub fit: FitArgs,
}

/// How the trend is fitted; shared by run, fit, plot and report.
#[derive(Debug, Args, Clone)]
pub struct FitArgs {
    /// Baseline models the line is fitted on: all, group:NAME, file:PATH (one name per line),
    /// or a regular expression on model names. Default: the suite's `baseline`, else all.
    /// WiSE-FT and soup models (the groups wise-ft and soup, and any card with an
    /// [intervention]) are left out of `all` and of a regular expression, with a note, whether
    /// or not run.json is there; they join only when group:NAME or file:PATH names them.
    #[arg(long, value_name = "SPEC")]
    pub baseline: Option<String>,

    /// Scale of the fit: probit (as in "Accuracy on the Line") or logit (as in imagenet-testbed).
    #[arg(long, value_enum, default_value = "probit")]
    pub transform: TransformArg,

    /// Fit the line on published results instead of the folder's own models, and place the
    /// folder's models against it: timm, testbed, or the path of an evals.csv-shaped table.
    #[arg(long, value_name = "timm|testbed|PATH")]
    pub baseline_cloud: Option<String>,

    /// In-distribution dataset. Default: the suite's (recorded in run.json), else imagenet.
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,

    /// Bootstrap resamples (over baseline models) for the 95 % band.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub bootstrap: usize,

    /// Seed of the bootstrap, for reproducible bands.
    #[arg(long, default_value_t = 20200707, value_name = "N")]
    pub seed: u64,

    /// Write model names next to their points in the charts.
    #[arg(long)]
    pub labels: bool,

    /// Fit ImageNet-A piecewise, as imagenet-testbed draws it: one line below and one at or
    /// above this baseline model's ID accuracy (e.g. resnet50, which ImageNet-A was filtered against).
    #[arg(long, value_name = "MODEL")]
    pub split_a: Option<String>,

    /// A dataset of the results held out for choosing, such as a split of the training set:
    /// not fitted as a shift nor counted in average OOD top-1. The report marks, per WiSE-FT
    /// family, the α with the highest top-1 on it (the paper chooses α so).
    #[arg(long, value_name = "NAME")]
    pub held_out: Option<String>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The sharded run's results folder (the --out of its shards); the merged results go here.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,

    /// The shard folders to merge, instead of every I-of-N folder in <OUT>/shards.
    #[arg(long, value_name = "DIR", num_args = 1..)]
    pub shards: Vec<PathBuf>,

    /// Images that may fail to load before the exit status is 1, counted as `run` counts them
    /// for one run: each (dataset, manifest row) of the merged pairs that could not be read,
    /// once. Each shard checked only its own.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub allow_failures: u64,

    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub fit: FitArgs,
}

#[derive(Debug, Args)]
pub struct FitCommand {
    /// Results folder (as `run` writes it, or one holding only evals.csv).
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    #[command(flatten)]
    pub fit: FitArgs,
    /// Also print fit.json on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlotCommand {
    /// Results folder; charts go to <DIR>/plots.
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    #[command(flatten)]
    pub fit: FitArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Results folder to remove the models from.
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    /// Models to remove, by the name in evals.csv.
    #[arg(long, value_name = "NAME", required = true, num_args = 1..)]
    pub models: Vec<String>,
    #[command(flatten)]
    pub fit: FitArgs,
}

#[derive(Debug, Args)]
pub struct ReportCommand {
    /// Results folder; the report is written there as report.md, report.html or report.json.
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    /// md for pull requests and READMEs, html for a browser (plots inline), json for scripts.
    #[arg(long, value_enum, default_value = "md")]
    pub format: FormatArg,
    #[command(flatten)]
    pub fit: FitArgs,
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Dataset layout.
    #[arg(value_enum)]
    pub layout: LayoutArg,

    /// The dataset's folder.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,

    /// Manifest to write (for imagenet-c: the data root the manifests go under).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// ImageNet val with flat files: a CSV of image id and label, such as LOC_val_solution.csv
    /// (ImageId,PredictionString) or any `file,label` table (wnid or class index), or the
    /// devkit's ILSVRC2012_validation_ground_truth.txt (one ILSVRC2012_ID per line, line i
    /// labelling ILSVRC2012_val_0000000i). The form is told by content and printed.
    #[arg(long, value_name = "FILE")]
    pub ground_truth: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// Results folder, as `run` writes it; the CSV files are written there.
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    /// In-distribution dataset [default: the suite's, from run.json].
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,
    /// Only models whose names match this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub models: Option<String>,
    /// R^2 of the agreement line below which ALine's estimates are marked not trusted.
    #[arg(long, value_name = "R2", default_value_t = robust_eval::analysis::estimate::DEFAULT_MIN_R2)]
    pub min_r2: f64,
    /// Print the estimates as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// Results folder of the accepted model(s).
    #[arg(long, value_name = "DIR")]
    pub baseline: PathBuf,
    /// Results folder of the model(s) to check.
    #[arg(long, value_name = "DIR")]
    pub candidate: PathBuf,
    /// Pair a baseline model with a differently named candidate model (repeatable).
    #[arg(long, value_name = "BASELINE=CANDIDATE")]
    pub pair: Vec<String>,
    /// Gate rules in TOML: max_drop, max_er_drop, max_average_er_drop, max_mce_rise, alpha,
    /// ignore_significance, accuracy_only, allow_missing, estimate, and [datasets.NAME]
    /// max_drop overrides. Flags override the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Largest allowed top-1 drop on any dataset, percentage points [default: 0.5].
    #[arg(long, value_name = "PP")]
    pub max_drop: Option<f64>,
    /// Largest allowed drop in effective robustness on any shift, percentage points [default: 1.0].
    #[arg(long, value_name = "PP")]
    pub max_er_drop: Option<f64>,
    /// Largest allowed drop in average effective robustness, percentage points [default: 1.0].
    #[arg(long, value_name = "PP")]
    pub max_average_er_drop: Option<f64>,
    /// Largest allowed rise in ImageNet-C mCE, points of % [default: 1.0]; checked for every
    /// model with a complete mCE on both sides (all 75 corruption-severities), also under
    /// --accuracy-only.
    #[arg(long, value_name = "POINTS")]
    pub max_mce_rise: Option<f64>,
    /// Significance level a drop must reach to fail the gate [default: 0.05].
    #[arg(long, value_name = "ALPHA")]
    pub alpha: Option<f64>,
    /// Fail on every drop over its threshold, significant or not.
    #[arg(long)]
    pub ignore_significance: bool,
    /// Check top-1 only, with no effective-robustness checks (no trend fit needed: e.g. fewer
    /// than three baseline models on a side). Without it, a side that cannot be fitted is exit 2.
    #[arg(long)]
    pub accuracy_only: bool,
    /// A model (or model × dataset) of the baseline that the candidate lacks is a warning, not a
    /// failure: for models retired on purpose.
    #[arg(long)]
    pub allow_missing: bool,
    /// Gate unlabelled datasets on this method's estimated top-1 (from estimates.csv: AC, DoC,
    /// ATC-MC, ATC-NE, ALine-S or ALine-D), under the same --max-drop, with no significance test.
    /// Without it, unlabelled datasets are listed as not gated.
    #[arg(long, value_name = "METHOD")]
    pub estimate: Option<String>,
    /// Also write the result as Markdown (for a pull-request comment or $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Also write the result as JUnit XML, one test case per rule and row.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print the result as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Models: a folder of model cards (*.toml beside *.onnx), one card, or one .onnx. Repeat to
    /// combine.
    #[arg(long, value_name = "PATH", required = true)]
    pub models: Vec<PathBuf>,
    /// Print the listing as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A folder of images (searched one level deep).
    #[arg(long, value_name = "DIR")]
    pub images: PathBuf,
    /// Model card (or bare .onnx) to run.
    #[arg(long, value_name = "CARD")]
    pub model: PathBuf,
    /// Use at most this many images.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub limit: usize,
    /// Images per inference batch.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch_size: usize,
    /// Threads for ONNX Runtime inference, as `run --threads`. Default: the number of CPU cores.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Batches inferred at once on the CPU, each by its own session, as `run --inference-workers`.
    /// Default: one per --threads.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub inference_workers: Option<u32>,
    /// Also time N copies of the model in one pass, sharing each decoded batch (0 or 1: skip).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub shared_models: usize,
    /// How the images are brought to the model's input, as a suite's `resize` key: `model` (the
    /// card's transform) or `none` (centre crop only, as the imagenet-c suite evaluates
    /// ImageNet-C's 224-pixel images: on a 224 image and a 224 model no resize at all).
    #[arg(long, value_name = "MODE", default_value = "model")]
    pub resize: robust_eval::input::preprocessing::ResizeMode,
    /// Execution provider, as `run --provider`; a GPU provider runs one session fed by all cores,
    /// as `run` plans it.
    #[arg(long, value_enum, default_value = "cpu")]
    pub provider: ProviderArg,
    #[command(flatten)]
    pub gpu: GpuArgs,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Device and precision for the GPU providers.
#[derive(Debug, Args, Clone, Default)]
pub struct GpuArgs {
    /// CUDA device the GPU providers run on, counted among the GPUs this process sees (after
    /// CUDA_VISIBLE_DEVICES): one shard per GPU by hand. Beyond the visible GPUs (where
    /// CUDA_VISIBLE_DEVICES or nvidia-smi tells), or with --provider cpu, exit 2.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub device: u32,

    /// Let the CUDA provider use TF32 tensor-core math for matmuls and convolutions (faster on
    /// Ampere and newer, ~10 bits of mantissa). By default it is off and the GPU computes in fp32
    /// like the CPU, so near-tie top-1 decisions agree across shards and providers.
    #[arg(long)]
    pub tf32: bool,

    /// Let TensorRT build fp16 engines (TensorRT only; exit 2 on the CPU or CUDA). Recorded in
    /// run.json, and merge refuses to join shards of different precision.
    #[arg(long)]
    pub fp16: bool,
}

impl GpuArgs {
    pub fn options(&self) -> robust_eval::engine::runtime::GpuOptions {
        robust_eval::engine::runtime::GpuOptions {
            device: self.device,
            tf32: self.tf32,
            fp16: self.fp16,
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
