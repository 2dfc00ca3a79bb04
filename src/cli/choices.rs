//! The library's enums as clap value enums. The library keeps no clap types; each mirror here has
//! the same variants (so the same command-line spellings) and converts with `into()`.

use robust_eval::analysis::fit::Transform;
use robust_eval::analysis::report::Format;
use robust_eval::engine::progress::ProgressMode;
use robust_eval::engine::runtime::ProviderChoice;
use robust_eval::input::manifest::Layout;
use robust_eval::scale::EngineJob;

/// A clap `ValueEnum` with the variants of a library enum, and the conversion into it.
macro_rules! mirror {
    ($(#[$meta:meta])* $name:ident => $target:ty { $($(#[$doc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
        pub enum $name {
            $($(#[$doc])* $variant),+
        }

        impl From<$name> for $target {
            fn from(choice: $name) -> Self {
                match choice {
                    $($name::$variant => <$target>::$variant),+
                }
            }
        }
    };
}

mirror!(TransformArg => Transform { Probit, Logit });
mirror!(EngineJobArg => EngineJob {
    /// When the shards may run on TensorRT: --provider tensorrt, or auto with GPUs requested.
    Auto,
    /// Always (exit 2 with --provider cpu or cuda, which build no engines).
    Yes,
    /// Never: each shard builds the engines it lacks.
    No,
});
mirror!(FormatArg => Format { Md, Html, Json });
mirror!(ProgressArg => ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    Bar,
    Plain,
    None,
});
mirror!(ProviderArg => ProviderChoice {
    /// TensorRT, then CUDA, then CPU: the first that initialises.
    Auto,
    Tensorrt,
    Cuda,
    Cpu,
});
mirror!(LayoutArg => Layout {
    /// ImageNet val: wnid folders, or flat files with --ground-truth.
    Imagenet,
    /// ImageNetV2 (any variant): folders `0`..`999` named by class index.
    ImagenetV2,
    /// ImageNet-Sketch: wnid folders.
    ImagenetSketch,
    /// ImageNet-R: wnid folders.
    ImagenetR,
    /// ImageNet-A: wnid folders.
    ImagenetA,
    /// ObjectNet 1.0: class folders under `images/`.
    Objectnet,
    /// ImageNet-C: <corruption>/<severity>/<wnid>/; --out is the data root.
    ImagenetC,
});
