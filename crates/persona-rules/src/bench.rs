//! Rules of the shapes people write, for the benchmarks of the segment stage.

/// `n` rules over five common shapes (thresholds on purchases, spend with a country,
/// recency, product interest, country lists), with thresholds spread so that some match.
pub fn typical_rules(n: usize) -> Vec<String> {
    const SHAPES: [&str; 5] = [
        "computed.frequency >= {}",
        "computed.monetary > {} AND traits.country = 'DE'",
        "computed.recency_days <= {} AND computed.frequency >= 2",
        "computed.events.\"Product Viewed\" >= {} OR computed.email_clicks > 0",
        "traits.country IN ('DE', 'AT', 'CH') AND computed.sessions >= {}",
    ];
    (0..n)
        .map(|i| SHAPES[i % SHAPES.len()].replace("{}", &(i * 3).to_string()))
        .collect()
}
