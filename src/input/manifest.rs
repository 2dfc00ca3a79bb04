//! Manifests: one CSV per dataset with a `path,label` header, one row per image. Reading checks every
//! row before any image is touched; `build` writes a manifest from a dataset's published layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Location, Result};
use crate::input::labels;
use crate::input::scoring::{Scoring, Target};

#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based line in the manifest file, for error messages.
    pub line: usize,
    /// The image path as written (relative to the manifest's folder unless absolute).
    pub path: String,
    /// The label as written: class index, wnid or ObjectNet folder name.
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: PathBuf,
    pub rows: Vec<Row>,
    /// sha256 of the manifest's bytes: a changed manifest means results must be recomputed.
    pub sha256: String,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:x}", hasher.finalize()))
}

impl Manifest {
    pub fn load(file: &Path) -> Result<Manifest> {
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        let sha256 = sha256_hex(&bytes);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(bytes.as_slice());
        let at = |line: usize| Location::file(file).line(line);
        let headers = reader
            .headers()
            .map_err(|e| Error::input(at(1), format!("cannot read the header: {e}")))?
            .clone();
        let column = |name: &str| headers.iter().position(|h| h.trim() == name);
        let path_col = column("path").ok_or_else(|| {
            Error::input(
                at(1).field("path"),
                format!(
                    "the header must name a `path` column, and a `label` column where the images \
                     have labels (found: {})",
                    headers.iter().collect::<Vec<_>>().join(",")
                ),
            )
        })?;
        // No `label` column: an unlabelled dataset, every row's label empty.
        let label_col = column("label");
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                Error::input(at(line), format!("malformed CSV row: {e}"))
            })?;
            let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
            let path = record.get(path_col).unwrap_or("").trim();
            let label = label_col.and_then(|c| record.get(c)).unwrap_or("").trim();
            if path.is_empty() {
                return Err(Error::input(at(line).field("path"), "empty image path"));
            }
            rows.push(Row {
                line,
                path: path.to_string(),
                label: label.to_string(),
            });
        }
        if rows.is_empty() {
            return Err(Error::input(
                Location::file(file),
                "the manifest lists no images",
            ));
        }
        Ok(Manifest {
            file: file.to_path_buf(),
            rows,
            sha256,
        })
    }

    /// Absolute (or cwd-relative) location of a row's image.
    pub fn resolve(&self, row: &Row) -> PathBuf {
        let p = Path::new(&row.path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.file.parent().unwrap_or(Path::new("")).join(p)
        }
    }

    /// Whether the manifest labels its images: every row has a label (true), or none has, or there
    /// is no `label` column (false). Some rows labelled and some not is an error naming the first
    /// row without one.
    pub fn labelled(&self) -> Result<bool> {
        let empty = self.rows.iter().filter(|r| r.label.is_empty()).count();
        if empty == 0 {
            return Ok(true);
        }
        if empty == self.rows.len() {
            return Ok(false);
        }
        let first = self.rows.iter().find(|r| r.label.is_empty());
        Err(Error::input(
            Location::file(&self.file)
                .line(first.map_or(0, |r| r.line))
                .field("label"),
            format!(
                "empty label, where {} of {} rows have one: label every row, leave every label \
                 empty, or mark the dataset `labels = false` in the suite to ignore them",
                self.rows.len() - empty,
                self.rows.len()
            ),
        ))
    }

    /// Each row's target under a scoring rule, `None` for rows the rule skips (ObjectNet images of
    /// folders with no ImageNet counterpart). Unknown labels are errors naming the row. Class
    /// indices of `all-classes` datasets are checked against each model in `evaluate`.
    pub fn targets(&self, scoring: Scoring) -> Result<Vec<Option<Target>>> {
        self.rows
            .iter()
            .map(|row| {
                resolve_label(&row.label, scoring).map_err(|msg| {
                    Error::input(
                        Location::file(&self.file).line(row.line).field("label"),
                        msg,
                    )
                })
            })
            .collect()
    }
}

/// An ImageNet class from an index (`0`–`999`) or a wnid (`n01440764`).
fn imagenet_class(label: &str) -> Result<usize, String> {
    if let Ok(i) = label.parse::<usize>() {
        return if i < labels::IMAGENET_CLASSES {
            Ok(i)
        } else {
            Err(format!("class index {i} is out of range 0–999"))
        };
    }
    labels::imagenet().index_of(label).ok_or_else(|| {
        format!("`{label}` is neither an ImageNet class index (0–999) nor an ImageNet wnid")
    })
}

