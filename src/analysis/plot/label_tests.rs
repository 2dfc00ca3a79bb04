use super::*;
use crate::analysis::fit::fit_shift;

fn point(model: &str, id: f64, ood: f64) -> Point {
    Point {
        model: model.into(),
        group: "standard".into(),
        id,
        ood,
        ood_ci: None,
    }
}

/// (x, y, text) of every `<text>` element of an SVG.
fn texts(svg: &str) -> Vec<(i32, i32, String)> {
    let mut found = Vec::new();
    let mut rest = svg;
    while let Some(at) = rest.find("<text") {
        let tag = &rest[at..];
        let end = tag.find("</text>").unwrap();
        let attr = |name: &str| -> i32 {
            let from = &tag[tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3..];
            from[..from.find('"').unwrap()].parse::<f64>().unwrap() as i32
        };
        let body = &tag[tag.find('>').unwrap() + 1..end];
        found.push((attr("x"), attr("y"), body.trim().to_string()));
        rest = &tag[end..];
    }
    found
}

#[test]
fn clustered_models_fill_the_axes_and_their_labels_neither_overlap_nor_leave_the_chart() {
    // Five models within 3 points of each other, as in the user's case, two of them nearly
    // on top of each other, with names as long as real ones.
    let points = [
        point("efficientnet_lite0", 88.2, 80.1),
        point("efficientnet_lite1", 89.6, 81.9),
        point("efficientnet_lite2", 90.9, 83.0),
        point("efficientnet_lite2-int8", 90.8, 82.9),
        point("efficientnet_lite2-fp16", 90.85, 83.05),
    ];
    let fit = fit_shift(
        "v2",
        "id",
        &points.iter().collect::<Vec<_>>(),
        Transform::Probit,
        20,
        1,
    )
    .unwrap();
    let interventions = BTreeMap::new();
    let chart = ShiftChart {
        fit: &fit,
        points: &points,
        cloud: &[],
        label_points: true,
        interventions: &interventions,
        estimates: &[],
        estimate_method: "",
        estimated_line: false,
    };
    let groups = groups_of(std::slice::from_ref(&chart), &[]);
    let (width, height) = (900, 760);
    let svg = render_svg((width, height), &Figure::Shift(&chart), &groups).unwrap();
    let texts = texts(&svg);
    // Tick labels are whole or half percents near the data: nothing like 40 or 95.
    let ticks: Vec<f64> = texts.iter().filter_map(|t| t.2.parse().ok()).collect();
    assert!(ticks.len() >= 4, "{ticks:?}");
    assert!(
        ticks.iter().all(|v| (78.0..=93.0).contains(v)),
        "axes fit the data: {ticks:?}"
    );
    let labels: Vec<(i32, i32, i32, i32)> = texts
        .iter()
        .filter(|t| points.iter().any(|p| p.model == t.2))
        .map(|(x, y, name)| {
            let (w, h) = label_size(name, 14);
            (*x, *y, x + w, y + h)
        })
        .collect();
    assert_eq!(
        labels.len(),
        points.len(),
        "every model labelled: {texts:?}"
    );
    for (i, a) in labels.iter().enumerate() {
        assert!(
            a.0 >= 0 && a.1 >= 0 && a.2 <= width as i32 && a.3 <= height as i32,
            "label {a:?} leaves the {width}×{height} chart"
        );
        for b in &labels[i + 1..] {
            assert!(!overlaps(*a, *b), "labels {a:?} and {b:?} overlap");
        }
    }
}

#[test]
fn the_diagonal_is_drawn_only_inside_the_window() {
    assert!(line_segment(1.0, 0.0, 1.0, 2.0, -1.0, 0.5).is_empty());
    assert_eq!(
        line_segment(1.0, 0.0, 0.0, 2.0, 1.0, 3.0),
        vec![(1.0, 1.0), (2.0, 2.0)]
    );
}
