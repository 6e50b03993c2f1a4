//! `persona cluster --report report.html`: one self-contained page (inline SVG, no script,
//! no outside file) with the curves over k, the cluster sizes, a heat map of the centres and
//! a 2-D projection of the customers coloured by cluster.

use std::fmt::Write;

use persona_segment::{Matrix, Scaler, Scaling};
use serde_json::Value;

/// Tableau's ten categorical colours; clusters past ten reuse them.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
/// Customers drawn in the projection.
const SCATTER_POINTS: usize = 2000;

/// What the page shows.
pub struct ReportInput<'a> {
    pub title: String,
    pub summary: String,
    pub features: &'a [String],
    /// Curves over k, as in the JSON report (empty when k was given).
    pub curves: &'a std::collections::BTreeMap<String, Value>,
    pub chosen_k: usize,
    /// Per cluster: name, size.
    pub clusters: Vec<(String, usize)>,
    /// Rows in no cluster (DBSCAN's noise), left out of `data`.
    pub noise: usize,
    /// The input in original units, and the labels.
    pub data: &'a Matrix,
    pub scaled: &'a Matrix,
    pub labels: &'a [usize],
    /// Centres in original units.
    pub centers: &'a Matrix,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart of `ys` over `xs`, with the point at `mark` highlighted.
