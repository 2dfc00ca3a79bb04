//! The browser tier: report.html from the demo suite, rendered by a real headless Chromium
//! (Debian's `chromium`; scripts/test_browser.sh installs it). Checks that the page loads with no
//! console message (our page logs nothing, so any message is an error, a CSP block or an uncaught
//! exception), that each chart has exactly one tooltip per model plotted on it, and that a
//! screenshot is not blank. Without chromium it prints one line and passes, unless
//! ROBUST_EVAL_REQUIRE_BROWSER=1. ROBUST_EVAL_BIN names the binary to test, if not this build's.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ROBUST_EVAL_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// Headless Chromium on a file, with `mode` (`--dump-dom` or `--screenshot=PATH`); returns
/// stdout and the console messages it logged.
fn browse(chromium: &Path, page: &Path, mode: &str) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .arg("120")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(mode)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(String::from)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// The demo suite's results folder, made by the binary under test.
fn demo_results() -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = match std::env::var_os("ROBUST_EVAL_BIN") {
        Some(b) => {
            let mut c = assert_cmd::Command::new(b);
            c.env(
                "ROBUST_EVAL_CACHE",
                root().join("target").join("test-cache"),
            );
            c
        }
        None => bin(),
    };
    cmd.args(["run", "--suite", "demo", "--progress", "none", "--out"])
        .arg(out.path())
        .assert()
        .success();
    out
}

/// Models per chart from robustness.csv: per shift, and `average` for the bars.
fn models_per_chart(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut reader = csv::Reader::from_path(dir.join("robustness.csv")).unwrap();
    let mut charts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in reader.records() {
        let r = r.unwrap();
        let chart = match &r[2] {
            "average" => "effective-robustness".to_string(),
            shift => shift.to_string(),
        };
        charts.entry(chart).or_default().push(r[0].to_string());
    }
    // Each shift's chart also draws one method's estimates (estimates.csv) as hollow points, each
    // with its tooltip: ALine-D where the shift has it, else ATC-MC.
    let mut reader = csv::Reader::from_path(dir.join("estimates.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    for (shift, models) in charts.iter_mut() {
        let of = |method: &str| -> Vec<String> {
            rows.iter()
                .filter(|r| &r[1] == shift && &r[2] == method)
                .map(|r| r[0].to_string())
                .collect()
        };
        let drawn = ["ALine-D", "ATC-MC"]
            .iter()
            .map(|m| of(m))
            .find(|m| !m.is_empty())
            .unwrap_or_default();
        models.extend(drawn);
    }
    charts.values_mut().for_each(|m| m.sort());
    charts
}

/// Per `<figure>` of the dumped DOM: caption and the `data-model` of each `<title>` in its SVG.
fn tooltips_per_figure(dom: &str) -> BTreeMap<String, Vec<String>> {
    let mut figures = BTreeMap::new();
    for f in dom.split("<figure><figcaption>").skip(1) {
        let (caption, rest) = f.split_once("</figcaption>").unwrap();
        let svg = &rest[..rest.find("</svg>").unwrap() + "</svg>".len()];
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{caption}: {e}"));
        let mut models: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("title"))
            .map(|t| {
                let shape = t.parent_element().unwrap();
                shape
                    .attribute("data-model")
                    .unwrap_or("(none)")
                    .to_string()
            })
            .collect();
        models.sort();
        figures.insert(caption.to_string(), models);
    }
    figures
}

