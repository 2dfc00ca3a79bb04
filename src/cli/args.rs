//! Command-line definition. Kept apart from the work: each command turns its flags into checked
//! library settings and calls the library, so tests and benchmarks run the same code users run.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::choices::{FormatArg, LayoutArg, ProgressArg, ProviderArg, TransformArg};

const EXIT_STATUS: &str = "\
EXIT STATUS:
    0   Success.
    1   The run finished, but more images failed to load than --allow-failures permits
        (they are listed in <out>/failures.csv; everything else was scored and stored).
    2   Nothing or only part was done: a bad suite, manifest or model card (the message names
        the file, line and field), ONNX Runtime missing, or an error during evaluation.

ENVIRONMENT:
    ORT_DYLIB_PATH      Path of libonnxruntime to load, overriding the search (see `doctor`).
    ROBUST_EVAL_CACHE   Where the embedded demo is extracted (default: ~/.cache/robust-eval).
    CI                  When set, progress is printed as plain lines instead of bars.";

const GATE_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   Passed: no drop is both over its threshold and significant (drops over the threshold that
        are not significant are reported as warnings).
    1   A regression: some drop is over its threshold and significant at --alpha; or a model
        (or one model's dataset) of the baseline is missing from the candidate, unless
        --allow-missing. Models only in the candidate are listed as new and do not fail.
    2   The comparison cannot be made: a missing results folder, no model on both sides, a
        --pair naming a model its side lacks, a side whose trend cannot be fitted (without
        --accuracy-only), or a paired row whose two sides scored different manifests.";

const PRUNE_ABOUT: &str = "Remove models from a results folder. A folder accumulates: each `run` \
adds or updates the pairs it evaluates and keeps every other model's rows, so adding one model \
evaluates one model, and `run` names what it kept (\"kept from earlier runs: ...\"). Fit, plots, \
reports and the gate use everything the folder holds. prune takes the folder's writer lock (as a \
run does), removes each named model's run.json entries, then its rows of evals.csv and \
failures.csv, then predictions/<model>/, each file replaced atomically, and redoes the fit, plots \
and reports. A prune interrupted part way is finished by running it again.";

const PRUNE_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   The models were removed (the analysis after it may still warn, e.g. too few models).
    2   Nothing was removed: no results folder, a model the folder does not hold, or another
        run holds the folder's lock.";

const MODELS_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   Every model found is valid.
    1   Some model is invalid; each problem is printed under it.
    2   Nothing could be checked: no models at the paths given, or ONNX Runtime is missing.";

const MODELS_ABOUT: &str = "List the models at --models and check each one as `run` would before \
reading any image: the card parses (every error names the file, line and field), its ONNX file is \
there and ONNX Runtime opens it on the CPU, the input (named by input.name, or the only one) is a \
float32 or float16 tensor of shape [N, 3, crop, crop] (or [N, crop, crop, 3] with \
input.layout = \"nhwc\"), and the output (output.name, or the first) is [N, num_classes + offset], \
or [N, embedding width] of the [head]'s weights for a zero-shot model. A fixed batch dimension is \
shown: `run` uses it as the batch size.";

const RUN_ABOUT: &str = "Evaluate every model on every dataset of a suite.\n\n\
Each (model, dataset) pair is scored as the literature scores it (1000-way for ImageNet, V2 and \
Sketch; logits restricted to 200 classes for ImageNet-R and ImageNet-A; ObjectNet with a 2-pixel border \
crop, restricted to its 125 mapped ImageNet classes, unmapped folders skipped), together with the \
class-restricted ImageNet rows (imagenet@imagenet-r, ...). Results go to --out: evals.csv, \
failures.csv, predictions/<model>/<dataset>.parquet and run.json, written atomically after each pair. \
A pair whose model file, manifest and preprocessing are unchanged is not evaluated again, so an \
interrupted run resumes where it stopped and adding a model evaluates only that model.";

const MERGE_ABOUT: &str = "Put the shards of a sharded run together: read every \
<out>/shards/I-of-N folder (or those given with --shards), check that they are the N parts of one run \
(the same suite, models and datasets; every pair's parts from the same model, manifest and \
preprocessing files by sha256; every row in exactly one shard; every shard finished) and write into \
<out> what one run would have written: evals.csv with counts added and top-1, top-5 and \
Clopper–Pearson intervals computed from the merged counts, failures.csv, per-image predictions in \
manifest order, and run.json with each shard's host and times; then the fit, plots and reports, as \
`run` does. Rows are identical to one run's except the timings: seconds is the sum of the parts' \
seconds and images_per_s the rows over it. A shard that is missing or unfinished is named, with \
the command that finishes it (a shard run again resumes).\n\n\
EXAMPLE:\n    for i in 0 1 2; do robust-eval run --suite demo --out results/demo --shard $i/3; done\n    \
robust-eval merge results/demo";

const MANIFEST_ABOUT: &str = "Build a manifest from a dataset's published on-disk layout.\n\n\
  imagenet          wnid folders (n01440764/...), or flat files with --ground-truth\n\
  imagenet-v2       folders 0..999 named by class index (parsed as integers, never string-sorted)\n\
  imagenet-sketch   wnid folders\n\
  imagenet-r        wnid folders\n\
  imagenet-a        wnid folders\n\
  objectnet         class folders under images/ (all 313 are listed; scoring skips the unmapped ones)\n\
  imagenet-c        <corruption>/<severity>/<wnid>/ (family folders noise/, blur/, ... may sit above); \
--out is then the data root: one manifest per corruption and severity is written to \
OUT/imagenet-c/<corruption>/<severity>/manifest.csv, where `run --suite imagenet-c --data-root OUT` \
looks for them. Missing corruptions and severities are listed; a severity folder outside 1-5 or a class \
folder that is not a wnid is refused (exit 2) before anything is written.\n\n\
Paths are written relative to the manifest's folder when the images lie below it.";

const FIT_ABOUT: &str = "Fit, per shift, ordinary least squares of T(OOD top-1) on T(ID top-1) over the \
baseline models (T = probit or logit, accuracies clipped to [0.01 %, 99.99 %] first), with R² in the \
transformed space and a 95 % bootstrap band; then each model's effective robustness, OOD top-1 minus \
the line's prediction at its ID top-1, with an interval carrying the band and the model's own \
Clopper–Pearson interval, and its average over shifts. Writes fit.json and robustness.csv into the \
results folder. The folder may hold only an evals.csv with columns model, dataset, top1 (group \
optional): every dataset other than the ID one and not of the form X@Y is a shift, and \
<id>@<shift> rows are class-restricted ID points.";

const GATE_ABOUT: &str = "Compare two results folders (as `run` writes them) row by row and decide which \
differences are real. Rows pair by model name, or by --pair BASELINE=CANDIDATE. The sets are \
compared too: a baseline model (or one of its datasets) that the candidate lacks fails the gate and \
is named, as a model whose export failed must not pass; a model only in the candidate is listed as \
new. Where both sides have \
per-image predictions over the same manifest (same sha256 in run.json), an exact McNemar test on the \
images that flipped decides significance; otherwise a two-proportion test on the counts, and the \
report says so. Effective robustness is fitted on each side as `fit` would; an ER drop counts as \
significant when the OOD accuracy change on that shift is. A check fails when its drop is larger \
than the threshold and significant at --alpha.";

const SLURM_ABOUT: &str = "Write the Slurm jobs that run a suite as N shards and merge them.\n\n\
<out>/slurm/shards.sbatch is an array job (--array=0-(N-1)): task I runs `robust-eval run <RUN ARGS> \
--shard auto`, which reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT and writes \
<out>/shards/I-of-N; its log is <out>/slurm/shard-I.out. <out>/slurm/merge.sbatch runs \
`robust-eval merge <out>`, which writes what one run would have written. Submit the merge with \
--dependency=afterok:<array job id> so it starts once every task succeeded; --submit does both \
and prints the two job ids. Tasks are --requeue'd: one preempted or retried resumes its shard, \
evaluating only the pairs its folder lacks. The jobs run in the current folder (--chdir), so \
relative paths in RUN ARGS mean what they mean here; <out> is --out of RUN ARGS, else \
results/<suite name>.\n\nExample:\n    robust-eval slurm --shards 8 --partition gpu --gpus-per-task 1 \\\n        \
--cpus-per-task 8 --time 2:00:00 --submit \\\n        \
-- --suite imagenet-shifts --models models/ --threads 8";

const KUBERNETES_ABOUT: &str =
    "Write the Kubernetes Jobs that run a suite as N shards and merge them.\n\n\
<DIR>/shards.yaml is an Indexed Job (completionMode: Indexed, completions = parallelism = N): pod \
I runs `robust-eval run <RUN ARGS> --shard auto --shard-count N`, which reads \
JOB_COMPLETION_INDEX and writes <out>/shards/I-of-N on the volume claim mounted at --mount (also \
the working folder, so relative paths in RUN ARGS, and the default results/<suite name>, lie on \
the volume). Each index is retried on its own (--retries), and a pod evicted or preempted is \
started again without counting as a failure; it resumes its shard. <DIR>/merge.yaml is a Job \
running `robust-eval merge <out>`. Apply the shards, wait for the Job to complete, then apply the \
merge: the exact commands are printed. Nothing is sent to a cluster.\n\nExample:\n    \
robust-eval kubernetes --shards 8 --image registry.example/robust-eval:1 \\\n        \
--volume-claim evals --gpus 1 \\\n        \
-- --suite imagenet-shifts --models models/ --out results/shifts";

const SCHEDULER_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   The files were written (and with --submit, both jobs were submitted).
    2   Nothing was submitted, or only the shards' array (the message says which and how to
        finish by hand): bad run arguments, a value the files cannot hold, sbatch missing or
        failing.";
