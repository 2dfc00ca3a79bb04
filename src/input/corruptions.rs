//! ImageNet-C and trees laid out like it: `<corruption>/<severity>/<wnid>/*.JPEG`. Reads the tree,
//! says what is missing, and writes one manifest per corruption and severity where the built-in
//! `imagenet-c` suite looks for them: `<data root>/imagenet-c/<corruption>/<severity>/manifest.csv`,
//! dataset `imagenet-c-<corruption>-<severity>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Location, Result};
use crate::input::{is_safe_name, labels, manifest};

/// The corruption table (see assets/corruptions/SOURCES.md).
const IMAGENET_C_TSV: &str = include_str!("../../assets/corruptions/imagenet-c.tsv");

/// The other named corruption sets in the same layout (see assets/corruptions/SOURCES.md).
const SETS_TSV: &str = include_str!("../../assets/corruptions/sets.tsv");

/// Severities of ImageNet-C and its kin.
pub const SEVERITIES: std::ops::RangeInclusive<u32> = 1..=5;

/// Prefix of the dataset names the built-in suite gives corruption test sets.
pub const DATASET_PREFIX: &str = "imagenet-c-";

/// Folder under the data root that holds the manifests.
pub const DATA_FOLDER: &str = "imagenet-c";

/// Family folders some people keep above the corruption folders (the release's tarball names).
const FAMILY_FOLDERS: &[&str] = &["noise", "blur", "weather", "digital", "extra"];

/// One row of the corruption table.
#[derive(Debug, Clone, PartialEq)]
pub struct Corruption {
    pub name: String,
    pub family: String,
    /// One of the 15 that mCE averages over.
    pub in_mce: bool,
    /// AlexNet's top-1 error averaged over the five severities (fraction); None for the extras.
    pub alexnet_error: Option<f64>,
}

/// The published ImageNet-C constants: the 19 corruptions and AlexNet's clean error.
#[derive(Debug, Clone)]
pub struct Table {
    pub corruptions: Vec<Corruption>,
    pub alexnet_clean_error: f64,
}

impl Table {
    pub fn benchmark(&self) -> impl Iterator<Item = &Corruption> {
        self.corruptions.iter().filter(|c| c.in_mce)
    }

    pub fn get(&self, name: &str) -> Option<&Corruption> {
        self.corruptions.iter().find(|c| c.name == name)
    }
}

/// The shipped table, parsed once. A unit test checks it parses; it is compiled in, so a failure
/// here is a build defect, not bad input.
pub fn imagenet_c() -> &'static Table {
    static TABLE: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| parse_table(IMAGENET_C_TSV).expect("assets/corruptions/imagenet-c.tsv"))
}

fn parse_table(text: &str) -> std::result::Result<Table, String> {
    let mut corruptions = Vec::new();
    let mut clean = None;
    for (i, line) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [name, family, in_mce, error] = cols[..] else {
            return Err(format!("line {}: expected 4 columns", i + 1));
        };
        let error = match error.trim() {
            "" => None,
            e => Some(
                e.parse::<f64>()
                    .map_err(|e| format!("line {}: {e}", i + 1))?,
            ),
        };
        if name == "clean" {
            clean = error;
            continue;
        }
        corruptions.push(Corruption {
            name: name.to_string(),
            family: family.to_string(),
            in_mce: in_mce == "true",
            alexnet_error: error,
        });
    }
    Ok(Table {
        corruptions,
        alexnet_clean_error: clean.ok_or("no `clean` row")?,
    })
}

/// A named corruption set that shares ImageNet-C's layout (ImageNet-C̄, ImageNet-3DCC), with the
/// reference its errors are normalised by. None of them has a published one, so they get errors,
/// never CE or mCE.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedSet {
    /// `imagenet-c-bar`, `imagenet-3dcc`.
    pub name: String,
    pub title: String,
    pub corruptions: Vec<String>,
    /// The normalising reference's name; None where none is published.
    pub reference: Option<String>,
}

