use super::*;
use crate::results::store::ModelInfo;

fn row(model: &str, id: f64, er: f64) -> ModelRow {
    ModelRow {
        model: model.into(),
        group: "g".into(),
        id_top1: Some(id),
        shifts: BTreeMap::new(),
        average_effective_robustness: Some(er),
    }
}

#[test]
fn each_family_names_its_best_alpha_and_names_are_escaped() {
    let models = vec![
        row("zs", 70.0, 9.0),
        row("ft", 85.0, 1.0),
        row("w*0.3", 84.0, 7.0),
        row("w*0.7", 86.0, 4.0),
        row("w*0.9", 86.0, 2.0),
        row("soup", 86.5, 3.0),
    ];
    let mut run = RunInfo::default();
    for (m, alpha) in [("w*0.7", 0.7), ("w*0.3", 0.3), ("w*0.9", 0.9)] {
        let intervention = Intervention::WiseFt {
            family: "f".into(),
            alpha,
            endpoints: ["zs".into(), "ft".into()],
        };
        run.models.insert(m.into(), ModelInfo { intervention });
    }
    let soup = Intervention::Soup {
        family: "soup".into(),
        members: vec!["ft".into(), "<x>".into()],
        recipe: "greedy".into(),
    };
    run.models
        .insert("soup".into(), ModelInfo { intervention: soup });
    let (families, soups) = interventions(&models, &[], Some(&run), None);
    let f = &families[0];
    let alphas: Vec<f64> = f.points.iter().map(|p| p.alpha).collect();
    assert_eq!(
        alphas,
        [0.0, 0.3, 0.7, 0.9, 1.0],
        "endpoints folded in, α order"
    );
    let best_er = f.highest_effective_robustness.as_ref().unwrap();
    assert_eq!((best_er.alpha, best_er.model.as_str()), (0.0, "zs"));
    // 86.0 at α 0.7 and 0.9: the first, nearer the zero-shot end.
    let best_id = f.highest_id_top1.as_ref().unwrap();
    assert_eq!((best_id.alpha, best_id.model.as_str()), (0.7, "w*0.7"));
    assert!(f.held_out.is_none() && f.chosen_on_held_out.is_none());
    let data = report_of(models, families, soups);
    let md = markdown(&data);
    assert!(
        !md.contains("held-out dataset") && !md.contains('✓'),
        "{md}"
    );
    assert!(
        md.contains("highest id top-1 α = 0.70 (w\\*0.7, 86.00 %)"),
        "{md}"
    );
    assert!(
        md.contains("| 0.30 | w\\*0.3 | 84.00 | – | +7.00 |"),
        "{md}"
    );
    assert!(!md.contains("<x>") && !html(&data).contains("<x>"), "{md}");
    let json: serde_json::Value = serde_json::from_str(&json(&data)).unwrap();
    assert_eq!(
        json["wise_ft"][0]["highest_effective_robustness"]["alpha"],
        0.0
    );
    assert_eq!(json["soups"][0]["recipe"], "greedy");
    assert!(json["wise_ft"][0].get("chosen_on_held_out").is_none());
}

fn report_of(models: Vec<ModelRow>, wise_ft: Vec<FamilyRow>, soups: Vec<SoupRow>) -> ReportData {
    ReportData {
        title: "t".into(),
        id_dataset: "id".into(),
        transform: "probit".into(),
        shifts: Vec::new(),
        models,
        fits: Vec::new(),
        notes: Vec::new(),
        cautions: Vec::new(),
        accuracy: AccuracyTable::default(),
        provenance: None,
        wise_ft,
        soups,
        corruptions: None,
        synthetic_vs_natural: Vec::new(),
        charts: Vec::new(),
        confidence: None,
    }
}

#[test]
fn alpha_chosen_on_held_out_data_is_marked_apart_from_the_test_set_choices() {
    let models = vec![
        row("zs", 70.0, 9.0),
        row("ft", 85.0, 1.0),
        row("w0.3", 84.0, 7.0),
        row("w0.7", 86.0, 4.0),
    ];
    let mut run = RunInfo::default();
    for (m, alpha) in [("w0.3", 0.3), ("w0.7", 0.7)] {
        let intervention = Intervention::WiseFt {
            family: "f".into(),
            alpha,
            endpoints: ["zs".into(), "ft".into()],
        };
        run.models.insert(m.into(), ModelInfo { intervention });
    }
    let accuracy = |model: &str, dataset: &str, top1: f64| Accuracy {
        model: model.into(),
        group: "g".into(),
        dataset: dataset.into(),
        top1,
        ci: None,
    };
    // Held-out top-1 ties at α 0.3 and 0.7 (the smaller is chosen); the ID test set would
    // pick 0.7, and another dataset's higher accuracy at 0.7 must not count.
    let evals = vec![
        accuracy("zs", "heldout", 60.0),
        accuracy("ft", "heldout", 70.0),
        accuracy("w0.3", "heldout", 75.0),
        accuracy("w0.7", "heldout", 75.0),
        accuracy("w0.7", "other", 99.0),
    ];
    let (families, soups) = interventions(&models, &[], Some(&run), Some(("heldout", &evals)));
    let f = &families[0];
    let chosen = f.chosen_on_held_out.as_ref().unwrap();
    assert_eq!((chosen.alpha, chosen.model.as_str()), (0.3, "w0.3"));
    assert_eq!(f.highest_id_top1.as_ref().unwrap().alpha, 0.7);
    let held: Vec<Option<f64>> = f.points.iter().map(|p| p.held_out_top1).collect();
    assert_eq!(held, [Some(60.0), Some(75.0), Some(75.0), Some(70.0)]);

    let data = report_of(models, families, soups);
    let md = markdown(&data);
    assert!(
        md.contains(
            "Chosen on the held-out dataset heldout: α = 0.30 (w0.3, 75.00 % there; id 84.00 %, \
             average OOD – %)"
        ),
        "{md}"
    );
    assert!(md.contains("heldout top-1 (held out) |"), "{md}");
    assert!(
        md.contains("| 0.30 ✓ | w0.3 | 84.00 | – | +7.00 | 75.00 |"),
        "{md}"
    );
    assert!(
        md.contains("| 0.70 | w0.7 | 86.00 | – | +4.00 | 75.00 |"),
        "{md}"
    );
    assert_eq!(md.matches('✓').count(), 2, "the sentence and one row: {md}");
    let json: serde_json::Value = serde_json::from_str(&json(&data)).unwrap();
    assert_eq!(json["wise_ft"][0]["held_out"], "heldout");
    assert_eq!(json["wise_ft"][0]["chosen_on_held_out"]["alpha"], 0.3);
    assert_eq!(json["wise_ft"][0]["points"][1]["held_out_top1"], 75.0);
}
