//! Finding models: cards and bare .onnx files in a folder or given one by one, names checked
//! for duplicates.

use super::*;

/// Model names become file names under `predictions/`, so keep them to a safe alphabet.
/// A model found at a `--models` path, before its card is read.
#[derive(Debug, Clone)]
pub enum Found {
    /// A model card (`.toml`).
    Card(PathBuf),
    /// An `.onnx` with no card beside it.
    Bare(PathBuf),
}

impl Found {
    pub fn path(&self) -> &Path {
        match self {
            Found::Card(p) | Found::Bare(p) => p,
        }
    }
}

/// What each `--models` path holds: a folder (every `*.toml` model card, plus any `*.onnx` that no
/// card in it names), one card, or one `.onnx` (its card beside it if present). Other `.toml` files
/// in a folder, such as provenance sidecars, are not cards (see `card_onnx`) and are passed over.
pub fn find(paths: &[PathBuf]) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            found.extend(find_in_folder(path)?);
        } else if has_ext(path, "toml") {
            if !path.is_file() {
                return Err(Error::Usage(format!(
                    "--models {}: no such file",
                    path.display()
                )));
            }
            found.push(Found::Card(path.clone()));
        } else if has_ext(path, "onnx") {
            if !path.is_file() {
                return Err(Error::Usage(format!(
                    "--models {}: no such file",
                    path.display()
                )));
            }
            let beside = path.with_extension("toml");
            if beside.is_file() && card_onnx(&beside).is_some() {
                found.push(Found::Card(beside));
            } else {
                found.push(Found::Bare(path.clone()));
            }
        } else {
            return Err(Error::Usage(format!(
                "--models {}: expected a folder of model cards, a card (.toml) or a model (.onnx)",
                path.display()
            )));
        }
    }
    if found.is_empty() {
        return Err(Error::Usage(
            "no models found: --models names no model cards or .onnx files".into(),
        ));
    }
    Ok(found)
}

/// The cards in a folder, then the `.onnx` files no card names.
pub(super) fn find_in_folder(dir: &Path) -> Result<Vec<Found>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut found = Vec::new();
    let mut covered = Vec::new();
    for file in entries.iter().filter(|p| has_ext(p, "toml")) {
        let Some(onnx) = card_onnx(file) else {
            continue;
        };
        if let Some(onnx) = onnx {
            let onnx = if onnx.is_absolute() {
                onnx
            } else {
                dir.join(onnx)
            };
            covered.push(std::fs::canonicalize(&onnx).unwrap_or(onnx));
        }
        found.push(Found::Card(file.clone()));
    }
    for onnx in entries.iter().filter(|p| has_ext(p, "onnx")) {
        let canon = std::fs::canonicalize(onnx).unwrap_or(onnx.clone());
        if !covered.contains(&canon) {
            found.push(Found::Bare(onnx.clone()));
        }
    }
    Ok(found)
}

/// Cards are small; a `.toml` larger than this is read as a card and reported when loaded.
pub(super) const CARD_SNIFF_BYTES: u64 = 1 << 20;

/// Whether a `.toml` is a model card, and if so the `onnx` it names. A card has an `onnx` key or a
/// table only cards have (`[preprocess]`, `[input]`, `[output]`, `[head]`); other TOML (a
/// provenance sidecar, a tool's config) is not a card: `None`. A file that is not valid TOML counts
/// as a (broken) card, `Some(None)`, so a typo in a card is reported rather than passed over.
pub(super) fn card_onnx(file: &Path) -> Option<Option<PathBuf>> {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(file)
        .and_then(|f| f.take(CARD_SNIFF_BYTES).read_to_string(&mut text))
        .is_ok();
    let Some(table) = read.then(|| text.parse::<toml::Table>().ok()).flatten() else {
        return Some(None);
    };
    let onnx = table
        .get("onnx")
        .and_then(|v| v.as_str())
        .map(PathBuf::from);
    let card_table = ["preprocess", "input", "output", "head"]
        .iter()
        .any(|key| table.get(*key).is_some_and(|v| v.is_table()));
    (table.contains_key("onnx") || card_table).then_some(onnx)
}

/// Load what `find` found. Warnings say what was assumed for bare models.
pub fn load_found(found: &Found, warn: &mut dyn FnMut(String)) -> Result<ModelCard> {
    match found {
        Found::Card(file) => ModelCard::load(file),
        Found::Bare(onnx) => bare_with_warning(onnx, warn),
    }
}

/// Cards found at each `--models` path (see `find`), all loaded and checked; names must be unique.
pub fn discover(paths: &[PathBuf], warn: &mut dyn FnMut(String)) -> Result<Vec<ModelCard>> {
    let cards = find(paths)?
        .iter()
        .map(|f| load_found(f, warn))
        .collect::<Result<Vec<_>>>()?;
    if let Some(dup) = duplicate_name(&cards) {
        return Err(Error::Usage(format!(
            "two models are named `{dup}`; model names must be unique"
        )));
    }
    Ok(cards)
}

pub fn duplicate_name(cards: &[ModelCard]) -> Option<String> {
    let mut names: Vec<&str> = cards.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names
        .windows(2)
        .find(|w| w[0] == w[1])
        .map(|w| w[0].to_string())
}

pub(super) fn bare_with_warning(onnx: &Path, warn: &mut dyn FnMut(String)) -> Result<ModelCard> {
    let beside = onnx.with_extension("toml");
    // Never advise writing over a file that is there: a .toml beside the model that is no card
    // is a provenance sidecar (or some tool's config), and the card goes under another name.
    let card_path = if beside.exists() {
        onnx.with_extension("card.toml")
    } else {
        beside.clone()
    };
    let sidecar = if beside.exists() {
        format!(
            " ({} beside it is not a model card: it has no `onnx` key and no [preprocess], \
             [input], [output] or [head] table, so it is read as a sidecar and left alone)",
            beside.display()
        )
    } else {
        String::new()
    };
    if !assume_imagenet() {
        return Err(Error::input(
            Location::file(onnx),
            format!(
                "no model card{sidecar}, so its preprocessing is unknown and none is assumed (a \
                 model scored with another's preprocessing loses many points without an error). \
                 Write a card, {}, with onnx = \"{}\" and a full [preprocess]; or pass \
                 --assume-imagenet-preprocessing to use ImageNet's: {IMAGENET_DEFAULTS}, 1000 classes",
                card_path.display(),
                onnx.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ),
        ));
    }
    let card = ModelCard::bare(onnx)?;
    warn(format!(
        "{} has no model card{sidecar}; assuming ImageNet's preprocessing as \
         --assume-imagenet-preprocessing says ({IMAGENET_DEFAULTS}) and 1000 classes. Write {} to \
         give its own.",
        onnx.display(),
        card_path.display()
    ));
    Ok(card)
}

pub(super) fn has_ext(path: &Path, ext: &str) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}
