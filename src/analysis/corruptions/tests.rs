use super::*;

fn acc(model: &str, dataset: &str, top1: f64) -> Accuracy {
    Accuracy {
        model: model.into(),
        group: "standard".into(),
        dataset: dataset.into(),
        top1,
        ci: None,
    }
}

/// A model whose error is AlexNet's on every corruption and severity scores mCE = relative
/// mCE = 100 exactly: the normalisation is AlexNet's.
#[test]
fn alexnet_itself_scores_100() {
    let table = corruptions::imagenet_c();
    let mut evals = vec![acc(
        "alex",
        "imagenet",
        100.0 * (1.0 - table.alexnet_clean_error),
    )];
    for c in table.benchmark() {
        for s in SEVERITIES {
            let e = c.alexnet_error.unwrap();
            evals.push(acc(
                "alex",
                &corruptions::dataset_name(&c.name, s),
                100.0 * (1.0 - e),
            ));
        }
    }
    let r = compute(&evals, "imagenet").unwrap();
    let m = &r.models[0];
    assert_eq!(m.status, "complete");
    assert!((m.mce.unwrap() - 100.0).abs() < 1e-9, "{m:?}");
    assert!((m.relative_mce.unwrap() - 100.0).abs() < 1e-9, "{m:?}");
    assert!(m.missing.is_empty() && m.partial_mce.is_none());
}

#[test]
fn a_missing_severity_withholds_mce_and_names_it() {
    let table = corruptions::imagenet_c();
    let mut evals = vec![acc("m", "imagenet", 80.0)];
    for c in table.benchmark() {
        for s in SEVERITIES {
            if c.name == "fog" && s == 4 {
                continue;
            }
            evals.push(acc("m", &corruptions::dataset_name(&c.name, s), 50.0));
        }
    }
    evals.push(acc("m", "imagenet-c-saturate-1", 70.0));
    let r = compute(&evals, "imagenet").unwrap();
    let m = &r.models[0];
    assert_eq!(m.status, "partial");
    assert_eq!(m.mce, None);
    assert_eq!(m.relative_mce, None);
    assert_eq!(m.missing, ["fog/4"]);
    assert_eq!(m.corruptions_complete, 14);
    assert!(m.partial_mce.is_some());
    // An extra with one severity: its row is there, without a mean, and never in mCE.
    let saturate = r
        .corruptions
        .iter()
        .find(|c| c.corruption == "saturate")
        .unwrap();
    assert!(!saturate.in_mce && saturate.mean_error.is_none() && saturate.ce.is_none());
    assert_eq!(m.extras_mean_error, None);
    assert!(r.notes()[0].contains("fog/4"));
}
