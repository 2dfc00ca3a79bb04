//! The report as one self-contained HTML page: tables, the charts inlined as SVG with their
//! tooltips, a filter, and a content security policy that allows nothing from outside.

use super::*;

/// A table whose header cells sort it on click; `rows` pairs each row with the model and group
/// the filter matches it on, where it has them.
pub(super) fn html_table(
    id: &str,
    (header, rows): (Vec<String>, Vec<Vec<String>>),
    keys: &[(&str, &str)],
) -> String {
    let mut s = format!("<table class=\"sortable\" id=\"{id}\"><thead><tr>");
    for h in header {
        s += &format!("<th>{}</th>", escape_xml(&h));
    }
    s += "</tr></thead><tbody>";
    for (i, r) in rows.into_iter().enumerate() {
        match keys.get(i) {
            Some((model, group)) => {
                s += &format!(
                    "<tr data-model=\"{}\" data-group=\"{}\">",
                    escape_xml(model),
                    escape_xml(group)
                )
            }
            None => s += "<tr>",
        }
        for c in r {
            s += &format!("<td>{}</td>", escape_xml(&c));
        }
        s += "</tr>";
    }
    s + "</tbody></table>"
}

/// The highest and lowest average effective robustness, in a sentence each.
pub(super) fn html_headline(data: &ReportData) -> String {
    let h = headline(data, 3);
    let list = |models: &[Ranked]| {
        models
            .iter()
            .map(|m| {
                format!(
                    "<b>{}</b> {:+.2} ({})",
                    escape_xml(&m.model),
                    m.average_effective_robustness,
                    escape_xml(&m.group)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if h.highest.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "<p class=\"headline\">Highest average effective robustness (pp): {}",
        list(&h.highest)
    );
    // Only the overlap caution: the others are shown above the headline already.
    let caution = h.cautions.iter().skip(data.cautions.len());
    let caution: Vec<String> = caution.map(|c| escape_xml(c)).collect();
    if !h.lowest.is_empty() {
        s += &format!("<br>Lowest: {}", list(&h.lowest));
    }
    for c in caution {
        s += &format!("<br><i>Caution: {c}.</i>");
    }
    s + "</p>"
}

/// The model filter and the charts; every point carries a tooltip (`<title>`).
pub(super) fn html_charts(data: &ReportData) -> String {
    if data.charts.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<h2>Charts</h2><p class=\"filter\"><label for=\"filter\">Highlight models</label> \
         <input id=\"filter\" type=\"search\" list=\"model-names\" placeholder=\"model or group name\" autocomplete=\"off\"> \
         <span id=\"matches\"></span> Hover a point for its model, group, ID and OOD top-1 and effective robustness.</p>\
         <datalist id=\"model-names\">",
    );
    for m in &data.models {
        s += &format!("<option value=\"{}\">", escape_xml(&m.model));
    }
    s += "</datalist><div class=\"charts\">";
    for (name, svg) in &data.charts {
        s += &format!(
            "<figure><figcaption>{}</figcaption>{svg}</figure>",
            escape_xml(name)
        );
    }
    s + "</div>"
}

/// A reliability diagram per model and dataset view, a grid per view.
fn html_reliability(data: &ReportData) -> String {
    let Some(c) = &data.confidence else {
        return String::new();
    };
    if c.reliability.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<h2>Reliability diagrams</h2><p>Per model and dataset: the top-1 accuracy of the images in each \
         of the 15 equal-width confidence bins (blue) against the bins' confidence (y = x dashed: \
         perfect calibration), and each bin's share of the images (grey). Hover a bin for its range, \
         image count, accuracy and mean confidence.</p>",
    );
    let mut views: Vec<&str> = Vec::new();
    for r in &c.reliability {
        if !views.contains(&r.dataset.as_str()) {
            views.push(&r.dataset);
        }
    }
    for view in views {
        s += &format!("<h3>{}</h3><div class=\"reliability\">", escape_xml(view));
        let mut models: Vec<&str> = Vec::new();
        for r in c.reliability.iter().filter(|r| r.dataset == view) {
            if !models.contains(&r.model.as_str()) {
                models.push(&r.model);
            }
        }
        for model in models {
            let bins: Vec<&crate::analysis::reliability::ReliabilityRow> = c
                .reliability
                .iter()
                .filter(|r| r.dataset == view && r.model == model)
                .collect();
            let group = data
                .models
                .iter()
                .find(|m| m.model == model)
                .map_or("", |m| m.group.as_str());
            let ece = c
                .calibration
                .iter()
                .find(|r| r.dataset == view && r.model == model)
                .map(|r| format!(", ECE {:.2} %", r.ece))
                .unwrap_or_default();
            s += &format!(
                "<figure class=\"reliability-diagram\"><figcaption>{}{ece}</figcaption>{}</figure>",
                escape_xml(model),
                crate::analysis::reliability::svg(model, group, view, &bins)
            );
        }
        s += "</div>";
    }
    s
}

pub(super) const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0;font-size:14px}\
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f0f0f0;cursor:pointer;user-select:none}\
th[aria-sort=ascending]::after{content:' \\25B2'}th[aria-sort=descending]::after{content:' \\25BC'}\
td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}.note{color:#a33}\
.headline{font-size:15px;line-height:1.6}.filter input{font-size:15px;padding:3px 6px;width:18em}\
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:1em}\
.reliability{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:.5em}.reliability figcaption{font-weight:normal;font-size:12px}.bin:hover{stroke:#222;stroke-width:1.5px}\
figure{margin:0}figcaption{font-weight:bold;margin-bottom:4px}figure svg{width:100%;height:auto;max-width:900px}\
.tip{cursor:help}.tip:hover{stroke:#555;stroke-width:1.5px}.tip.hit{stroke:#000;stroke-width:3px}";

/// Click-to-sort (numbers as numbers, blanks last) and the model filter, which rings the matching
/// points and bars and hides the other table rows; `report.html#filter=NAME` opens it filtered.
pub(super) const SCRIPT: &str = "document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){\
var tb=th.closest('table').tBodies[0],rows=Array.from(tb.rows),asc=th.getAttribute('aria-sort')!=='ascending';\
th.parentNode.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort')});th.setAttribute('aria-sort',asc?'ascending':'descending');\
var key=function(r){var t=r.cells[i].textContent,v=parseFloat(t);return isNaN(v)?t:v};\
rows.sort(function(a,b){var x=key(a),y=key(b),nx=typeof x==='number',ny=typeof y==='number';\
if(nx!==ny){return nx?-1:1}return (x<y?-1:x>y?1:0)*(asc?1:-1)});rows.forEach(function(r){tb.appendChild(r)})})});\
(function(){var f=document.getElementById('filter');if(!f){return}\
var has=function(e,q){return (e.dataset.model||'').toLowerCase().indexOf(q)>=0||(e.dataset.group||'').toLowerCase().indexOf(q)>=0};\
var apply=function(){var q=f.value.trim().toLowerCase(),n=0,rows=document.querySelectorAll('#models tbody tr');\
document.querySelectorAll('.tip').forEach(function(e){e.classList.toggle('hit',q!==''&&has(e,q))});\
rows.forEach(function(r){var hit=q===''||has(r,q);r.hidden=!hit;if(hit){n++}});\
document.getElementById('matches').textContent=q===''?'':n+' of '+rows.length+' models'};\
f.addEventListener('input',apply);\
if(location.hash.indexOf('#filter=')===0){f.value=decodeURIComponent(location.hash.slice(8));apply()}})();";

/// The Content-Security-Policy: no network, and only this file's own script runs (by hash), so
/// nothing that slipped into the markup could execute.
pub(super) fn content_security_policy() -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT.as_bytes()));
    format!("default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'")
}