fn line_chart(title: &str, xs: &[f64], ys: &[f64], mark: Option<f64>) -> String {
    let (w, h, m) = (420.0, 260.0, 45.0);
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let (y0, y1) = (
        ys.iter().copied().fold(f64::INFINITY, f64::min),
        ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let sx = |x: f64| m + (x - x0) / (x1 - x0).max(1e-12) * (w - 2.0 * m);
    let sy = |y: f64| h - m - (y - y0) / (y1 - y0).max(1e-12) * (h - 2.0 * m);
    let mut svg = format!(
        r#"<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}"><text x="{}" y="18" text-anchor="middle" font-weight="bold">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    let _ = write!(
        svg,
        r#"<line x1="{m}" y1="{}" x2="{}" y2="{}" stroke='#888'/><line x1="{m}" y1="{m}" x2="{m}" y2="{}" stroke='#888'/>"#,
        h - m,
        w - m,
        h - m,
        h - m
    );
    let points: Vec<String> = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
        .collect();
    let _ = write!(
        svg,
        r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
        PALETTE[0],
        points.join(" ")
    );
    for (x, y) in xs.iter().zip(ys) {
        let chosen = mark == Some(*x);
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{}" fill="{}"><title>k = {x}: {y:.4}</title></circle><text x="{:.1}" y="{}" text-anchor="middle" font-size="11">{x}</text>"#,
            sx(*x),
            sy(*y),
            if chosen { 6 } else { 3 },
            if chosen { PALETTE[2] } else { PALETTE[0] },
            sx(*x),
            h - m + 16.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="8" y="{:.1}" font-size="11">{y1:.3}</text><text x="8" y="{:.1}" font-size="11">{y0:.3}</text></svg>"#,
        sy(y1) + 4.0,
        sy(y0)
    );
    svg
}

fn bar_chart(clusters: &[(String, usize)], total: usize) -> String {
    let (w, row) = (640.0, 26.0);
    let h = row * clusters.len() as f64 + 10.0;
    let max = clusters.iter().map(|c| c.1).max().unwrap_or(1).max(1) as f64;
    let mut svg = format!(r#"<svg width="{w}" height="{h}">"#);
    for (i, (name, size)) in clusters.iter().enumerate() {
        let y = i as f64 * row + 5.0;
        let len = *size as f64 / max * 300.0;
        let _ = write!(
            svg,
            r#"<rect x="40" y="{y}" width="{len:.1}" height="{}" fill="{}"/><text x="4" y="{}" font-size="12">{i}</text><text x="{:.1}" y="{}" font-size="12">{size} ({:.1}%) {}</text>"#,
            row - 6.0,
            PALETTE[i % 10],
            y + 15.0,
            46.0 + len,
            y + 15.0,
            *size as f64 * 100.0 / total.max(1) as f64,
            esc(name)
        );
    }
    svg + "</svg>"
}

/// Centres, coloured by standardised difference from the overall mean (blue below, red
/// above), labelled with the centre's value in original units.
fn heat_map(features: &[String], centers: &Matrix, z: &Scaler) -> String {
    let (cell_w, cell_h, left, top) = (90.0, 26.0, 40.0, 90.0);
    let (w, h) = (
        left + cell_w * features.len() as f64 + 10.0,
        top + cell_h * centers.rows() as f64 + 10.0,
    );
    let mut svg = format!(r#"<svg width="{w}" height="{h}">"#);
    for (j, f) in features.iter().enumerate() {
        let x = left + cell_w * (j as f64 + 0.5);
        let _ = write!(
            svg,
            r#"<text transform="translate({x:.1},{}) rotate(-35)" font-size="12">{}</text>"#,
            top - 6.0,
            esc(f)
        );
    }
    for (c, center) in centers.iter_rows().enumerate() {
        let y = top + cell_h * c as f64;
        let _ = write!(
            svg,
            r#"<text x="4" y="{}" font-size="12">{c}</text>"#,
            y + 17.0
        );
        for (j, v) in center.iter().enumerate() {
            let zv = ((v - z.offset[j]) / z.scale[j]).clamp(-2.0, 2.0) / 2.0;
            let (r, g, b) = if zv >= 0.0 {
                (255.0, 255.0 * (1.0 - zv), 255.0 * (1.0 - zv))
            } else {
                (255.0 * (1.0 + zv), 255.0 * (1.0 + zv), 255.0)
            };
            let x = left + cell_w * j as f64;
            let _ = write!(
                svg,
                r#"<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="rgb({r:.0},{g:.0},{b:.0})" stroke='#fff'/><text x="{:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"#,
                x + cell_w / 2.0,
                y + 17.0,
                short(*v)
            );
        }
    }
    svg + "</svg>"
}

fn short(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The first two principal components of `data`, by power iteration on the covariance.
fn principal_axes(data: &Matrix) -> [Vec<f64>; 2] {
    let (n, d) = (data.rows(), data.cols());
    let mean: Vec<f64> = (0..d)
        .map(|j| data.iter_rows().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let mut cov = vec![0.0; d * d];
    for r in data.iter_rows() {
        for a in 0..d {
            for b in 0..d {
                cov[a * d + b] += (r[a] - mean[a]) * (r[b] - mean[b]);
            }
        }
    }
    let mut axes: [Vec<f64>; 2] = [vec![0.0; d], vec![0.0; d]];
    for (i, axis) in axes.iter_mut().enumerate() {
        let mut v: Vec<f64> = (0..d).map(|j| 1.0 + (j + i) as f64 * 0.01).collect();
        for _ in 0..100 {
            let mut next: Vec<f64> = (0..d)
                .map(|a| (0..d).map(|b| cov[a * d + b] * v[b]).sum())
                .collect();
            let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
            next.iter_mut().for_each(|x| *x /= norm);
            v = next;
        }
        // Deflate, so the next iteration finds the second component.
        let lambda: f64 = (0..d)
            .map(|a| v[a] * (0..d).map(|b| cov[a * d + b] * v[b]).sum::<f64>())
            .sum();
        for a in 0..d {
            for b in 0..d {
                cov[a * d + b] -= lambda * v[a] * v[b];
            }
        }
        *axis = v;
    }
    axes
}

fn scatter(scaled: &Matrix, labels: &[usize]) -> String {
    let n = scaled.rows();
    let step = n.div_ceil(SCATTER_POINTS).max(1);
    let rows: Vec<usize> = (0..n).step_by(step).collect();
    let sample = scaled.select(&rows);
    let [a, b] = principal_axes(&sample);
    let pts: Vec<(f64, f64, usize)> = rows
        .iter()
        .zip(sample.iter_rows())
        .map(|(&i, r)| {
            let p = |axis: &[f64]| r.iter().zip(axis).map(|(x, y)| x * y).sum::<f64>();
            (p(&a), p(&b), labels[i])
        })
        .collect();
    let (w, h, m) = (520.0, 420.0, 20.0);
    let range = |f: fn(&(f64, f64, usize)) -> f64| {
        pts.iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let ((x0, x1), (y0, y1)) = (range(|p| p.0), range(|p| p.1));
    let mut svg =
        format!(r#"<svg width="{w}" height="{h}"><rect width="{w}" height="{h}" fill='#fafafa'/>"#);
    for (x, y, l) in &pts {
        let cx = m + (x - x0) / (x1 - x0).max(1e-12) * (w - 2.0 * m);
        let cy = h - m - (y - y0) / (y1 - y0).max(1e-12) * (h - 2.0 * m);
        let _ = write!(
            svg,
            r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="2.5" fill="{}" fill-opacity="0.7"/>"#,
            PALETTE[l % 10]
        );
    }
    svg + "</svg>"
}

/// The whole page.
pub fn render(input: &ReportInput<'_>) -> String {
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>body{{font-family:system-ui,sans-serif;margin:24px;color:#222}} h2{{margin-top:28px}} .row{{display:flex;flex-wrap:wrap;gap:24px}} svg{{background:#fff}}</style></head><body><h1>{t}</h1><p>{s}</p>",
        t = esc(&input.title),
        s = esc(&input.summary)
    );
    let series = |name: &str| -> Vec<f64> {
        input
            .curves
            .get(name)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let ks = series("k");
    if !ks.is_empty() {
        let mark = Some(input.chosen_k as f64);
        html += "<h2>Choosing k</h2><div class=\"row\">";
        html += &line_chart("Inertia (elbow)", &ks, &series("inertia"), mark);
        html += &line_chart(
            "Silhouette (higher is better)",
            &ks,
            &series("silhouette"),
            mark,
        );
        html += "</div>";
        if let Some(rule) = input.curves.get("rule").and_then(Value::as_str) {
            let _ = write!(
                html,
                "<p>Chosen k = {}: {}. Elbow of the inertia curve: {}.</p>",
                input.chosen_k,
                esc(rule),
                input
                    .curves
                    .get("elbow_k")
                    .map_or("none".into(), |v| v.to_string())
            );
        }
    }
    let k_distance = series("k_distance");
    if let Some(eps) = input.curves.get("eps").and_then(Value::as_f64)
        && !k_distance.is_empty()
    {
        let xs: Vec<f64> = (0..k_distance.len()).map(|i| i as f64).collect();
        let mark = k_distance.iter().position(|&d| d >= eps).map(|i| i as f64);
        html += "<h2>Choosing eps</h2>";
        html += &line_chart(
            "Distance to the min_samples-th nearest row, sorted",
            &xs,
            &k_distance,
            mark,
        );
        if let Some(rule) = input.curves.get("rule").and_then(Value::as_str) {
            let _ = write!(html, "<p>eps = {eps:.4}: {}.</p>", esc(rule));
        }
    }
    html += "<h2>Cluster sizes</h2>";
    if input.noise > 0 {
        let _ = write!(
            html,
            "<p>{} rows are noise, in no cluster, and not drawn below.</p>",
            input.noise
        );
    }
    html += &bar_chart(&input.clusters, input.data.rows() + input.noise);
    html += "<h2>Centres</h2><p>Each cell is the centre's value in the input's units; red is above the overall mean, blue below (by standard deviations).</p>";
    html += &heat_map(
        input.features,
        input.centers,
        &Scaler::fit(input.data, Scaling::ZScore),
    );
    html += "<h2>Customers in two dimensions</h2><p>The first two principal components of the scaled features, for up to 2,000 customers, coloured by cluster.</p>";
    html += &scatter(input.scaled, input.labels);
    html + "</body></html>"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_principal_axis_follows_the_spread() {
        let rows: Vec<Vec<f64>> = (0..50)
            .map(|i| vec![f64::from(i), 0.1 * f64::from(i % 3)])
            .collect();
        let [a, _] = principal_axes(&Matrix::from_rows(&rows).unwrap());
        assert!(a[0].abs() > 0.99, "{a:?}");
    }
}
