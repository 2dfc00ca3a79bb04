//! Options of `interpolate` and `soup`.

use super::*;

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
