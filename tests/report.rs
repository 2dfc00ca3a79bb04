//! The report a user looks at: the headline `run` prints, chart file names made from dataset names,
//! and the HTML report's charts (drawn by this analysis, one tooltip per model, names escaped).
//! The same report in a real browser: tests/browser.rs.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// Average effective robustness per model, from robustness.csv.
fn averages(dir: &Path) -> BTreeMap<String, f64> {
    let mut reader = csv::Reader::from_path(dir.join("robustness.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (model, shift, er) = (col("model"), col("shift"), col("effective_robustness"));
    reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[shift] == "average")
        .map(|r| (r[model].to_string(), r[er].parse().unwrap()))
        .collect()
}

#[test]
fn run_ends_with_the_headline() {
    let out = tempfile::tempdir().unwrap();
    let run = bin()
        .args(["run", "--suite", "demo", "--progress", "none", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&run.get_output().stdout).to_string();
    let headline = &stdout[stdout
        .find("Trend fit (probit, ID shapes):")
        .unwrap_or_else(|| panic!("no headline in:\n{stdout}"))..];
    // Each shift's line carries the slope, R² and n of fit.json.
    let fit: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("fit.json")).unwrap())
            .unwrap();
    for s in fit["shifts"].as_array().unwrap() {
        let line = format!(
            "{:.3}  {:>6.3}  {:>5}",
            s["slope"].as_f64().unwrap(),
            s["r2"].as_f64().unwrap(),
            s["n"].as_u64().unwrap()
        );
        let shift = s["shift"].as_str().unwrap();
        assert!(
            headline
                .lines()
                .any(|l| l.trim_start().starts_with(shift) && l.ends_with(&line)),
            "{shift}: `{line}` not in\n{headline}"
        );
    }
    // The top and bottom of the average-ER ranking, best first and worst first.
    let mut ranked: Vec<(String, f64)> = averages(out.path()).into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let highest = headline
        .lines()
        .find(|l| l.starts_with("Highest average effective robustness (pp): "))
        .unwrap();
    let lowest = headline
        .lines()
        .find(|l| l.starts_with("Lowest average effective robustness (pp): "))
        .unwrap();
    let (best, worst) = (&ranked[0], &ranked[ranked.len() - 1]);
    assert!(
        highest.contains(&format!(": {} {:+.2} (", best.0, best.1)),
        "{highest}"
    );
    assert!(
        lowest.contains(&format!(":  {} {:+.2} (", worst.0, worst.1)),
        "{lowest}"
    );
    // The broadly trained models lead: robust-m and the zero-shot model are within 0.1 pp.
    assert!(
        ["robust-m", "zeroshot"].contains(&best.0.as_str()),
        "the demo's most robust model: {best:?}"
    );

    // stdout stays JSON with --json: no headline there.
    let json = bin()
        .args([
            "run",
            "--suite",
            "demo",
            "--progress",
            "none",
            "--json",
            "--out",
        ])
        .arg(out.path())
        .assert()
        .success();
    serde_json::from_slice::<serde_json::Value>(&json.get_output().stdout).unwrap();
}

const HOSTILE: &str = "<b>x</b>&\"q'";

/// An evals.csv with a dotted dataset name, names that are not safe paths, a shift named like
/// another chart, and a model name made of markup.
fn awkward_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("model,group,dataset,top1\n");
    let models = [
        ("m1", 50.0),
        ("m2", 60.0),
        ("m3", 70.0),
        ("m4", 80.0),
        (HOSTILE, 75.0),
    ];
    let shifts = [
        ("imagenetv2-threshold0.7", -10.0),
        ("../escape", -30.0),
        ("a/b", -25.0),
        ("a_b", -20.0),
        ("all-shifts", -28.0),
    ];
    for (dataset, drop) in [("imagenet", 0.0)].into_iter().chain(shifts) {
        for (i, (model, id)) in models.iter().enumerate() {
            let quoted = format!("\"{}\"", model.replace('"', "\"\""));
            csv += &format!("{quoted},standard,{dataset},{}\n", id + drop + i as f64);
        }
    }
    std::fs::write(dir.path().join("evals.csv"), csv).unwrap();
    dir
}