/// The shipped named sets, parsed once (compiled in: a failure is a build defect).
pub fn named_sets() -> &'static [NamedSet] {
    static SETS: std::sync::OnceLock<Vec<NamedSet>> = std::sync::OnceLock::new();
    SETS.get_or_init(|| parse_sets(SETS_TSV).expect("assets/corruptions/sets.tsv"))
}

/// The named set a corruption folder belongs to, if any.
pub fn named_set_of(corruption: &str) -> Option<&'static NamedSet> {
    named_sets()
        .iter()
        .find(|s| s.corruptions.iter().any(|c| c == corruption))
}

fn parse_sets(text: &str) -> std::result::Result<Vec<NamedSet>, String> {
    let mut sets: Vec<NamedSet> = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let [set, title, corruption, reference] = line.split('\t').collect::<Vec<_>>()[..] else {
            return Err(format!("line {}: expected 4 columns", i + 1));
        };
        let reference = (reference != "none").then(|| reference.to_string());
        match sets.iter_mut().find(|s| s.name == set) {
            Some(s) => s.corruptions.push(corruption.to_string()),
            None => sets.push(NamedSet {
                name: set.to_string(),
                title: title.to_string(),
                corruptions: vec![corruption.to_string()],
                reference,
            }),
        }
    }
    Ok(sets)
}

/// The dataset name of a corruption at a severity.
pub fn dataset_name(corruption: &str, severity: u32) -> String {
    format!("{DATASET_PREFIX}{corruption}-{severity}")
}

/// (corruption, severity) of a dataset named `imagenet-c-<corruption>-<severity>`, severity 1–5.
pub fn parse_dataset(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix(DATASET_PREFIX)?;
    let (corruption, severity) = rest.rsplit_once('-')?;
    let severity: u32 = severity.parse().ok()?;
    (SEVERITIES.contains(&severity) && !corruption.is_empty()).then_some((corruption, severity))
}

/// Whether a dataset is one corruption-severity of ImageNet-C (or a tree named like it).
pub fn is_corruption_dataset(name: &str) -> bool {
    parse_dataset(name).is_some()
}