pub fn html(data: &ReportData) -> String {
    let mut body = format!("<h1>{}</h1>", escape_xml(&data.title));
    body += &format!(
        "<p>Effective robustness (ER): OOD top-1 minus what the {} fit of the baseline models expects at the model's ID \
         top-1, in percentage points, with its 95 % interval. Click a column to sort.</p>",
        escape_xml(&data.transform)
    );
    for c in &data.cautions {
        body += &format!("<p class=\"caution\"><b>Caution:</b> {}</p>", escape_xml(c));
    }
    body += &html_headline(data);
    body += &html_charts(data);
    body += &html_reliability(data);
    body += "<h2>Top-1 accuracy</h2>";
    let keys: Vec<(&str, &str)> = data
        .accuracy
        .rows
        .iter()
        .map(|r| (r.model.as_str(), r.group.as_str()))
        .collect();
    body += &html_table("accuracy", accuracy_cells(data), &keys);
    body += "<h2>Models</h2>";
    let keys: Vec<(&str, &str)> = data
        .models
        .iter()
        .map(|m| (m.model.as_str(), m.group.as_str()))
        .collect();
    body += &html_table("models", model_table(data), &keys);
    if let Some(c) = &data.corruptions {
        let (summary, per_corruption) = crate::analysis::corruptions::tables(c);
        body += &format!(
            "<h2>Corruptions</h2><p>{}</p>",
            escape_xml(crate::analysis::corruptions::EXPLAINER)
        );
        let corrupted: Vec<(&str, &str)> = c
            .models
            .iter()
            .map(|m| (m.model.as_str(), m.group.as_str()))
            .collect();
        body += &html_table("mce", summary, &corrupted);
        body += &html_table("ce", per_corruption, &corrupted);
        body += &crate::analysis::corruptions::svg_figures(c, &data.synthetic_vs_natural);
    }
    let confidence = data
        .confidence
        .as_ref()
        .map(|c| c.sections())
        .unwrap_or_default();
    let sections = intervention_sections(data).into_iter().chain(confidence);
    for (i, (heading, text, t)) in sections.enumerate() {
        body += &format!(
            "<h2>{}</h2><p>{}</p>",
            escape_xml(&heading),
            escape_xml(&text)
        );
        body += &html_table(&format!("intervention-{i}"), t, &[]);
    }
    body += "<h2>Fits</h2>";
    body += &html_table("fits", fit_table(data), &[]);
    for n in &data.notes {
        body += &format!("<p class=\"note\">{}</p>", escape_xml(n));
    }
    if let Some(p) = &data.provenance {
        body += &format!(
            "<h2>Provenance</h2><p>robust-eval {}, ONNX Runtime {} ({}), host {}, {} – {}</p>",
            escape_xml(&p.tool_version),
            escape_xml(&p.onnxruntime_version),
            escape_xml(&p.providers.join(", ")),
            escape_xml(&p.host),
            escape_xml(&p.started),
            escape_xml(&p.finished)
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{}\"><title>{}</title><style>{STYLE}</style></head>\
         <body>{body}<script>{SCRIPT}</script></body></html>\n",
        content_security_policy(),
        escape_xml(&data.title)
    )
}