const INTERVENTION_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   The models were written.
    2   Nothing or only part was written: the models are not the same graph (the message names
        both files and the first difference), their cards' settings differ, an integer weight
        differs, a file cannot be read or written, or (soup --greedy) the evaluation failed.";

const INTERPOLATE_ABOUT: &str = "WiSE-FT (Wortsman et al., \"Robust fine-tuning of zero-shot models\", \
CVPR 2022): for each α write a model with weights θ(α) = (1 − α)·θ_A + α·θ_B, A the zero-shot model \
and B its fine-tuned version, so that `run` can place the whole curve on the accuracy-on-the-line \
chart.\n\n\
A and B (model cards, or .onnx files) must be the same graph: the same nodes in order (names may \
differ), graph inputs and outputs, opsets, and initializers of the same names, shapes and types; \
the first difference is named otherwise. Float32, float16 and bfloat16 initializers are mixed in \
float32 arithmetic (f32(1 − α)·a + f32(α)·b, float16/bfloat16 rounded back to nearest-even), \
float64 in float64; α = 0 and α = 1 copy A's and B's values bit for bit. Integer initializers must \
be equal. The output is A's file with only the weight payloads replaced; external data is written \
beside it as <name>.data. A zero-shot [head] is mixed too when both cards have one of one shape \
(rows L2-normalised again); one-sided heads are refused.\n\n\
Each model is written to --out as <family>-a<α>.onnx with a card <family>-a<α>.toml: A's \
[preprocess], [input], [output] and [head] (the cards must agree), --group, and an [intervention] \
table (kind = \"wise-ft\", family, alpha, endpoints). Existing files of those names are replaced.\n\n\
Example:\n  robust-eval interpolate zs/clip-b32.toml ft/clip-b32-ft.toml --alphas 0:1:0.1 --out wise/\n  \
robust-eval run --suite imagenet-shifts --models wise/ --models zs/ --models ft/";

