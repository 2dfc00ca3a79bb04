use super::*;

#[test]
fn transforms_round_trip() {
    for t in [Transform::Probit, Transform::Logit] {
        for acc in [1.0, 37.5, 50.0, 99.0] {
            assert!((t.inverse(t.forward(acc)) - acc).abs() < 1e-9);
        }
        assert!(t.forward(0.0).is_finite() && t.forward(100.0).is_finite());
    }
    assert!((Transform::Probit.forward(97.5) - 1.959963984540054).abs() < 1e-9);
}

#[test]
fn ols_on_an_exact_line() {
    let l = ols(&[0.0, 1.0, 2.0], &[1.0, 3.0, 5.0]);
    assert!(
        (l.slope - 2.0).abs() < 1e-12
            && (l.intercept - 1.0).abs() < 1e-12
            && (l.r2 - 1.0).abs() < 1e-12
    );
}

#[test]
fn bad_rows_name_line_and_column() {
    let p = Path::new("evals.csv");
    let err = read_accuracies_from(p, "model,top1\nm,50\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("evals.csv:1: field `dataset`"), "{err}");
    let err = read_accuracies_from(p, "model,dataset,top1\nm,imagenet,50\nm,v2,abc\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("evals.csv:3: field `top1`"), "{err}");
    let err = read_accuracies_from(p, "model,dataset,top1\nm,imagenet,150\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("evals.csv:2: field `top1`") && err.contains("0–100"),
        "{err}"
    );
}

#[test]
fn interventions_stay_out_of_an_all_models_baseline_unless_named() {
    let mut rows = Vec::new();
    for (model, group, id, ood) in [
        ("a", "standard", 50.0, 40.0),
        ("b", "standard", 60.0, 50.0),
        ("c", "standard", 70.0, 61.0),
        ("w", "wise-ft", 65.0, 64.0),
    ] {
        for (dataset, top1) in [("imagenet", id), ("v2", ood)] {
            rows.push(Accuracy {
                model: model.into(),
                group: group.into(),
                dataset: dataset.into(),
                top1,
                ci: None,
            });
        }
    }
    let settings = |baseline: BaselineSpec| FitSettings {
        transform: Transform::Probit,
        id: "imagenet".into(),
        baseline,
        resamples: 10,
        seed: 1,
        split_a: None,
        scorings: BTreeMap::new(),
        interventions: ["w".to_string()].into(),
    };
    let baseline_of = |spec: BaselineSpec| {
        let (report, _) = fit_all(&rows, None, &settings(spec)).unwrap();
        (report.shifts[0].baseline_models.clone(), report.notes)
    };
    let (models, notes) = baseline_of(BaselineSpec::All);
    assert_eq!(models, ["a", "b", "c"]);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("left out of the baseline") && n.contains(": w;")),
        "{notes:?}"
    );
    let (models, _) = baseline_of(BaselineSpec::parse(".*").unwrap());
    assert_eq!(models, ["a", "b", "c"]);
    let names = BaselineSpec::Names(["a", "b", "w"].iter().map(|s| s.to_string()).collect());
    let (models, notes) = baseline_of(names);
    assert_eq!(
        (models, notes),
        (vec!["a".to_string(), "b".into(), "w".into()], vec![])
    );
}