#[test]
fn report_loads_in_chromium_with_tooltips_and_pixels() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var("ROBUST_EVAL_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "ROBUST_EVAL_REQUIRE_BROWSER=1 but no chromium on PATH"
        );
        println!("browser test SKIPPED: no chromium on PATH (scripts/test_browser.sh installs it)");
        return;
    };
    // The console check must be able to fail: a broken script is seen.
    let broken = tempfile::tempdir().unwrap();
    let page = broken.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><p>x</p><script>notDefined();</script>",
    )
    .unwrap();
    let (_, console) = browse(&chromium, &page, "--dump-dom");
    assert!(
        console.iter().any(|l| l.contains("notDefined")),
        "chromium's console log is not seen: {console:?}"
    );

    let results = demo_results();
    let report = results.path().join("report.html");
    let (dom, console) = browse(&chromium, &report, "--dump-dom");
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(dom.contains("id=\"filter\""), "the model filter is there");
    assert_eq!(
        tooltips_per_figure(&dom),
        models_per_chart(results.path()),
        "each chart: exactly one tooltip per model plotted on it"
    );

    // The filter, opened from the address (`#filter=robust`): the robust models' points and
    // bars are ringed on every chart, the other models' table rows hidden.
    let filtered = format!("{}#filter=robust", report.display());
    let (dom, console) = browse(&chromium, Path::new(&filtered), "--dump-dom");
    assert!(console.is_empty(), "console messages: {console:#?}");
    let charts = models_per_chart(results.path());
    let ringed = dom.matches("class=\"tip hit\"").count();
    let robust: usize = charts
        .values()
        .map(|m| m.iter().filter(|m| m.contains("robust")).count())
        .sum();
    assert!(
        robust > 0 && ringed == robust,
        "{ringed} ringed, {robust} robust points"
    );
    // The models table's rows of the standard models (none of them robust) are hidden: the
    // filter narrows that table (the report's other tables keep every row).
    let models_table = dom
        .split("<table class=\"sortable\" id=\"models\">")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .expect("the report has its models table");
    let standard_rows: Vec<&str> = models_table
        .split("<tr ")
        .skip(1)
        .map(|r| &r[..r.find('>').unwrap_or(r.len())])
        .filter(|attrs| attrs.contains("data-group=\"standard\""))
        .collect();
    assert!(!standard_rows.is_empty(), "no rows of standard models");
    assert!(
        standard_rows.iter().all(|attrs| attrs.contains("hidden")),
        "standard rows left visible: {standard_rows:?}"
    );

    let shot = results.path().join("screenshot.png");
    let (_, console) = browse(
        &chromium,
        &report,
        &format!("--screenshot={}", shot.display()),
    );
    assert!(console.is_empty(), "console messages: {console:#?}");
    let img = image::open(&shot).unwrap().to_rgb8();
    let total = (img.width() * img.height()) as usize;
    let inked = img
        .pixels()
        .filter(|p| p.0.iter().any(|&c| c < 200))
        .count();
    let colours: std::collections::BTreeSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(
        inked * 100 > total && colours.len() > 50,
        "screenshot looks blank: {inked} of {total} pixels inked, {} colours",
        colours.len()
    );
    // The charts are drawn: the groups' colours (standard blue, robust red) are on screen.
    for (name, colour) in [("standard", [31, 119, 180]), ("robust", [214, 39, 40])] {
        assert!(colours.contains(&colour), "no {name} points on screen");
    }
}

/// A folder of published-style numbers (evals.csv only) with a natural shift and all 75
/// ImageNet-C datasets, for the corruption figures.
fn corruption_numbers() -> tempfile::TempDir {
    const BENCHMARK: [&str; 15] = common::IMAGENET_C_BENCHMARK;
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("model,group,dataset,top1\n");
    for (i, (model, id, natural)) in [
        ("m-small", 60.0, 30.0),
        ("m-base", 70.0, 40.0),
        ("m-large", 78.0, 50.0),
        ("m-robust", 72.0, 52.0),
    ]
    .iter()
    .enumerate()
    {
        let group = if *model == "m-robust" {
            "robust"
        } else {
            "standard"
        };
        csv += &format!("{model},{group},imagenet,{id}\n{model},{group},natural,{natural}\n");
        for (k, c) in BENCHMARK.iter().enumerate() {
            for s in 1..=5 {
                let top1 = id - 6.0 * s as f64 - k as f64 + 3.0 * i as f64;
                csv += &format!("{model},{group},imagenet-c-{c}-{s},{top1}\n");
            }
        }
    }
    std::fs::write(dir.path().join("evals.csv"), csv).unwrap();
    dir
}

#[test]
fn corruption_figures_load_in_chromium_with_one_tooltip_per_model() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var("ROBUST_EVAL_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "ROBUST_EVAL_REQUIRE_BROWSER=1 but no chromium on PATH"
        );
        println!("browser test SKIPPED: no chromium on PATH (scripts/test_browser.sh installs it)");
        return;
    };
    let dir = corruption_numbers();
    let mut cmd = match std::env::var_os("ROBUST_EVAL_BIN") {
        Some(b) => assert_cmd::Command::new(b),
        None => bin(),
    };
    cmd.args(["report", "--format", "html", "--results"])
        .arg(dir.path())
        .assert()
        .success();
    let (dom, console) = browse(&chromium, &dir.path().join("report.html"), "--dump-dom");
    assert!(console.is_empty(), "console messages: {console:#?}");
    let figures = tooltips_per_figure(&dom);
    let scatter = figures
        .iter()
        .find(|(caption, _)| caption.starts_with("Synthetic against natural"))
        .unwrap_or_else(|| panic!("no scatter among {:?}", figures.keys()));
    assert_eq!(scatter.1, &["m-base", "m-large", "m-robust", "m-small"]);
    let heatmap = figures
        .iter()
        .find(|(caption, _)| caption.starts_with("CE per model"))
        .unwrap();
    assert_eq!(
        heatmap.1.len(),
        4 * 15,
        "one tooltip per model and corruption"
    );
    let curves = figures
        .iter()
        .find(|(caption, _)| caption.starts_with("Error against severity"))
        .unwrap();
    assert_eq!(
        curves.1.len(),
        4 * 4 * 5,
        "a point per model, family and severity"
    );
}
