//! The two text formats `GET /metrics` answers in, chosen by the scraper's `Accept` header
//! as Prometheus's own client libraries choose: OpenMetrics when it is asked for (Prometheus
//! asks for it), otherwise the Prometheus text format 0.0.4, which older agents and
//! hand-written parsers read.
//!
//! The registry writes OpenMetrics. For what persona exports the formats differ only in
//! counters and the closing line: OpenMetrics names a counter family `x` and its sample
//! `x_total`, while 0.0.4 reads a sample as part of a family only under its own name, so
//! a 0.0.4 reader would take the sample for an untyped metric. The 0.0.4 page therefore
//! names the family `x_total` and leaves out `# EOF` and `# UNIT`, which it does not have.

use std::collections::HashSet;

use axum::http::HeaderValue;

/// A format of the metrics page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exposition {
    OpenMetrics,
    Text004,
}

impl Exposition {
    /// The format an `Accept` header asks for: OpenMetrics only when named, as
    /// `promhttp` decides; anything else (none, `*/*`, `text/plain`) gets 0.0.4.
    pub(crate) fn for_accept(accept: Option<&HeaderValue>) -> Self {
        let names_openmetrics = accept.and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                // `q=0` declines the type.
                let declined =
                    |p: &str| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0);
                media.eq_ignore_ascii_case("application/openmetrics-text") && !parts.any(declined)
            })
        });
        if names_openmetrics {
            Exposition::OpenMetrics
        } else {
            Exposition::Text004
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Exposition::Text004 => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// `openmetrics`, the registry's page, in this format.
    pub(crate) fn render(self, openmetrics: String) -> String {
        match self {
            Exposition::OpenMetrics => openmetrics,
            Exposition::Text004 => to_text_004(&openmetrics),
        }
    }
}

/// An OpenMetrics page as the Prometheus text format 0.0.4 (see the module's docs).
fn to_text_004(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let family = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let (name, rest) = line.strip_prefix(prefix)?.split_once(' ')?;
            counters.contains(name).then_some((prefix, name, rest))
        });
        match family {
            Some((prefix, name, rest)) => {
                out.push_str(prefix);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(rest);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP m Messages received.\n# TYPE m counter\n\
        m_total{kind=\"track\"} 3\n# HELP d Latency.\n# TYPE d histogram\n# UNIT d seconds\n\
        d_bucket{le=\"+Inf\"} 1\nd_sum 0.5\nd_count 1\n# HELP g A gauge.\n# TYPE g gauge\ng 2\n# EOF\n";

    #[test]
    fn a_counter_family_takes_its_samples_name_and_the_openmetrics_only_lines_go() {
        assert_eq!(
            to_text_004(PAGE),
            "# HELP m_total Messages received.\n# TYPE m_total counter\n\
             m_total{kind=\"track\"} 3\n# HELP d Latency.\n# TYPE d histogram\n\
             d_bucket{le=\"+Inf\"} 1\nd_sum 0.5\nd_count 1\n# HELP g A gauge.\n# TYPE g gauge\ng 2\n"
        );
    }

    #[test]
    fn openmetrics_is_served_only_when_the_scraper_names_it() {
        let accept = |v: &str| Exposition::for_accept(Some(&HeaderValue::from_str(v).unwrap()));
        // What Prometheus 2.x sends.
        assert_eq!(
            accept(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            Exposition::OpenMetrics
        );
        assert_eq!(accept("text/plain;version=0.0.4"), Exposition::Text004);
        assert_eq!(accept("*/*"), Exposition::Text004);
        assert_eq!(
            accept("application/openmetrics-text; q=0"),
            Exposition::Text004
        );
        assert_eq!(Exposition::for_accept(None), Exposition::Text004);
    }
}
