//! Splitting a run into shards (`run --shard I/N`): which share of the work shard I of N does.
//!
//! The work is a line of cells in the order a single run does them: per preprocessing group, per
//! dataset, the group's models on the dataset's rows. A cell costs rows × models (model-images).
//! Shard I takes the model-images from ⌊I·C/N⌋ to ⌊(I+1)·C/N⌋ of the line, so the split is
//! deterministic, balanced to a row, and cuts both ways: many cells go whole to different shards,
//! and one large cell (one model on 50,000 images) is cut into ranges of rows. A shard's part of
//! a cell keeps the whole group, so models sharing a preprocessing still decode each image once.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Shard `index` of `count` (0 ≤ index < count), as the schedulers number array tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// Most shards a run may be split into.
pub const MAX_SHARDS: usize = 100_000;

impl Shard {
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 || count > MAX_SHARDS {
            return Err(Error::Usage(format!(
                "the shard count must be between 1 and {MAX_SHARDS}, not {count}"
            )));
        }
        if index >= count {
            return Err(Error::Usage(format!(
                "shard {index} of {count} does not exist: shards are numbered 0 to {}",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// `I/N`, or `auto`: the scheduler's own variables (`from_env`).
    pub fn parse(text: &str, count_hint: Option<usize>) -> Result<Shard> {
        if text == "auto" {
            return Shard::from_env(&|name| std::env::var(name).ok(), count_hint);
        }
        let bad = || {
            Error::Usage(format!(
                "--shard {text:?}: expected I/N (shard I of N, 0 ≤ I < N, e.g. 0/4) or auto"
            ))
        };
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index = i.trim().parse().map_err(|_| bad())?;
        let count = n.trim().parse().map_err(|_| bad())?;
        Shard::new(index, count)
    }

    /// The shard a scheduler's task is: a Slurm array task (SLURM_ARRAY_TASK_ID with
    /// SLURM_ARRAY_TASK_COUNT, or with SLURM_ARRAY_TASK_MIN and _MAX), or a Kubernetes Indexed
    /// Job's pod (JOB_COMPLETION_INDEX, with the count given by --shard-count or
    /// ROBUST_EVAL_SHARD_COUNT, since the pod is not told it).
    pub fn from_env(
        var: &dyn Fn(&str) -> Option<String>,
        count_hint: Option<usize>,
    ) -> Result<Shard> {
        let number = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| Error::Usage(format!("{name}={v:?} is not a whole number"))),
            }
        };
        let count_given = match count_hint {
            Some(n) => Some(n),
            None => number("ROBUST_EVAL_SHARD_COUNT")?,
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            // With the count given, the task id is the shard: a resubmitted subset of tasks
            // (`--array=3,7`) keeps its ids. Without it, only an array 0-(N-1) says N.
            if let Some(count) = count_given {
                return Shard::new(id, count);
            }
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1);
            let max = number("SLURM_ARRAY_TASK_MAX")?;
            let count = number("SLURM_ARRAY_TASK_COUNT")?.or(max.map(|m| m + 1));
            return match count {
                Some(n) if min == 0 && step == 1 && max.is_none_or(|m| m + 1 == n) => {
                    Shard::new(id, n)
                }
                _ => Err(Error::Usage(format!(
                    "SLURM_ARRAY_TASK_ID {id} is in an array that is not 0-(N-1) (min {min}, step \
                     {step}, max {}): the number of shards cannot be read from it; pass \
                     --shard-count N (robust-eval slurm's scripts do)",
                    max.map_or("unset".to_string(), |m| m.to_string())
                ))),
            };
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = count_given.ok_or_else(|| {
                Error::Usage(
                    "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the count: pass \
                     --shard-count N or set ROBUST_EVAL_SHARD_COUNT to the Job's completions"
                        .into(),
                )
            })?;
            return Shard::new(index, count);
        }
        Err(Error::Usage(
            "--shard auto found no scheduler: it reads SLURM_ARRAY_TASK_ID (an sbatch --array job) or \
             JOB_COMPLETION_INDEX (a Kubernetes Indexed Job); outside one, pass --shard I/N"
                .into(),
        ))
    }

    /// The folder a shard writes: `<out>/shards/I-of-N`.
    pub fn folder(&self, out: &Path) -> PathBuf {
        out.join("shards").join(self.name())
    }

    pub fn name(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }
}