#[test]
fn chart_files_keep_dots_and_stay_in_plots() {
    let dir = awkward_folder();
    let plot = bin()
        .args(["plot", "--results"])
        .arg(dir.path())
        .assert()
        .success();
    let plots = dir.path().join("plots").canonicalize().unwrap();
    let listed = String::from_utf8_lossy(&plot.get_output().stdout).to_string();
    for file in listed.lines() {
        let parent = Path::new(file).parent().unwrap().canonicalize().unwrap();
        assert_eq!(parent, plots, "{file} is outside plots/");
    }
    let mut names: Vec<String> = std::fs::read_dir(&plots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "_._escape.svg",
            "a_b-2.svg",
            "a_b.svg",
            "all-shifts-2.svg",
            "all-shifts.svg",
            "effective-robustness.svg",
            "imagenetv2-threshold0.7.svg",
        ],
        "dots kept, `/` and a leading dot replaced, clashes numbered"
    );
    let escape = std::fs::read_dir(dir.path().parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("escape."));
    assert!(!escape, "a chart left the results folder");
    // The dotted shift's chart is its own: its title names it.
    let svg = std::fs::read_to_string(plots.join("imagenetv2-threshold0.7.svg")).unwrap();
    assert!(svg.contains("imagenetv2-threshold0.7: slope"));
}

/// `(caption, svg)` of each chart in a report.html.
fn figures(html: &str) -> Vec<(String, String)> {
    html.split("<figure><figcaption>")
        .skip(1)
        .map(|f| {
            let (caption, rest) = f.split_once("</figcaption>").unwrap();
            let svg = &rest[..rest.find("</svg>").unwrap() + "</svg>".len()];
            (caption.to_string(), svg.to_string())
        })
        .collect()
}

/// Model name of each tooltip in an SVG (the `data-model` of its shape).
fn tooltips(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("SVG: {e}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("title"))
        .map(|t| {
            t.parent_element()
                .and_then(|p| p.attribute("data-model"))
                .unwrap_or("(none)")
                .to_string()
        })
        .collect()
}

#[test]
fn html_report_inlines_only_its_own_charts_with_a_tooltip_per_model() {
    let dir = awkward_folder();
    bin()
        .args(["plot", "--results"])
        .arg(dir.path())
        .assert()
        .success();
    // A stale or planted chart in plots/ must not reach the report.
    let planted = "<svg><script>alert('planted')</script></svg>";
    std::fs::write(
        dir.path().join("plots/imagenetv2-threshold0.7.svg"),
        planted,
    )
    .unwrap();
    std::fs::write(dir.path().join("plots/effective-robustness.svg"), planted).unwrap();
    bin()
        .args(["report", "--format", "html", "--results"])
        .arg(dir.path())
        .assert()
        .success();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(!html.contains("planted"), "report.html read plots/ back");
    assert!(!html.contains("<b>x</b>"), "a model name went in as markup");
    let figures = figures(&html);
    let captions: Vec<&str> = figures.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        captions,
        [
            "imagenetv2-threshold0.7",
            "../escape",
            "a/b",
            "a_b",
            "all-shifts",
            "effective-robustness"
        ]
    );
    let mut expected = vec!["m1", "m2", "m3", "m4", HOSTILE];
    expected.sort();
    for (caption, svg) in &figures {
        let mut models = tooltips(svg);
        models.sort();
        assert_eq!(models, expected, "{caption}: one tooltip per model");
    }
    let (_, v2) = &figures[0];
    assert!(
        v2.contains("m3 (standard)\nID top-1 (imagenet): 72.00 %\nOOD top-1 (imagenetv2-threshold0.7): 62.00 %\neffective robustness: "),
        "tooltip text"
    );
    // The filter lists every model, and only this file's script may run.
    assert!(html.contains("<input id=\"filter\""));
    assert!(html.contains("<option value=\"&lt;b&gt;x&lt;/b&gt;&amp;&quot;q&#39;\">"));
    assert!(html.contains("script-src 'sha256-"));
}
