//! Reading a server's own latency histograms from `/metrics`, so a bench can tell a stall
//! inside the server from one in the load generator or the kernel between them.

use std::net::SocketAddr;

use super::Conn;

/// One Prometheus histogram's cumulative bucket counts, by upper bound in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// The buckets of `metric` in an OpenMetrics text page whose labels include every one
    /// of `labels` (e.g. `path="/v1/track"`), summed over any other labels.
    pub fn parse(page: &str, metric: &str, labels: &[&str]) -> Self {
        let prefix = format!("{metric}_bucket{{");
        let mut buckets: Vec<(f64, u64)> = Vec::new();
        for line in page.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Some((label_text, value)) = rest.split_once("} ") else {
                continue;
            };
            if !labels.iter().all(|l| label_text.contains(l)) {
                continue;
            }
            let le = label_text
                .split(',')
                .find_map(|l| l.strip_prefix("le=\""))
                .and_then(|v| v.strip_suffix('"'))
                .and_then(|v| match v {
                    "+Inf" => Some(f64::INFINITY),
                    v => v.parse().ok(),
                });
            let (Some(le), Ok(count)) = (le, value.trim().parse::<f64>()) else {
                continue;
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += count as u64,
                None => buckets.push((le, count as u64)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram { buckets }
    }

    /// What was observed between `earlier` and this reading.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == le)
                    .map_or(0, |(_, c)| *c);
                (le, c.saturating_sub(before))
            })
            .collect();
        Histogram { buckets }
    }

    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, c)| *c)
    }

    /// The upper bound, in milliseconds, of the bucket holding quantile `q`: the histogram's
    /// resolution, so "at most this".
    pub fn quantile_bound_ms(&self, q: f64) -> f64 {
        let want = ((self.count() as f64 * q).ceil() as u64).max(1);
        self.buckets
            .iter()
            .find(|(_, c)| *c >= want)
            .map_or(0.0, |(le, _)| le * 1000.0)
    }

    /// Observations above the largest bucket bound at or below `seconds`.
    pub fn above(&self, seconds: f64) -> u64 {
        let at_or_below = self
            .buckets
            .iter()
            .filter(|(le, _)| *le <= seconds)
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0);
        self.count().saturating_sub(at_or_below)
    }
}

/// The text of `GET /metrics` on the server at `addr`.
pub async fn metrics_page(addr: SocketAddr) -> anyhow::Result<String> {
    Conn::open(addr).await?.get_text("/metrics").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(track: [u64; 3]) -> String {
        format!(
            r#"# TYPE x histogram
x_bucket{{path="/v1/track",status="200",le="0.001"}} {}
x_bucket{{path="/v1/track",status="200",le="0.01"}} {}
x_bucket{{path="/v1/track",status="200",le="+Inf"}} {}
x_bucket{{path="/v1/batch",status="200",le="0.001"}} 5
x_bucket{{path="/v1/batch",status="200",le="0.01"}} 5
x_bucket{{path="/v1/batch",status="200",le="+Inf"}} 5
"#,
            track[0], track[1], track[2]
        )
    }

    #[test]
    fn buckets_are_read_for_the_labels_asked_and_differenced() {
        let track_only = [r#"path="/v1/track""#];
        let now = Histogram::parse(&page([90, 99, 100]), "x", &track_only);
        assert_eq!(now.count(), 100);
        assert_eq!(now.quantile_bound_ms(0.5), 1.0);
        assert_eq!(now.quantile_bound_ms(0.99), 10.0);
        assert_eq!(now.quantile_bound_ms(1.0), f64::INFINITY);
        assert_eq!(now.above(0.01), 1);
        assert_eq!(
            Histogram::parse(&page([90, 99, 100]), "x", &[]).count(),
            105
        );

        let earlier = Histogram::parse(&page([40, 49, 50]), "x", &track_only);
        let delta = now.since(&earlier);
        assert_eq!(delta.count(), 50);
        assert_eq!(
            delta.quantile_bound_ms(0.99),
            1.0,
            "all 50 new ones were fast"
        );
        assert_eq!(delta.above(0.001), 0);
    }
}
