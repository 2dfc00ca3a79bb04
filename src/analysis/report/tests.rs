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
    let (families, soups) = interventions(&models, &[], Some(&run));
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
    let data = ReportData {
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
        wise_ft: families,
        soups,
        corruptions: None,
        synthetic_vs_natural: Vec::new(),
        charts: Vec::new(),
        confidence: None,
    };
    let md = markdown(&data);
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
}
