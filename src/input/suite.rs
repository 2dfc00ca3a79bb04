//! Suites: which datasets a run evaluates, which one is in-distribution, and how each is scored.
//!
//! A suite is found by path (`my-suite.toml`) or by name (`imagenet-shifts`, `demo`, shipped in the
//! binary). It is checked completely before any work starts: unknown keys, an `id` that names no
//! dataset and unknown scoring rules are errors naming the file, line and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Location, Result};
use crate::input::check_name;
use crate::input::preprocessing::ResizeMode;
use crate::input::scoring::Scoring;

const IMAGENET_SHIFTS: &str = include_str!("../../suites/imagenet-shifts.toml");
const IMAGENET_C: &str = include_str!("../../suites/imagenet-c.toml");

/// Suites shipped in the binary, by name. `demo` is extracted with its data (see `demo.rs`).
pub const BUILTIN: &[&str] = &["imagenet-shifts", "imagenet-c", "demo"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    name: String,
    id: String,
    description: Option<String>,
    data_root: Option<PathBuf>,
    models: Option<PathBuf>,
    baseline: Option<String>,
    datasets: BTreeMap<String, RawDataset>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    manifest: PathBuf,
    scoring: String,
    #[serde(default = "yes")]
    default: bool,
    /// A missing manifest skips the dataset (named on stderr) instead of stopping the run.
    #[serde(default)]
    optional: bool,
    /// `model` (default) or `none` (centre crop only); see `ResizeMode`.
    resize: Option<String>,
    description: Option<String>,
    /// `false`: the dataset has no labels (its manifest's labels, if any, are ignored); absent:
    /// read from the manifest (no `label` column, or every label empty, means unlabelled).
    labels: Option<bool>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    /// Manifest path as written in the suite (resolved against the data root at run time).
    pub manifest: PathBuf,
    pub scoring: Scoring,
    /// Evaluated unless the user picks datasets explicitly.
    pub default: bool,
    /// Skipped, with a note, when its manifest does not exist (ImageNet-C trees with gaps).
    pub optional: bool,
    /// How images are brought to each model's input on this dataset.
    pub resize: ResizeMode,
    pub description: Option<String>,
    /// `Some(false)`: unlabelled whatever the manifest says; `Some(true)`: the manifest must have
    /// labels; `None`: as the manifest has them.
    pub labels: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Suite {
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    /// Name of the in-distribution dataset.
    pub id: String,
    /// Datasets in evaluation order: the ID dataset first, then the rest by name.
    pub datasets: Vec<Dataset>,
    /// Data root named by the suite itself, already resolved against the suite's folder.
    pub data_root: Option<PathBuf>,
    /// Models the suite brings along (the demo's), resolved against the suite's folder.
    pub models: Option<PathBuf>,
    /// Default baseline models for the trend fit (`--baseline` syntax).
    pub baseline: Option<String>,
}

/// Byte offset → 1-based line number, for pointing at the offending TOML line.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// A toml parse error as an input error with file and line.
pub(crate) fn toml_error(file: &Path, text: &str, e: &toml::de::Error) -> Error {
    let mut at = Location::file(file);
    if let Some(span) = e.span() {
        at = at.line(line_of(text, span.start));
    }
    Error::input(at, e.message().to_string())
}

/// Line of `key = ...` inside `[table]`, best effort, for errors found after parsing.
pub(crate) fn line_of_key(text: &str, table: Option<&str>, key: &str) -> Option<usize> {
    let mut in_table = table.is_none();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let name = trimmed
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .replace('"', "");
            in_table = Some(name.as_str()) == table;
            continue;
        }
        if in_table {
            if let Some((k, _)) = trimmed.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

impl Suite {
    /// A suite by path if `name_or_path` is an existing file (or ends in `.toml`), else by built-in name.
    pub fn find(name_or_path: &str) -> Result<Suite> {
        let path = Path::new(name_or_path);
        if path.is_file() || name_or_path.ends_with(".toml") {
            return Suite::load(path);
        }
        match name_or_path {
            "imagenet-shifts" => Suite::parse(
                Path::new("<built-in>/suites/imagenet-shifts.toml"),
                IMAGENET_SHIFTS,
                None,
            ),
            "imagenet-c" => Suite::parse(
                Path::new("<built-in>/suites/imagenet-c.toml"),
                IMAGENET_C,
                None,
            ),
            "demo" => {
                let root = crate::input::demo::extract()?;
                Suite::load(&root.join("suites").join("demo.toml"))
            }
            _ => Err(Error::Usage(format!(
                "no suite named `{name_or_path}`: give a path to a suite file, or one of: {}",
                BUILTIN.join(", ")
            ))),
        }
    }

    pub fn load(file: &Path) -> Result<Suite> {
        let text = crate::input::read_text(file, crate::input::MAX_SETTINGS_BYTES)?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        Suite::parse(file, &text, Some(&base))
    }

    /// Parse and check a suite. `base` is the folder relative paths in the suite refer to.
    pub fn parse(file: &Path, text: &str, base: Option<&Path>) -> Result<Suite> {
        let raw: RawSuite = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let at = |table: Option<&str>, key: &str| {
            let mut loc = Location::file(file).field(match table {
                Some(t) => format!("{t}.{key}"),
                None => key.to_string(),
            });
            if let Some(line) = line_of_key(text, table, key) {
                loc = loc.line(line);
            }
            loc
        };
        check_name("suite", &raw.name).map_err(|m| Error::input(at(None, "name"), m))?;
        if raw.datasets.is_empty() {
            return Err(Error::input(
                at(None, "datasets"),
                "a suite needs at least one dataset",
            ));
        }
        let mut datasets = Vec::new();
        for (name, d) in raw.datasets {
            let table = format!("datasets.{name}");
            check_name("dataset", &name)
                .map_err(|m| Error::input(at(Some(&table), "manifest"), m))?;
            let scoring: Scoring = d
                .scoring
                .parse()
                .map_err(|msg: String| Error::input(at(Some(&table), "scoring"), msg))?;
            let resize: ResizeMode = match &d.resize {
                Some(mode) => mode
                    .parse()
                    .map_err(|msg: String| Error::input(at(Some(&table), "resize"), msg))?,
                None => ResizeMode::Model,
            };
            datasets.push(Dataset {
                name,
                manifest: d.manifest,
                scoring,
                default: d.default,
                optional: d.optional,
                resize,
                description: d.description,
                labels: d.labels,
            });
        }
        let Some(id_pos) = datasets.iter().position(|d| d.name == raw.id) else {
            let names: Vec<&str> = datasets.iter().map(|d| d.name.as_str()).collect();
            return Err(Error::input(
                at(None, "id"),
                format!(
                    "`{}` is not one of the suite's datasets ({})",
                    raw.id,
                    names.join(", ")
                ),
            ));
        };
        let id_scoring = datasets[id_pos].scoring;
        if !matches!(id_scoring, Scoring::ImageNet1k | Scoring::AllClasses) {
            return Err(Error::input(
                at(None, "id"),
                format!("the in-distribution dataset must be scored `imagenet-1k` or `all-classes`, not `{id_scoring}`"),
            ));
        }
        let id = datasets.remove(id_pos);
        datasets.insert(0, id);
        Ok(Suite {
            name: raw.name,
            file: file.to_path_buf(),
            description: raw.description,
            id: raw.id,
            datasets,
            data_root: raw.data_root.map(|p| base.map(|b| b.join(&p)).unwrap_or(p)),
            models: raw.models.map(|p| base.map(|b| b.join(&p)).unwrap_or(p)),
            baseline: raw.baseline,
        })
    }

    /// The datasets to evaluate: the defaults, or those named (the ID dataset always comes along,
    /// since the shifts are measured against it). `all` selects every dataset.
    pub fn select(&self, names: &[String]) -> Result<Vec<Dataset>> {
        if names.is_empty() {
            return Ok(self
                .datasets
                .iter()
                .filter(|d| d.default || d.name == self.id)
                .cloned()
                .collect());
        }
        if names.iter().any(|n| n == "all") {
            return Ok(self.datasets.clone());
        }
        for n in names {
            if !self.datasets.iter().any(|d| &d.name == n) {
                let known: Vec<&str> = self.datasets.iter().map(|d| d.name.as_str()).collect();
                return Err(Error::Usage(format!(
                    "--datasets: suite `{}` has no dataset `{n}` (it has: {})",
                    self.name,
                    known.join(", ")
                )));
            }
        }
        Ok(self
            .datasets
            .iter()
            .filter(|d| d.name == self.id || names.contains(&d.name))
            .cloned()
            .collect())
    }

    /// Where a dataset's manifest is: absolute as written, else under the data root.
    pub fn manifest_path(&self, dataset: &Dataset, data_root: Option<&Path>) -> Result<PathBuf> {
        if dataset.manifest.is_absolute() {
            return Ok(dataset.manifest.clone());
        }
        match data_root.or(self.data_root.as_deref()) {
            Some(root) => Ok(root.join(&dataset.manifest)),
            None => Err(Error::Usage(format!(
                "dataset `{}` has a relative manifest path ({}); pass --data-root DIR to say where the datasets are",
                dataset.name,
                dataset.manifest.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_imagenet_shifts_parses_with_id_first() {
        let s = Suite::find("imagenet-shifts").unwrap();
        assert_eq!(s.datasets[0].name, "imagenet");
        let defaults: Vec<String> = s.select(&[]).unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(defaults.len(), 6, "{defaults:?}");
        assert_eq!(s.select(&["all".into()]).unwrap().len(), 8);
    }

    #[test]
    fn builtin_imagenet_c_lists_every_corruption_and_severity() {
        let s = Suite::find("imagenet-c").unwrap();
        assert_eq!(s.datasets[0].name, "imagenet");
        assert!(!s.datasets[0].optional);
        assert_eq!(s.datasets[0].resize, ResizeMode::Model);
        let table = crate::input::corruptions::imagenet_c();
        assert_eq!(s.datasets.len(), 1 + 5 * table.corruptions.len());
        for c in &table.corruptions {
            for sev in crate::input::corruptions::SEVERITIES {
                let name = crate::input::corruptions::dataset_name(&c.name, sev);
                let d = s.datasets.iter().find(|d| d.name == name).expect(&name);
                assert!(
                    d.optional && d.default && d.resize == ResizeMode::None,
                    "{name}"
                );
                let expected =
                    crate::input::corruptions::manifest_path(Path::new(""), &c.name, sev);
                assert_eq!(d.manifest, expected);
            }
        }
    }

    #[test]
    fn unknown_resize_mode_names_the_field() {
        let text = "name = \"x\"\nid = \"a\"\n[datasets.a]\nmanifest = \"a.csv\"\nscoring = \"imagenet-1k\"\nresize = \"crop\"\n";
        let err = Suite::parse(Path::new("s.toml"), text, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("s.toml:6: field `datasets.a.resize`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_scoring_names_file_line_and_field() {
        let text = "name = \"x\"\nid = \"a\"\n[datasets.a]\nmanifest = \"a.csv\"\nscoring = \"imagenet-1k\"\n[datasets.b]\nmanifest = \"b.csv\"\nscoring = \"imagenet-z\"\n";
        let err = Suite::parse(Path::new("s.toml"), text, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("s.toml:8: field `datasets.b.scoring`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_and_bad_id_are_rejected() {
        let text = "name = \"x\"\nid = \"a\"\n[datasets.a]\nmanifest = \"a.csv\"\nscoring = \"imagenet-1k\"\nlabelz = 3\n";
        let err = Suite::parse(Path::new("s.toml"), text, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("s.toml:6") && err.contains("labelz"), "{err}");
        let text = "name = \"x\"\nid = \"zz\"\n[datasets.a]\nmanifest = \"a.csv\"\nscoring = \"imagenet-1k\"\n";
        let err = Suite::parse(Path::new("s.toml"), text, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("s.toml:2: field `id`"), "{err}");
    }
}
