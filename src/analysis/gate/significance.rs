//! Whether a change in top-1 is more than noise: per-image outcomes paired by manifest row,
//! McNemar's exact test where the images are the same, a two-proportion test where they are not.

use super::*;

/// Two-sided exact McNemar p-value for `b` and `c` discordant pairs.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let tail = Binomial::new(0.5, n).map(|d| d.cdf(k)).unwrap_or(1.0);
    (2.0 * tail).min(1.0)
}

/// Two-sided p-value of the pooled two-proportion z-test.
pub fn two_proportion(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let p = (k1 + k2) as f64 / (n1 + n2) as f64;
    let se = (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        return if p1 == p2 { 1.0 } else { 0.0 };
    }
    let z = (p1 - p2) / se;
    2.0 * (1.0 - Normal::new(0.0, 1.0).expect("standard normal").cdf(z.abs()))
}

/// The manifest hash a results folder recorded for a model's row on a dataset (or view).
pub(super) fn manifest_hash(store: &ResultsStore, model: &str, dataset: &str) -> Option<String> {
    store
        .run
        .evaluations
        .iter()
        .find(|e| e.model == model && e.views.iter().any(|v| v == dataset))
        .map(|e| e.manifest_sha256.clone())
}

/// Per-image correctness by manifest row, from a predictions file.
pub(super) fn outcomes(
    store: &ResultsStore,
    model: &str,
    dataset: &str,
) -> Result<Option<HashMap<u32, bool>>> {
    // Names come from evals.csv: one that could leave predictions/ names no file of ours.
    if !(is_safe_name(model) && is_safe_name(dataset)) {
        return Ok(None);
    }
    let path = store.predictions_path(model, dataset);
    if !path.is_file() {
        return Ok(None);
    }
    let df = read_predictions(&path)?;
    let bad = |what: &str| {
        Error::input(
            Location::file(&path),
            format!("predictions file has no usable `{what}` column"),
        )
    };
    let index = df
        .column("index")
        .map_err(|_| bad("index"))?
        .u32()
        .map_err(|_| bad("index"))?
        .clone();
    let correct = df
        .column("correct")
        .map_err(|_| bad("correct"))?
        .bool()
        .map_err(|_| bad("correct"))?
        .clone();
    Ok(Some(
        (0..df.height())
            .filter_map(|i| Some((index.get(i)?, correct.get(i)?)))
            .collect(),
    ))
}

/// What decides whether a top-1 change is real: its p-value, the test's name, the images that
/// flipped each way (paired test only), and a note when the paired test could not be made.
pub(super) struct Significance {
    pub(super) p: Option<f64>,
    pub(super) test: &'static str,
    pub(super) flipped: Option<(u64, u64)>,
    pub(super) note: Option<String>,
}

/// Exact McNemar on the images that flipped when both sides have per-image outcomes of the same
/// manifest; else a two-proportion test on the counts; else none.
pub(super) type Outcomes = HashMap<u32, bool>;

pub(super) fn significance(
    paired: Option<(Outcomes, Outcomes)>,
    b: &EvalRow,
    c: &EvalRow,
) -> Significance {
    match paired {
        Some((bo, co)) => {
            let (mut to_wrong, mut to_right) = (0u64, 0u64);
            for (i, &bc) in &bo {
                match co.get(i) {
                    Some(&cc) if bc && !cc => to_wrong += 1,
                    Some(&cc) if !bc && cc => to_right += 1,
                    _ => {}
                }
            }
            Significance {
                p: Some(mcnemar_exact(to_wrong, to_right)),
                test: "mcnemar-exact",
                flipped: Some((to_wrong, to_right)),
                note: None,
            }
        }
        None if b.n > 0 && c.n > 0 => Significance {
            p: Some(two_proportion(b.correct, b.n, c.correct, c.n)),
            test: "two-proportion",
            flipped: None,
            note: Some(
                "no paired per-image predictions on the same manifest: two-proportion test on the counts"
                    .into(),
            ),
        },
        None => Significance {
            p: None,
            test: "none",
            flipped: None,
            note: Some("no counts: threshold only".into()),
        },
    }
}

pub(super) fn flips(c: &Check) -> String {
    match (c.flipped_to_wrong, c.flipped_to_right) {
        (Some(w), Some(r)) => format!("{w} / {r}"),
        _ => "–".into(),
    }
}