fn resolve_label(label: &str, scoring: Scoring) -> Result<Option<Target>, String> {
    match scoring {
        Scoring::ImageNet1k => imagenet_class(label).map(|c| Some(Target::Class(c))),
        Scoring::ImageNetR | Scoring::ImageNetA => {
            let c = imagenet_class(label)?;
            let subset = if scoring == Scoring::ImageNetR {
                labels::imagenet_r()
            } else {
                labels::imagenet_a()
            };
            if subset.binary_search(&c).is_ok() {
                Ok(Some(Target::Class(c)))
            } else {
                Err(format!(
                    "class `{label}` ({}) is not one of the 200 {scoring} classes",
                    labels::imagenet().wnids[c]
                ))
            }
        }
        Scoring::ObjectNet => Ok(labels::objectnet()
            .class_of_folder(label)
            .map(Target::ObjectNet)),
        Scoring::AllClasses => {
            let c: usize = label.parse().map_err(|_| {
                format!("`{label}` is not a class index (all-classes scoring takes integers)")
            })?;
            Ok(Some(Target::Class(c)))
        }
    }
}

/// Dataset layouts `robust-eval manifest` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
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
    /// ImageNet-C: `<corruption>/<severity>/<wnid>/`, one manifest per corruption and severity
    /// (see `corruptions.rs`).
    ImagenetC,
}

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp", "gif", "tif", "tiff"];

/// Whether a file name has an image extension the loaders read.
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
        .collect::<Result<_>>()?;
    entries.sort();
    Ok(entries)
}

/// (label, image paths) of every class folder under `root`, folders in the order given.
fn class_folders(
    root: &Path,
    label_of: impl Fn(&str) -> Result<Option<String>>,
) -> Result<Vec<(String, PathBuf)>> {
    let mut folders: Vec<(String, PathBuf)> = Vec::new();
    for dir in sorted_dir(root)? {
        if !dir.is_dir() {
            continue;
        }
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if let Some(label) = label_of(&name)? {
            folders.push((label, dir));
        }
    }
    let mut rows = Vec::new();
    for (label, dir) in folders {
        for file in sorted_dir(&dir)? {
            if file.is_file() && is_image(&file) {
                rows.push((label.clone(), file));
            }
        }
    }
    Ok(rows)
}

/// Which ground-truth form labelled flat ImageNet val files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroundTruthForm {
    /// `LOC_val_solution.csv` (`ImageId,PredictionString`) or any `file,label` CSV.
    Csv,
    /// The devkit's `ILSVRC2012_validation_ground_truth.txt`: one ILSVRC2012_ID per line.
    Devkit,
    /// No ground-truth file: flat files whose names begin with their wnid (`n01440764_*.JPEG`).
    WnidFileNames,
}

impl std::fmt::Display for GroundTruthForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GroundTruthForm::Csv => "CSV of image id and label (LOC_val_solution.csv form)",
            GroundTruthForm::Devkit => {
                "devkit ground truth (one ILSVRC2012_ID per line, devkit synset order)"
            }
            GroundTruthForm::WnidFileNames => {
                "labels taken from the file names, which begin with their class's wnid (n01440764_*.JPEG)"
            }
        })
    }
}

/// What `scan` found: the rows (label, image path) and, for flat files, the ground truth's form.
#[derive(Debug, Clone)]
pub struct Scan {
    pub rows: Vec<(String, PathBuf)>,
    pub form: Option<GroundTruthForm>,
}

/// Rows (label, image path) for a dataset on disk.
pub fn scan(layout: Layout, root: &Path, ground_truth: Option<&Path>) -> Result<Scan> {
    if !root.is_dir() {
        return Err(Error::Usage(format!(
            "--root {}: no such folder",
            root.display()
        )));
    }
    let mut form = None;
    let rows = match (layout, ground_truth) {
        (Layout::Imagenet, Some(gt)) => {
            let (rows, read) = flat_with_ground_truth(root, gt)?;
            form = Some(read);
            rows
        }
        (Layout::Imagenet, None) => match class_folders(root, |name| wnid_folder(root, name))? {
            rows if rows.is_empty() => {
                let rows = flat_wnid_named(root)?;
                form = Some(GroundTruthForm::WnidFileNames);
                rows
            }
            rows => rows,
        },
        (Layout::ImagenetSketch | Layout::ImagenetR | Layout::ImagenetA, _) => {
            class_folders(root, |name| wnid_folder(root, name))?
        }
        (Layout::ImagenetV2, _) => v2_folders(root)?,
        (Layout::Objectnet, _) => objectnet_folders(root)?,
        (Layout::ImagenetC, _) => {
            return Err(Error::Usage(
                "imagenet-c trees hold many datasets: read them with corruptions::scan".into(),
            ))
        }
    };
    if rows.is_empty() {
        return Err(Error::Usage(format!(
            "no images found under {}",
            root.display()
        )));
    }
    Ok(Scan { rows, form })
}