/// What `scan` found in a tree.
#[derive(Debug, Default)]
pub struct Tree {
    /// (corruption, severity) → rows (wnid, image path), in folder order.
    pub sets: BTreeMap<(String, u32), Vec<(String, PathBuf)>>,
    /// Benchmark corruptions with no folder at all.
    pub missing_corruptions: Vec<String>,
    /// `corruption/severity` of present corruptions that lack a severity folder (or its images).
    pub missing_severities: Vec<String>,
    /// Corruption folders that are neither among the 19 ImageNet-C names nor in a named set
    /// (read all the same).
    pub unknown: Vec<String>,
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn subfolders(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// Corruption folders under `root`, looking one level into family folders (`noise/gaussian_noise`)
/// where the tarballs were unpacked each into its own folder.
fn corruption_folders(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for dir in subfolders(root)? {
        if FAMILY_FOLDERS.contains(&name_of(&dir).as_str()) {
            found.extend(subfolders(&dir)?);
        } else {
            found.push(dir);
        }
    }
    Ok(found)
}

/// Read a tree. Bad folders (a severity outside 1–5, a class folder that is not a wnid, a
/// corruption name that cannot name a dataset) are errors naming the path; nothing is written.
pub fn scan(root: &Path) -> Result<Tree> {
    if !root.is_dir() {
        return Err(Error::Usage(format!(
            "--root {}: no such folder",
            root.display()
        )));
    }
    let table = imagenet_c();
    let mut tree = Tree::default();
    for dir in corruption_folders(root)? {
        let corruption = name_of(&dir);
        if !is_safe_name(&corruption) || corruption.contains('@') || corruption.contains('-') {
            return Err(Error::input(
                Location::file(&dir),
                format!("folder `{corruption}` cannot name a corruption: use letters, digits and _ (it becomes part of dataset and file names)"),
            ));
        }
        if table.get(&corruption).is_none() && named_set_of(&corruption).is_none() {
            tree.unknown.push(corruption.clone());
        }
        for sev_dir in subfolders(&dir)? {
            let sev_name = name_of(&sev_dir);
            let severity = sev_name
                .parse::<u32>()
                .ok()
                .filter(|s| SEVERITIES.contains(s))
                .ok_or_else(|| {
                    Error::input(
                        Location::file(&sev_dir),
                        format!("severity folder `{sev_name}` is not one of 1–5"),
                    )
                })?;
            let rows = wnid_rows(&sev_dir)?;
            if !rows.is_empty() {
                tree.sets.insert((corruption.clone(), severity), rows);
            }
        }
        for s in SEVERITIES {
            if !tree.sets.contains_key(&(corruption.clone(), s)) {
                tree.missing_severities.push(format!("{corruption}/{s}"));
            }
        }
    }
    let present: Vec<&str> = tree.sets.keys().map(|(c, _)| c.as_str()).collect();
    tree.missing_corruptions = table
        .benchmark()
        .filter(|c| !present.contains(&c.name.as_str()))
        .map(|c| c.name.clone())
        .collect();
    if tree.sets.is_empty() {
        return Err(Error::Usage(format!(
            "no images found under {} in the <corruption>/<severity>/<wnid>/ layout",
            root.display()
        )));
    }
    Ok(tree)
}

/// (wnid, image) rows of the wnid folders in a severity folder.
fn wnid_rows(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut rows = Vec::new();
    for class_dir in subfolders(dir)? {
        let wnid = name_of(&class_dir);
        if labels::imagenet().index_of(&wnid).is_none() {
            return Err(Error::input(
                Location::file(&class_dir),
                format!("folder `{wnid}` is not an ImageNet wnid"),
            ));
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&class_dir)
            .map_err(|e| Error::io(&class_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && manifest::is_image(p))
            .collect();
        files.sort();
        rows.extend(files.into_iter().map(|f| (wnid.clone(), f)));
    }
    Ok(rows)
}

/// Where the manifest of a corruption at a severity lies under a data root.
pub fn manifest_path(data_root: &Path, corruption: &str, severity: u32) -> PathBuf {
    data_root
        .join(DATA_FOLDER)
        .join(corruption)
        .join(severity.to_string())
        .join("manifest.csv")
}

/// Write every manifest of a scanned tree under `data_root` (each atomically). Returns the files.
pub fn write(tree: &Tree, data_root: &Path) -> Result<Vec<(PathBuf, usize)>> {
    let mut written = Vec::new();
    for ((corruption, severity), rows) in &tree.sets {
        let path = manifest_path(data_root, corruption, *severity);
        let dir = path.parent().expect("a manifest path has a folder");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        manifest::write(rows, &path)?;
        written.push((path, rows.len()));
    }
    Ok(written)
}

/// Lines that say what a tree holds and lacks, for stderr.
pub fn describe(tree: &Tree) -> Vec<String> {
    let table = imagenet_c();
    let names: Vec<&str> = {
        let mut n: Vec<&str> = tree.sets.keys().map(|(c, _)| c.as_str()).collect();
        n.dedup();
        n
    };
    let benchmark = table
        .benchmark()
        .filter(|c| names.contains(&c.name.as_str()))
        .count();
    let extras: Vec<&str> = table
        .corruptions
        .iter()
        .filter(|c| !c.in_mce && names.contains(&c.name.as_str()))
        .map(|c| c.name.as_str())
        .collect();
    let named = named_set_lines(&names);
    // A tree of another named set alone (a C̄ tree, say) is not an ImageNet-C tree with gaps.
    let only_named = benchmark == 0 && extras.is_empty() && !named.is_empty();
    let mut lines = Vec::new();
    if !only_named {
        lines.push(format!(
            "found {benchmark} of the 15 ImageNet-C corruptions, {} of the 4 extras{}",
            extras.len(),
            if extras.is_empty() {
                String::new()
            } else {
                format!(" ({})", extras.join(", "))
            }
        ));
    }
    lines.extend(named);
    if !only_named && !tree.missing_corruptions.is_empty() {
        lines.push(format!(
            "missing corruptions: {} (mCE will be withheld; relative to what is present it is marked partial)",
            tree.missing_corruptions.join(", ")
        ));
    }
    if !tree.missing_severities.is_empty() {
        lines.push(format!(
            "missing severities: {}",
            tree.missing_severities.join(", ")
        ));
    }
    if !tree.unknown.is_empty() {
        lines.push(format!(
            "not corruptions of ImageNet-C or a named set (manifests written, never in mCE; the built-in suite does not list them): {}",
            tree.unknown.join(", ")
        ));
    }
    lines
}

/// One line per named set with a corruption in the tree: how many of its corruptions, which are
/// missing, and that it has no normalising reference.
fn named_set_lines(names: &[&str]) -> Vec<String> {
    named_sets()
        .iter()
        .filter_map(|set| {
            let (found, missing): (Vec<&String>, Vec<&String>) = set
                .corruptions
                .iter()
                .partition(|c| names.contains(&c.as_str()));
            if found.is_empty() {
                return None;
            }
            let mut line = format!(
                "found {} of the {} {} corruptions ({})",
                found.len(),
                set.corruptions.len(),
                set.title,
                set.name
            );
            if !missing.is_empty() {
                let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                line += &format!("; missing: {}", missing.join(", "));
            }
            line += &match &set.reference {
                Some(r) => format!("; normalised by {r}"),
                None => "; no normalising reference is published: errors only, no CE or mCE".into(),
            };
            Some(line)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_15_benchmark_corruptions_4_extras_and_alexnet_clean() {
        let t = imagenet_c();
        assert_eq!(t.benchmark().count(), 15);
        assert_eq!(t.corruptions.len(), 19);
        assert!(t.benchmark().all(|c| c.alexnet_error.is_some()));
        assert!(t
            .corruptions
            .iter()
            .filter(|c| !c.in_mce)
            .all(|c| c.alexnet_error.is_none()));
        assert_eq!(
            t.get("gaussian_noise").unwrap().alexnet_error,
            Some(0.886428)
        );
        assert_eq!(
            t.get("jpeg_compression").unwrap().alexnet_error,
            Some(0.6065)
        );
        assert!((t.alexnet_clean_error - 0.43478).abs() < 1e-12);
        let families: Vec<&str> = t.benchmark().map(|c| c.family.as_str()).collect();
        assert_eq!(families.iter().filter(|f| **f == "noise").count(), 3);
        assert_eq!(families.iter().filter(|f| **f == "digital").count(), 4);
    }

    #[test]
    fn dataset_names_round_trip_and_others_are_not_corruptions() {
        assert_eq!(dataset_name("zoom_blur", 3), "imagenet-c-zoom_blur-3");
        assert_eq!(
            parse_dataset("imagenet-c-zoom_blur-3"),
            Some(("zoom_blur", 3))
        );
        for other in [
            "imagenet",
            "imagenet-r",
            "imagenet-c-fog-6",
            "imagenet-c--2",
            "imagenet-c-fog",
        ] {
            assert_eq!(parse_dataset(other), None, "{other}");
        }
    }

    #[test]
    fn bad_folders_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let class = dir.path().join("fog/6/n01440764");
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(class.join("a.JPEG"), b"").unwrap();
        let err = scan(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("fog/6") && err.contains("not one of 1–5"),
            "{err}"
        );
        std::fs::rename(dir.path().join("fog/6"), dir.path().join("fog/2")).unwrap();
        std::fs::create_dir_all(dir.path().join("fog/3/cats")).unwrap();
        let err = scan(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("fog/3/cats") && err.contains("not an ImageNet wnid"),
            "{err}"
        );
        std::fs::remove_dir(dir.path().join("fog/3/cats")).unwrap();
        let tree = scan(dir.path()).unwrap();
        assert_eq!(tree.sets.len(), 1);
        assert!(tree.missing_severities.contains(&"fog/3".to_string()));
        assert_eq!(tree.missing_corruptions.len(), 14);
    }
}
