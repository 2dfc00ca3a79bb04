//! ImageNet-C's figures as SVG: the model × corruption heat map, error against severity per
//! family, and the synthetic-versus-natural scatter, each with hover tooltips.

use super::*;

/// A colour from white (0) to dark red (1).
pub(super) fn heat(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let g = (255.0 * (1.0 - 0.85 * t)) as u8;
    let r = (255.0 - 90.0 * t * t) as u8;
    format!("rgb({r},{g},{g})")
}

pub(super) const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

pub(super) fn svg_open(id: &str, width: usize, height: usize) -> String {
    format!(
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\
         <rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>"
    )
}

/// Model × corruption heat map of CE (mean error for the extras), one tooltip per cell.
pub fn heatmap_svg(report: &CorruptionReport) -> String {
    let cols = columns(report);
    let (left, top, w, h) = (160usize, 110usize, 34usize, 20usize);
    let width = left + w * cols.len() + 20;
    let height = top + h * report.models.len() + 20;
    let mut s = svg_open("corruption-heatmap", width, height);
    for (j, (c, in_mce)) in cols.iter().enumerate() {
        let x = left + j * w + w / 2;
        s += &format!(
            "<text transform=\"translate({x},{}) rotate(-60)\" fill=\"{}\">{}</text>",
            top - 6,
            if *in_mce { "#222" } else { "#888" },
            escape_xml(c)
        );
    }
    for (i, m) in report.models.iter().enumerate() {
        let y = top + i * h;
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 6,
            y + h / 2 + 4,
            escape_xml(&m.model)
        );
        for (j, (c, in_mce)) in cols.iter().enumerate() {
            let r = report
                .corruptions
                .iter()
                .find(|r| r.model == m.model && &r.corruption == c);
            let (value, what) = if *in_mce {
                (r.and_then(|r| r.ce), "CE")
            } else {
                (r.and_then(|r| r.mean_error), "mean error")
            };
            // CE 100 (AlexNet) and error 100 % are the dark end.
            let fill = value.map_or("#eee".to_string(), |v| heat(v / 100.0));
            s += &format!(
                "<rect x=\"{}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{fill}\" stroke=\"white\">\
                 <title>{} · {}: {what} {}</title></rect>",
                left + j * w,
                escape_xml(&m.model),
                escape_xml(c),
                cell(value)
            );
        }
    }
    s + "</svg>"
}

/// Error against severity, one panel per family, one line per model (the family's mean error over
/// its benchmark corruptions at each severity), one tooltip per point.
pub fn severity_svg(report: &CorruptionReport) -> String {
    let families = ["noise", "blur", "weather", "digital"];
    let (pw, ph, pad) = (220usize, 180usize, 40usize);
    let width = families.len() * (pw + pad) + pad;
    let height = ph + 2 * pad + 20 + 16 * report.models.len().min(20);
    let mut s = svg_open("corruption-severity", width, height);
    for (k, family) in families.iter().enumerate() {
        let x0 = pad + k * (pw + pad);
        let y0 = pad;
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-weight=\"bold\">{family}</text>\
             <rect x=\"{x0}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>",
            x0 + pw / 2,
            y0 - 8
        );
        for (tick, label) in [(0.0, "0"), (50.0, "50"), (100.0, "100 %")] {
            let y = y0 as f64 + ph as f64 * (1.0 - tick / 100.0);
            s += &format!(
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#666\">{label}</text>",
                x0 - 3,
                y + 4.0
            );
        }
        for sev in 1..=5usize {
            let x = x0 + (sev - 1) * pw / 4;
            s += &format!(
                "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{sev}</text>",
                y0 + ph + 14
            );
        }
        for (i, m) in report.models.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let rows: Vec<&CorruptionRow> = report
                .corruptions
                .iter()
                .filter(|r| r.model == m.model && r.in_mce && r.family == *family)
                .collect();
            let points: Vec<(usize, f64)> = (0..5)
                .filter_map(|sv| {
                    let errs: Vec<f64> = rows.iter().filter_map(|r| r.errors()[sv]).collect();
                    mean(&errs).map(|e| (sv, e))
                })
                .collect();
            let xy = |(sv, e): (usize, f64)| {
                (
                    x0 as f64 + sv as f64 * pw as f64 / 4.0,
                    y0 as f64 + ph as f64 * (1.0 - e / 100.0),
                )
            };
            let line: Vec<String> = points
                .iter()
                .map(|&p| {
                    let (x, y) = xy(p);
                    format!("{x:.1},{y:.1}")
                })
                .collect();
            s += &format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"/>",
                line.join(" ")
            );
            for &p in &points {
                let (x, y) = xy(p);
                s += &format!(
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{colour}\"><title>{} · {family} · severity {}: mean error {:.2} %</title></circle>",
                    escape_xml(&m.model),
                    p.0 + 1,
                    p.1
                );
            }
        }
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">severity</text>",
        width / 2,
        pad + ph + 30
    );
    for (i, m) in report.models.iter().take(20).enumerate() {
        let y = pad + ph + 48 + 16 * i;
        s += &format!(
            "<rect x=\"{pad}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{}\"/><text x=\"{}\" y=\"{y}\">{}</text>",
            y - 4,
            PALETTE[i % PALETTE.len()],
            pad + 18,
            escape_xml(&m.model)
        );
    }
    s + "</svg>"
}