const SOUP_ABOUT: &str = "Model soups (Wortsman et al., \"Model soups\", ICML 2022), from fine-tuned \
models of one architecture (same graph and card settings, checked as `interpolate` checks them).\n\n\
Uniform soup (default): θ = (1/k)·Σ θ_i, each element summed in float64 in the order given, divided \
by k and rounded to the tensor's type.\n\n\
Greedy soup (--greedy): each model is evaluated on --held-out (a dataset of --suite); then, best \
first, each is added to the soup when the soup's held-out top-1 does not drop. The evaluations go \
to <out>/greedy-results (reused on a second run), the tried soups to <out>/greedy-results/soups, \
and the order, each model's and each step's held-out top-1 and which were kept to \
<out>/<name>.soup.json. The paper chooses on a held-out part of the training set: choosing on the \
ID test set and reporting ID accuracy there is biased, and the command warns when --held-out is the \
suite's ID dataset.\n\n\
The soup is written as <out>/<name>.onnx with a card (the first model's settings, --group, and \
[intervention] kind = \"soup\", members, recipe).\n\n\
Example:\n  robust-eval soup ft/run1.toml ft/run2.toml ft/run3.toml --out soups/\n  \
robust-eval soup ft/*.toml --greedy --suite my-suite.toml --held-out train-heldout --out soups/";

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

    /// Batches preprocessed ahead of inference (bounds memory).
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

    /// Progress display.
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
    /// WiSE-FT and soup models (a card's [intervention]) join only when group:NAME or file:PATH
    /// names them.
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

