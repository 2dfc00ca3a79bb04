use super::*;
use crate::analysis::fit::fit_shift;

fn point(model: &str, group: &str, id: f64, ood: f64) -> Point {
    Point {
        model: model.into(),
        group: group.into(),
        id,
        ood,
        ood_ci: None,
    }
}

fn wise_ft(alpha: f64) -> ModelInfo {
    ModelInfo {
        intervention: Intervention::WiseFt {
            family: "clip".into(),
            alpha,
            endpoints: ["zs".into(), "ft".into()],
        },
    }
}

/// The pixel centre of a model's marker, from the tooltip layer.
fn centre(svg: &str, model: &str) -> (i32, i32) {
    let tag = &svg[svg.find(&format!("data-model=\"{model}\"")).unwrap()..];
    let tag = &svg[svg[..svg.len() - tag.len()].rfind('<').unwrap()..];
    let attr = |name: &str| -> i32 {
        let from = &tag[tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2..];
        from[..from.find('"').unwrap()].parse().unwrap()
    };
    (attr("cx"), attr("cy"))
}

#[test]
fn a_wise_ft_family_is_one_line_through_its_points_in_alpha_order_and_a_soup_a_diamond() {
    let base = [
        point("a", "standard", 40.0, 30.0),
        point("b", "standard", 60.0, 48.0),
        point("c", "standard", 80.0, 68.0),
    ];
    let fit = fit_shift(
        "v2",
        "id",
        &base.iter().collect::<Vec<_>>(),
        Transform::Probit,
        20,
        1,
    )
    .unwrap();
    // α order differs from ID order and from the order of the points: the line must follow α.
    let mut points = base.to_vec();
    points.extend([
        point("w-0.5", "wise-ft", 78.0, 70.0),
        point("ft", "fine-tuned", 82.0, 62.0),
        point("w-0.8", "wise-ft", 83.0, 66.0),
        point("zs", "zero-shot", 70.0, 65.0),
        point("w-0.2", "wise-ft", 79.0, 71.0),
        point("s", "soup", 81.0, 64.0),
    ]);
    let mut interventions: BTreeMap<String, ModelInfo> =
        [("w-0.5", 0.5), ("w-0.8", 0.8), ("w-0.2", 0.2)]
            .map(|(m, a)| (m.to_string(), wise_ft(a)))
            .into();
    let soup = Intervention::Soup {
        family: "s".into(),
        members: vec!["ft".into()],
        recipe: "uniform".into(),
    };
    interventions.insert("s".into(), ModelInfo { intervention: soup });
    let chart = ShiftChart {
        fit: &fit,
        points: &points,
        cloud: &[],
        label_points: false,
        interventions: &interventions,
        estimates: &[],
        estimate_method: "",
        estimated_line: false,
    };
    let groups = groups_of(std::slice::from_ref(&chart), &[]);
    let svg = render_svg((900, 760), &Figure::Shift(&chart), &groups).unwrap();
    let expected: String = ["zs", "w-0.2", "w-0.5", "w-0.8", "ft"]
        .iter()
        .map(|m| {
            let (x, y) = centre(&svg, m);
            format!("{x},{y} ")
        })
        .collect();
    assert!(
        svg.contains(&format!("points=\"{expected}\"")),
        "no polyline through {expected} in\n{svg}"
    );
    for text in [
        "WiSE-FT clip (α 0 → 1)",
        "zero-shot (α = 0)",
        "fine-tuned (α = 1)",
        "soup: s (uniform)",
    ] {
        assert!(svg.contains(text), "{text}");
    }
    // The soup is a filled diamond (a polygon of 4 corners) centred on its marker.
    let (x, y) = centre(&svg, "s");
    let r = 12; // big chart: radius 5, so half-width 5 * 2 + 2
    assert!(
        svg.contains(&format!(
            "points=\"{x},{} {},{y} {x},{} ",
            y - r,
            x + r,
            y + r
        )),
        "no diamond at {x},{y}"
    );
}