/// The testbed's synthetic-versus-natural picture: relative mCE (partial where marked) against
/// average effective robustness on the natural shifts, one tooltip per model.
pub fn scatter_svg(points: &[(String, String, f64, f64)]) -> String {
    let (width, height, pad) = (560usize, 420usize, 60.0);
    let mut s = svg_open("synthetic-vs-natural", width, height);
    if points.is_empty() {
        return s + "</svg>";
    }
    let span = |vals: Vec<f64>| {
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let margin = ((hi - lo) * 0.1).max(1.0);
        (lo - margin, hi + margin)
    };
    let (xlo, xhi) = span(points.iter().map(|p| p.3).collect());
    let (ylo, yhi) = span(points.iter().map(|p| p.2).collect());
    let (pw, ph) = (width as f64 - 1.5 * pad, height as f64 - 1.7 * pad);
    let px = |x: f64| pad + (x - xlo) / (xhi - xlo) * pw;
    let py = |y: f64| pad * 0.5 + (1.0 - (y - ylo) / (yhi - ylo)) * ph;
    s += &format!(
        "<rect x=\"{pad}\" y=\"{}\" width=\"{pw:.1}\" height=\"{ph:.1}\" fill=\"none\" stroke=\"#999\"/>",
        pad * 0.5
    );
    for (v, x) in [
        (xlo, px(xlo)),
        ((xlo + xhi) / 2.0, px((xlo + xhi) / 2.0)),
        (xhi, px(xhi)),
    ] {
        s += &format!(
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#666\">{v:+.1}</text>",
            pad * 0.5 + ph + 14.0
        );
    }
    for (v, y) in [
        (ylo, py(ylo)),
        ((ylo + yhi) / 2.0, py((ylo + yhi) / 2.0)),
        (yhi, py(yhi)),
    ] {
        s += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#666\">{v:.1}</text>",
            pad - 4.0,
            y + 4.0
        );
    }
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">average effective robustness on natural shifts (pp)</text>\
         <text transform=\"translate(14,{:.1}) rotate(-90)\" text-anchor=\"middle\">relative mCE (%, AlexNet = 100; lower is more robust)</text>",
        pad + pw / 2.0,
        height as f64 - 8.0,
        pad * 0.5 + ph / 2.0
    );
    let groups: Vec<&str> = {
        let mut g: Vec<&str> = points.iter().map(|p| p.1.as_str()).collect();
        g.sort();
        g.dedup();
        g
    };
    for (model, group, rel, er) in points {
        let colour = PALETTE[groups
            .iter()
            .position(|g| *g == group.as_str())
            .unwrap_or(0)
            % PALETTE.len()];
        s += &format!(
            "<circle class=\"tip\" data-model=\"{m}\" data-group=\"{g}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{colour}\">\
             <title>{m} ({g})\nrelative mCE {rel:.2} %\naverage effective robustness {er:+.2} pp</title></circle>",
            px(*er),
            py(*rel),
            m = escape_xml(model),
            g = escape_xml(group),
        );
    }
    s + "</svg>"
}

/// The three figures, as HTML figures for the report (the scatter only where there are points).
pub fn svg_figures(report: &CorruptionReport, scatter: &[(String, String, f64, f64)]) -> String {
    let mut s = String::from("<div class=\"charts\">");
    s += &format!(
        "<figure><figcaption>CE per model and corruption (mean error for the extras)</figcaption>{}</figure>",
        heatmap_svg(report)
    );
    s += &format!(
        "<figure><figcaption>Error against severity, by corruption family</figcaption>{}</figure>",
        severity_svg(report)
    );
    if !scatter.is_empty() {
        s += &format!(
            "<figure><figcaption>Synthetic against natural: relative mCE against average effective robustness</figcaption>{}</figure>",
            scatter_svg(scatter)
        );
    }
    s + "</div>"
}

/// The figures as files in `plots/`.
pub fn write_plots(
    dir: &Path,
    report: &CorruptionReport,
    scatter: &[(String, String, f64, f64)],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = vec![
        (dir.join("corruptions-heatmap.svg"), heatmap_svg(report)),
        (dir.join("corruptions-severity.svg"), severity_svg(report)),
    ];
    if !scatter.is_empty() {
        files.push((dir.join("synthetic-vs-natural.svg"), scatter_svg(scatter)));
    }
    for (path, svg) in &files {
        write_atomic(path, svg.as_bytes())?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}
