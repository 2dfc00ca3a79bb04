//! The longer help texts: what each command is for, and its exit statuses (`--help` prints them
//! after the options, as a man page's DESCRIPTION and EXIT STATUS).

pub const EXIT_STATUS: &str = "\
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

pub const GATE_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   Passed: no drop is both over its threshold and significant (drops over the threshold that
        are not significant are reported as warnings).
    1   A regression: some drop (an mCE rise) is over its threshold and significant at --alpha; or a model
        (or one model's dataset) of the baseline is missing from the candidate, unless
        --allow-missing. Models only in the candidate are listed as new and do not fail.
    2   The comparison cannot be made: a missing results folder, no model on both sides, a
        --pair naming a model its side lacks, a side whose trend cannot be fitted (without
        --accuracy-only), or a paired row whose two sides scored different manifests.";

pub const PRUNE_ABOUT: &str =
    "Remove models from a results folder. A folder accumulates: each `run` \
adds or updates the pairs it evaluates and keeps every other model's rows, so adding one model \
evaluates one model, and `run` names what it kept (\"kept from earlier runs: ...\"). Fit, plots, \
reports and the gate use everything the folder holds. prune takes the folder's writer lock (as a \
run does), removes each named model's run.json entries, then its rows of evals.csv and \
failures.csv, then predictions/<model>/, each file replaced atomically, and redoes the fit, plots \
and reports. A prune interrupted part way is finished by running it again.";

pub const PRUNE_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   The models were removed (the analysis after it may still warn, e.g. too few models).
    2   Nothing was removed: no results folder, a model the folder does not hold, or another
        run holds the folder's lock.";

pub const MODELS_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   Every model found is valid.
    1   Some model is invalid; each problem is printed under it.
    2   Nothing could be checked: no models at the paths given, or ONNX Runtime is missing.";

pub const MODELS_ABOUT: &str =
    "List the models at --models and check each one as `run` would before \
reading any image: the card parses (every error names the file, line and field), its ONNX file is \
there and ONNX Runtime opens it on the CPU, the input (named by input.name, or the only one) is a \
float32 or float16 tensor of shape [N, 3, crop, crop] (or [N, crop, crop, 3] with \
input.layout = \"nhwc\"), and the output (output.name, or the first) is [N, num_classes + offset], \
or [N, embedding width] of the [head]'s weights for a zero-shot model. A fixed batch dimension is \
shown: `run` uses it as the batch size.";

pub const RUN_ABOUT: &str = "Evaluate every model on every dataset of a suite.\n\n\
Each (model, dataset) pair is scored as the literature scores it (1000-way for ImageNet, V2 and \
Sketch; logits restricted to 200 classes for ImageNet-R and ImageNet-A; ObjectNet with a 2-pixel border \
crop, restricted to its 125 mapped ImageNet classes, unmapped folders skipped), together with the \
class-restricted ImageNet rows (imagenet@imagenet-r, ...). Results go to --out: evals.csv, \
failures.csv, predictions/<model>/<dataset>.parquet and run.json, written atomically after each pair. \
A pair whose model file, manifest and preprocessing are unchanged is not evaluated again, so an \
interrupted run resumes where it stopped and adding a model evaluates only that model.";

pub const MERGE_ABOUT: &str = "Put the shards of a sharded run together: read every \
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

pub const MANIFEST_ABOUT: &str = "Build a manifest from a dataset's published on-disk layout.\n\n\
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

pub const FIT_ABOUT: &str = "Fit, per shift, ordinary least squares of T(OOD top-1) on T(ID top-1) over the \
baseline models (T = probit or logit, accuracies clipped to [0.01 %, 99.99 %] first), with R² in the \
transformed space and a 95 % bootstrap band; then each model's effective robustness, OOD top-1 minus \
the line's prediction at its ID top-1, with an interval carrying the band and the model's own \
Clopper–Pearson interval, and its average over shifts. Writes fit.json and robustness.csv into the \
results folder. The folder may hold only an evals.csv with columns model, dataset, top1 (group \
optional): every dataset other than the ID one and not of the form X@Y is a shift, and \
<id>@<shift> rows are class-restricted ID points.";

pub const GATE_ABOUT: &str = "Compare two results folders (as `run` writes them) row by row and decide which \
differences are real. Rows pair by model name, or by --pair BASELINE=CANDIDATE. The sets are \
compared too: a baseline model (or one of its datasets) that the candidate lacks fails the gate and \
is named, as a model whose export failed must not pass; a model only in the candidate is listed as \
new. Where both sides have \
per-image predictions over the same manifest (same sha256 in run.json), an exact McNemar test on the \
images that flipped decides significance; otherwise a two-proportion test on the counts, and the \
report says so. Effective robustness is fitted on each side as `fit` would; an ER drop counts as \
significant when the OOD accuracy change on that shift is. A model with an ImageNet-C mCE on both \
sides (all 75 corruption-severities) gets an mCE check: a rise over --max-mce-rise, significant by a \
conservative z test on the 75 datasets' paired changes. A check fails when its drop (for mCE, its \
rise) is larger than the threshold and significant at --alpha.";

pub const SLURM_ABOUT: &str = "Write the Slurm jobs that run a suite as N shards and merge them.\n\n\
<out>/slurm/shards.sbatch is an array job (--array=0-(N-1)): task I runs `robust-eval run <RUN ARGS> \
--shard auto`, which reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT and writes \
<out>/shards/I-of-N; its log is <out>/slurm/shard-I.out. <out>/slurm/merge.sbatch runs \
`robust-eval merge <out>`, which writes what one run would have written. Submit the merge with \
--dependency=afterok:<array job id> so it starts once every task succeeded; --submit submits \
them all and prints the job ids. Tasks are --requeue'd: one preempted or retried resumes its shard, \
evaluating only the pairs its folder lacks. Where the shards may run on TensorRT (--engine-job), \
<out>/slurm/engines.sbatch comes first: one task running `robust-eval run <RUN ARGS> \
--engines-only`, which builds every model's TensorRT engine once into <out>/tensorrt-cache; the \
array is submitted with --dependency=afterok:<engine job>, and a failed engine job holds it \
pending. The jobs run in the current folder (--chdir), so \
relative paths in RUN ARGS mean what they mean here; <out> is --out of RUN ARGS, else \
results/<suite name>.\n\nExample:\n    robust-eval slurm --shards 8 --partition gpu --gpus-per-task 1 \\\n        \
--cpus-per-task 8 --time 2:00:00 --submit \\\n        \
-- --suite imagenet-shifts --models models/ --threads 8";

pub const KUBERNETES_ABOUT: &str =
    "Write the Kubernetes Jobs that run a suite as N shards and merge them.\n\n\
<DIR>/shards.yaml is an Indexed Job (completionMode: Indexed, completions = parallelism = N): pod \
I runs `robust-eval run <RUN ARGS> --shard auto --shard-count N`, which reads \
JOB_COMPLETION_INDEX and writes <out>/shards/I-of-N on the volume claim mounted at --mount (also \
the working folder, so relative paths in RUN ARGS, and the default results/<suite name>, lie on \
the volume). Each index is retried on its own (--retries), and a pod evicted or preempted is \
started again without counting as a failure; it resumes its shard. <DIR>/merge.yaml is a Job \
running `robust-eval merge <out>`. Where the shards may run on TensorRT (--engine-job), \
<DIR>/engines.yaml is a Job running `robust-eval run <RUN ARGS> --engines-only`, which builds \
every model's TensorRT engine once. <DIR>/run.sh applies the engine Job, the shards and the merge \
in turn, each once the one before completed, and stops at the first that fails: the command is \
printed. Nothing is sent to a cluster.\n\nExample:\n    \
robust-eval kubernetes --shards 8 --image registry.example/robust-eval:1 \\\n        \
--volume-claim evals --gpus 1 \\\n        \
-- --suite imagenet-shifts --models models/ --out results/shifts";

pub const SCHEDULER_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   The files were written (and with --submit, both jobs were submitted).
    2   Nothing was submitted, or only the shards' array (the message says which and how to
        finish by hand): bad run arguments, a value the files cannot hold, sbatch missing or
        failing.";

pub const INTERVENTION_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   The models were written.
    2   Nothing or only part was written: the models are not the same graph (the message names
        both files and the first difference), their cards' settings differ, an integer weight
        differs, a file cannot be read or written, or (soup --greedy) the evaluation failed.";

pub const INTERPOLATE_ABOUT: &str = "WiSE-FT (Wortsman et al., \"Robust fine-tuning of zero-shot models\", \
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

pub const SOUP_ABOUT: &str = "Model soups (Wortsman et al., \"Model soups\", ICML 2022), from fine-tuned \
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

pub const ESTIMATE_ABOUT: &str = "Estimate each model's top-1 on every shift of a results folder from its \
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

pub const ESTIMATE_EXIT_STATUS: &str = "\
EXIT STATUS:
    0   Estimates written (methods or shifts that could not be estimated are named on stderr).
    2   Nothing could be estimated: no run.json, no ID predictions, no predictions with
        confidences, or a dataset whose models read different images.";
