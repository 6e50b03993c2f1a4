//! An SVG chart of requests per second against open connections, one line per server and
//! the target drawn across: how each server's rate grows with the load generator's
//! concurrency, and where it levels off, is read at a glance rather than from a table.

use std::fmt::Write as _;

/// One server's median rate at each connection count.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    /// (connections, requests per second), in increasing connections.
    pub points: Vec<(usize, f64)>,
}

/// A horizontal line across the chart, labelled.
pub struct Level<'a> {
    pub value: f64,
    pub label: &'a str,
}

const W: f64 = 680.0;
const H: f64 = 380.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// The chart as a standalone SVG document. Connections go on a log-2 axis, as they are
/// usually swept by doubling; rates on a linear axis from zero, so that a ratio between
/// two lines is the ratio of their heights.
pub fn rate_by_connections(title: &str, series: &[Series<'_>], level: Option<Level<'_>>) -> String {
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(c, _)| (*c as f64).log2()))
        .collect();
    let (x0, x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    // One count alone still gets an axis around it.
    let (x0, x1) = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 1.0, x0 + 1.0)
    };
    let highest = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, r)| *r))
        .chain(level.as_ref().map(|l| l.value))
        .fold(0.0, f64::max);
    let y1 = nice_ceiling(highest * 1.1);
    let sx = |c: usize| LEFT + ((c as f64).log2() - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let sy = |r: f64| H - BOTTOM - r / y1 * (H - TOP - BOTTOM);

    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        svg,
        r#"<rect width="{W}" height="{H}" fill="white"/><text x="{}" y="22" text-anchor="middle" font-weight="bold" font-size="14">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        escape(title)
    );
    // Axes, with five rate gridlines and a tick at every connection count measured.
    for i in 0..=5 {
        let r = y1 * f64::from(i) / 5.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{}</text>"##,
            thousands(r),
            y = sy(r),
            x2 = W - RIGHT,
            tx = LEFT - 6.0,
            ty = sy(r) + 4.0
        );
    }
    let mut counts: Vec<usize> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(c, _)| *c))
        .collect();
    counts.sort_unstable();
    counts.dedup();
    for c in counts {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{c}</text>"#,
            sx(c),
            H - BOTTOM + 18.0
        );
    }
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="#555"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}" stroke="#555"/><text x="{mx}" y="{by}" text-anchor="middle">open connections (log scale)</text><text x="18" y="{my}" text-anchor="middle" transform="rotate(-90 18 {my})">requests/s</text>"##,
        b = H - BOTTOM,
        r = W - RIGHT,
        mx = (LEFT + W - RIGHT) / 2.0,
        by = H - 10.0,
        my = (TOP + H - BOTTOM) / 2.0
    );
    // The level's label goes in the legend, below the series': beside its line it would
    // collide with the labels of the points at the right end.
    if let Some(level) = &level {
        let (y, ly) = (sy(level.value), TOP + 20.0 * series.len() as f64);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#c0392b" stroke-dasharray="6 4"/><line x1="{x}" y1="{ly}" x2="{x2}" y2="{ly}" stroke="#c0392b" stroke-dasharray="6 4"/><text x="{tx}" y="{ty}" fill="#c0392b">{}</text>"##,
            escape(level.label),
            r = W - RIGHT,
            x = W - RIGHT + 8.0,
            x2 = W - RIGHT + 28.0,
            tx = W - RIGHT + 34.0,
            ty = ly + 4.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(c, r)| format!("{:.1},{:.1}", sx(*c), sy(*r)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2.5" points="{}"/>"#,
            s.colour,
            points.join(" ")
        );
        for (c, r) in &s.points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"><title>{}, {c} connections: {r:.0} requests/s</title></circle><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="{}">{r:.0}</text>"#,
                sx(*c),
                sy(*r),
                s.colour,
                escape(s.name),
                sx(*c),
                sy(*r) - 8.0,
                s.colour
            );
        }
        let ly = TOP + 20.0 * i as f64;
        let _ = write!(
            svg,
            r#"<line x1="{x}" y1="{ly}" x2="{x2}" y2="{ly}" stroke="{c}" stroke-width="2.5"/><text x="{tx}" y="{ty}">{}</text>"#,
            escape(s.name),
            x = W - RIGHT + 8.0,
            x2 = W - RIGHT + 28.0,
            c = s.colour,
            tx = W - RIGHT + 34.0,
            ty = ly + 4.0
        );
    }
    svg + "</svg>\n"
}

/// `r` in thousands (`40k`) from ten thousand on, as an axis label.
fn thousands(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.0}k", r / 1000.0)
    } else {
        format!("{r:.0}")
    }
}

/// The smallest of 1, 2 or 5 times a power of ten that is at least `v` (and at least 1).
fn nice_ceiling(v: f64) -> f64 {
    let v = v.max(1.0);
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_drawn_from_zero_and_connections_on_a_log_axis() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(110_000.0), 200_000.0);
        assert_eq!(nice_ceiling(44_000.0), 50_000.0);
        assert_eq!(
            (thousands(40_000.0), thousands(500.0)),
            ("40k".into(), "500".into())
        );
        let svg = rate_by_connections(
            "t <&>",
            &[
                Series {
                    name: "no-op",
                    colour: "#777",
                    points: vec![(64, 100_000.0), (256, 98_000.0)],
                },
                Series {
                    name: "persona",
                    colour: "#2563eb",
                    points: vec![(64, 37_000.0), (256, 45_000.0)],
                },
            ],
            Some(Level {
                value: 50_000.0,
                label: "target",
            }),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        // 64 and 256 connections sit at the two ends of the plot area, 256 to the right.
        assert!(svg.contains(&format!(r#"cx="{LEFT:.1}""#)));
        assert!(svg.contains(&format!(r#"cx="{:.1}""#, W - RIGHT)));
        // The axis runs to 200,000, so the target's line is a quarter of the way up.
        let target_y = H - BOTTOM - 0.25 * (H - TOP - BOTTOM);
        assert!(svg.contains(&format!(r#"y1="{target_y:.1}""#)), "{svg}");
        // A single count still draws.
        let one = rate_by_connections(
            "one",
            &[Series {
                name: "x",
                colour: "#000",
                points: vec![(64, 10.0)],
            }],
            None,
        );
        assert!(!one.contains("NaN"), "{one}");
    }
}