/// The wnid a file name begins with (`n01440764_tench.JPEG`, `n01440764.jpg`), if it is one
/// of ImageNet's.
fn leading_wnid(name: &str) -> Option<&str> {
    let wnid = name.get(..9)?;
    let next = name[9..].chars().next()?;
    (matches!(next, '_' | '.' | '-') && labels::imagenet().index_of(wnid).is_some()).then_some(wnid)
}

/// Flat ImageNet files with no ground truth given: each labelled by the wnid its name begins
/// with, when every image's does. Otherwise the files seen are named, with --ground-truth.
fn flat_wnid_named(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let images: Vec<PathBuf> = sorted_dir(root)?
        .into_iter()
        .filter(|f| f.is_file() && is_image(f))
        .collect();
    let name = |f: &PathBuf| {
        f.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let unlabelled: Vec<&PathBuf> = images
        .iter()
        .filter(|f| leading_wnid(&name(f)).is_none())
        .collect();
    if images.is_empty() || !unlabelled.is_empty() {
        let seen = if images.is_empty() {
            "no wnid folders and no image files at the top level".to_string()
        } else {
            format!(
                "no wnid folders; {} image files at the top level, {} of them not named after a \
                 wnid (e.g. {})",
                images.len(),
                unlabelled.len(),
                unlabelled
                    .iter()
                    .take(3)
                    .map(|f| name(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(Error::Usage(format!(
            "no labelled images found under {}: {seen}. Give wnid folders (n01440764/...), files \
             named <wnid>_*.JPEG, or flat files with --ground-truth FILE (LOC_val_solution.csv, a \
             `file,label` CSV, or the devkit's {DEVKIT_GROUND_TRUTH})",
            root.display()
        )));
    }
    Ok(images
        .into_iter()
        .map(|f| (leading_wnid(&name(&f)).unwrap_or_default().to_string(), f))
        .collect())
}

fn wnid_folder(root: &Path, name: &str) -> Result<Option<String>> {
    if labels::imagenet().index_of(name).is_some() {
        Ok(Some(name.to_string()))
    } else {
        Err(Error::input(
            Location::file(root.join(name)),
            format!("folder `{name}` is not an ImageNet wnid"),
        ))
    }
}

fn v2_folders(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    // Folder names are class indices: parse them, never string-sort ("10" < "2" as text).
    let mut rows = class_folders(root, |name| match name.parse::<usize>() {
        Ok(i) if i < labels::IMAGENET_CLASSES => Ok(Some(i.to_string())),
        _ => Err(Error::input(
            Location::file(root.join(name)),
            format!("folder `{name}` is not a class index 0–999"),
        )),
    })?;
    rows.sort_by_key(|(label, path)| (label.parse::<usize>().unwrap_or(usize::MAX), path.clone()));
    Ok(rows)
}

fn objectnet_folders(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let images = if root.join("images").is_dir() {
        root.join("images")
    } else {
        root.to_path_buf()
    };
    // Every folder is listed; scoring skips the ones with no ImageNet counterpart.
    class_folders(&images, |name| {
        if labels::objectnet().is_known_folder(name) {
            Ok(Some(name.to_string()))
        } else {
            Err(Error::input(
                Location::file(images.join(name)),
                format!("folder `{name}` is not an ObjectNet 1.0 class"),
            ))
        }
    })
}

/// The devkit's file name; a file so named, or one whose first line is a bare integer, is read as
/// the devkit form.
const DEVKIT_GROUND_TRUTH: &str = "ILSVRC2012_validation_ground_truth.txt";
/// ILSVRC2012_ID → wnid from the devkit's meta.mat (see assets/labels/SOURCES.md).
const DEVKIT_ID_WNID: &str = include_str!("../../assets/labels/ilsvrc2012_devkit_id_wnid.tsv");
/// The ground truth of all 50,000 val images is a few MB; refuse anything far larger.
const GROUND_TRUTH_MAX_BYTES: u64 = 64 << 20;

/// wnids by ILSVRC2012_ID - 1 (the table's rows are in ID order; a unit test checks it).
fn devkit_wnids() -> Vec<&'static str> {
    DEVKIT_ID_WNID
        .lines()
        .skip(1)
        .filter_map(|line| line.split('\t').nth(1))
        .collect()
}

fn read_bounded(path: &Path, limit: u64) -> Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut text = String::new();
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(path, e))?;
    if text.len() as u64 > limit {
        return Err(Error::input(
            Location::file(path),
            format!("larger than {} MiB: not a ground-truth file", limit >> 20),
        ));
    }
    Ok(text)
}

fn is_devkit_form(gt: &Path, text: &str) -> bool {
    let named = gt.file_name().and_then(|n| n.to_str()) == Some(DEVKIT_GROUND_TRUTH);
    let first = text.lines().next().unwrap_or("").trim();
    named || (!first.is_empty() && first.bytes().all(|b| b.is_ascii_digit()))
}

/// Labels by file stem from the devkit form: line i labels `ILSVRC2012_val_{i:08}`.
fn devkit_labels(gt: &Path, text: &str) -> Result<HashMap<String, String>> {
    let wnids = devkit_wnids();
    let mut labels_by_stem = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let id = line.trim();
        let wnid = id
            .parse::<usize>()
            .ok()
            .and_then(|id| id.checked_sub(1))
            .and_then(|i| wnids.get(i));
        let Some(wnid) = wnid else {
            return Err(Error::input(
                Location::file(gt).line(i + 1).field("ILSVRC2012_ID"),
                format!(
                    "`{id}` is not an ILSVRC2012_ID (1–{}): the devkit form has one per line",
                    wnids.len()
                ),
            ));
        };
        labels_by_stem.insert(format!("ILSVRC2012_val_{:08}", i + 1), wnid.to_string());
    }
    Ok(labels_by_stem)
}

/// Labels by file stem from a CSV of image id and label (wnid first in `PredictionString`).
fn csv_labels(gt: &Path, text: &str) -> Result<HashMap<String, String>> {
    let mut labels_by_stem = HashMap::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    for record in reader.records() {
        let record =
            record.map_err(|e| Error::input(Location::file(gt), format!("malformed CSV: {e}")))?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        let (Some(id), Some(label)) = (record.get(0), record.get(1)) else {
            return Err(Error::input(
                Location::file(gt).line(line),
                "expected two columns: image id, label",
            ));
        };
        let label = label.split_whitespace().next().unwrap_or("").to_string();
        if imagenet_class(&label).is_err() {
            return Err(Error::input(
                Location::file(gt).line(line).field("label"),
                format!("`{label}` is not an ImageNet class"),
            ));
        }
        let stem = Path::new(id.trim())
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        labels_by_stem.insert(stem, label);
    }
    Ok(labels_by_stem)
}

/// Flat ImageNet val files labelled by a ground-truth file: the `LOC_val_solution.csv` form
/// (`ImageId,PredictionString` with the wnid first), any `file,label` CSV, or the devkit's
/// `ILSVRC2012_validation_ground_truth.txt`. Returns the rows and the form read.
fn flat_with_ground_truth(
    root: &Path,
    gt: &Path,
) -> Result<(Vec<(String, PathBuf)>, GroundTruthForm)> {
    let text = read_bounded(gt, GROUND_TRUTH_MAX_BYTES)?;
    let (labels_by_stem, form) = if is_devkit_form(gt, &text) {
        (devkit_labels(gt, &text)?, GroundTruthForm::Devkit)
    } else {
        (csv_labels(gt, &text)?, GroundTruthForm::Csv)
    };
    let mut rows = Vec::new();
    for file in sorted_dir(root)? {
        if !(file.is_file() && is_image(&file)) {
            continue;
        }
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        match labels_by_stem.get(stem) {
            Some(label) => rows.push((label.clone(), file)),
            None => {
                return Err(Error::input(
                    Location::file(gt),
                    format!("no label for image {}", file.display()),
                ))
            }
        }
    }
    Ok((rows, form))
}

/// Write a manifest for `rows` to `out`, paths relative to `out`'s folder where the images lie below it.
pub fn write(rows: &[(String, PathBuf)], out: &Path) -> Result<()> {
    let base = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base).map_err(|e| Error::io(base, e))?;
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(["path", "label"])
        .map_err(|e| Error::Other(e.to_string()))?;
    for (label, path) in rows {
        let abs = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        let shown = abs
            .strip_prefix(&base)
            .map(Path::to_path_buf)
            .unwrap_or(abs);
        writer
            .write_record([shown.to_string_lossy().as_ref(), label.as_str()])
            .map_err(|e| Error::Other(e.to_string()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::Other(e.to_string()))?;
    crate::files::write_atomic(out, &bytes)
}

#[cfg(test)]
mod tests;