/// Per cell, the rows (indices into the dataset's loaded rows) that `shard` evaluates, if any.
/// `cells` gives, in the run's order, each cell's model count and row count.
pub fn assign(cells: &[(usize, usize)], shard: Shard) -> Vec<Option<Range<usize>>> {
    let total: u128 = cells.iter().map(|&(m, r)| (m * r) as u128).sum();
    let cut = |i: usize| total * i as u128 / shard.count as u128;
    let (lo, hi) = (cut(shard.index), cut(shard.index + 1));
    let mut offset: u128 = 0;
    cells
        .iter()
        .map(|&(models, rows)| {
            let cost = (models * rows) as u128;
            let cell = offset..offset + cost;
            offset += cost;
            if models == 0 || rows == 0 || hi <= cell.start || lo >= cell.end {
                return None;
            }
            // Row k lies at cost position start + k·models; it belongs to the shard whose
            // interval holds that position.
            let first_row = |position: u128| {
                let into = position.saturating_sub(cell.start);
                (into.div_ceil(models as u128) as usize).min(rows)
            };
            let range = first_row(lo)..first_row(hi);
            (!range.is_empty()).then_some(range)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_row_once(cells: &[(usize, usize)], count: usize) -> Vec<Vec<Option<Range<usize>>>> {
        let shards: Vec<_> = (0..count)
            .map(|i| assign(cells, Shard::new(i, count).unwrap()))
            .collect();
        for (c, &(models, rows)) in cells.iter().enumerate() {
            if models == 0 || rows == 0 {
                assert!(
                    shards.iter().all(|s| s[c].is_none()),
                    "cell {c} has no work"
                );
                continue;
            }
            let mut pieces: Vec<Range<usize>> =
                shards.iter().filter_map(|s| s[c].clone()).collect();
            pieces.sort_by_key(|r| r.start);
            let mut next = 0;
            for p in &pieces {
                assert_eq!(p.start, next, "cell {c}: gap or overlap in {pieces:?}");
                next = p.end;
            }
            assert_eq!(next, rows, "cell {c} not covered: {pieces:?}");
        }
        shards
    }

    #[test]
    fn every_row_goes_to_exactly_one_shard() {
        for cells in [
            vec![(1, 50_000)],
            vec![(3, 500), (3, 500), (3, 500), (3, 500)],
            vec![(2, 7), (1, 0), (5, 3), (1, 1)],
            vec![(0, 10), (4, 10)],
        ] {
            for count in [1, 2, 3, 4, 7, 64] {
                every_row_once(&cells, count);
            }
        }
    }

    #[test]
    fn one_large_dataset_is_cut_into_equal_row_ranges() {
        let shards = every_row_once(&[(1, 50_000)], 4);
        let sizes: Vec<usize> = shards.iter().map(|s| s[0].clone().unwrap().len()).collect();
        assert_eq!(sizes, vec![12_500; 4]);
    }

    #[test]
    fn many_cells_go_whole_where_the_cuts_allow() {
        // Four equal cells over two shards: two whole cells each, none cut.
        let shards = every_row_once(&[(2, 10); 4], 2);
        assert_eq!(shards[0], vec![Some(0..10), Some(0..10), None, None]);
        assert_eq!(shards[1], vec![None, None, Some(0..10), Some(0..10)]);
    }

    #[test]
    fn more_shards_than_work_leaves_some_empty() {
        let shards = every_row_once(&[(1, 2)], 7);
        let busy = shards.iter().filter(|s| s[0].is_some()).count();
        assert_eq!(busy, 2);
    }

    #[test]
    fn shard_text_and_scheduler_variables() {
        assert_eq!(
            Shard::parse("2/3", None).unwrap(),
            Shard { index: 2, count: 3 }
        );
        for bad in ["3/3", "1", "a/b", "0/0", "-1/2"] {
            assert!(Shard::parse(bad, None).is_err(), "{bad}");
        }
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(
            Shard::from_env(&slurm, None).unwrap(),
            Shard { index: 2, count: 3 }
        );
        // A resubmission of tasks 3 and 7 of 12: an array of 2, still shards 3 and 7 of 12.
        let subset = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "3"),
            ("SLURM_ARRAY_TASK_MAX", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ]);
        assert!(Shard::from_env(&subset, None).is_err());
        assert_eq!(
            Shard::from_env(&subset, Some(12)).unwrap(),
            Shard {
                index: 7,
                count: 12
            }
        );
        let max_only = env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_MAX", "3")]);
        assert_eq!(
            Shard::from_env(&max_only, None).unwrap(),
            Shard { index: 2, count: 4 }
        );
        let k8s = env(&[("JOB_COMPLETION_INDEX", "1")]);
        assert!(Shard::from_env(&k8s, None).is_err());
        assert_eq!(
            Shard::from_env(&k8s, Some(2)).unwrap(),
            Shard { index: 1, count: 2 }
        );
        let k8s_env = env(&[
            ("JOB_COMPLETION_INDEX", "0"),
            ("ROBUST_EVAL_SHARD_COUNT", "5"),
        ]);
        assert_eq!(
            Shard::from_env(&k8s_env, None).unwrap(),
            Shard { index: 0, count: 5 }
        );
        let message = Shard::from_env(&env(&[]), None).unwrap_err().to_string();
        assert!(
            message.contains("SLURM_ARRAY_TASK_ID") && message.contains("--shard I/N"),
            "{message}"
        );
    }
}