const ESTIMATE_ABOUT: &str = "Estimate each model's top-1 on every shift of a results folder from its \
unlabelled predictions, as if the shift had no labels, and write <DIR>/estimates.csv (model, dataset, \
method, estimate, top1, error, trusted), <DIR>/agreement.csv (per shift: the agreement line's slope, \
intercept and R^2, or why ALine was refused) and <DIR>/calibration.csv (per model and dataset: ECE in % \
over 15 equal-width confidence bins, and the Brier score of top-1 correctness).

Methods: AC (average max-softmax confidence on the shift), DoC (ID top-1 minus the drop in average \
confidence), ATC-MC and ATC-NE (Garg et al. 2022: a threshold on max confidence or negative entropy \
fitted on the ID set's labels; the estimate is the share of shift images above it), ALine-S and \
ALine-D (Baek et al. 2022: the line of probit shift agreement on probit ID agreement over the model \
pairs whose agreements both lie in [0.05, 0.98], applied to each model's ID top-1 (S), or solved \
per model over all pairs (D)). ALine needs 3 models and two usable pairs; without them it is \
refused with the reason and the other methods still run. Where the line's R^2 is below --min-r2 its \
estimates are marked trusted=false. On a labelled shift the true top-1 and the error are given \
beside each estimate, which is how an estimator is validated.

The predictions must hold confidences (runs by this version; older folders are named and skipped).";

const ESTIMATE_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   Estimates written (methods or shifts that could not be estimated are named on stderr).
    2   Nothing could be estimated: no run.json, no ID predictions, no predictions with
        confidences, or a dataset whose models read different images.";

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
    /// Gate rules in TOML: max_drop, max_er_drop, max_average_er_drop, alpha,
    /// ignore_significance, accuracy_only, allow_missing, and [datasets.NAME] max_drop
    /// overrides. Flags override the file.
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
    /// Submit both scripts with sbatch: the array, then the merge with --dependency=afterok.
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

#[derive(Debug, Args)]
pub struct InterpolateArgs {
    /// The zero-shot model (α = 0): a model card or .onnx.
    #[arg(value_name = "A")]
    pub zero_shot: PathBuf,
    /// The fine-tuned model (α = 1), the same graph as A.
    #[arg(value_name = "B")]
    pub fine_tuned: PathBuf,
    /// Weights of B: a list (0,0.25,0.5) or a range START:END:STEP with END included
    /// (0:1:0.1). Each in [0, 1].
    #[arg(long, value_name = "LIST|RANGE", default_value = "0:1:0.1")]
    pub alphas: String,
    /// Folder the models and cards are written to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Name prefix of the outputs (<family>-a0.30). Default: <A name>+<B name>.
    #[arg(long, value_name = "NAME")]
    pub family: Option<String>,
    /// Group written into the cards (what `--baseline group:NAME` selects).
    #[arg(long, value_name = "NAME", default_value = "wise-ft")]
    pub group: String,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SoupArgs {
    /// The fine-tuned models (model cards or .onnx), at least two, all the same graph.
    #[arg(value_name = "MODELS", num_args = 2.., required = true)]
    pub models: Vec<PathBuf>,
    /// Folder the soup (and, with --greedy, its record and evaluations) is written to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Name of the soup model. Default: uniform-soup, or greedy-soup with --greedy.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Group written into the card.
    #[arg(long, value_name = "NAME", default_value = "soup")]
    pub group: String,
    /// Greedy soup: add models best first while held-out top-1 does not drop.
    #[arg(long, requires_all = ["held_out", "suite"])]
    pub greedy: bool,
    /// Dataset of --suite that chooses the greedy soup's models (not the test set you report).
    #[arg(long, value_name = "DATASET", requires = "greedy")]
    pub held_out: Option<String>,
    /// Suite holding the held-out dataset: a built-in name or a suite file.
    #[arg(long, value_name = "NAME|PATH", requires = "greedy")]
    pub suite: Option<String>,
    /// Folder the suite's relative manifest paths are resolved against.
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Execution provider for the held-out evaluation, as `run --provider`.
    #[arg(long, value_enum, default_value = "auto")]
    pub provider: ProviderArg,
    /// Images per inference batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch_size: u32,
    /// Threads for ONNX Runtime inference. Default: the number of CPU cores.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Progress display of the held-out evaluation.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
    /// Print what was written (with --greedy, the soup record) as JSON.
    #[arg(long)]
    pub json: bool,
}
