//! A seeded simulator of customer behaviour, for demos, benchmarks and tests that need
//! something real to find.
//!
//! Customers are drawn from a handful of personas (champions, deal hunters, window
//! shoppers, lapsed customers, ...) whose ground truth is kept, so that segmentation can be
//! checked against it. Each customer browses anonymously, may sign up (identify), views
//! pages and products on the web or in the app (two devices, each with its own anonymous
//! id, joined by the user id once the customer has signed up), orders with revenue, and opens and clicks
//! weekly marketing emails. The output is Segment-spec JSON, ordered by event time, and the
//! same seed and period always give the same messages.
//!
//! This crate only generates; sending and writing files belong to the caller.

mod generator;
mod personas;

use std::io::Write;

use chrono::{DateTime, Utc};

pub use generator::{Customer, Generated, Period};
pub use personas::{PERSONAS, Persona};

/// Every customer and the whole stream as JSON lines ordered by event time.
///
/// `on_customer` is called after each customer, e.g. to advance a progress bar.
pub fn generate(
    seed: u64,
    customers: usize,
    period: Period,
    mut on_customer: impl FnMut(),
) -> (Vec<Customer>, Vec<(DateTime<Utc>, String)>) {
    let mut all = Vec::with_capacity(customers);
    let mut lines = Vec::new();
    for i in 0..customers {
        let mut c = generator::customer(seed, i, period);
        for m in c.messages.drain(..) {
            lines.push((m.at, m.message.to_string()));
        }
        all.push(c);
        on_customer();
    }
    // Stable: one customer's messages at the same millisecond keep their order.
    lines.sort_by_key(|(at, _)| *at);
    (all, lines)
}

/// Writes each customer's true persona as CSV:
/// `user_id,anonymous_id,persona,identified,app_anonymous_id` (the last empty for a customer
/// who never used the app).
pub fn write_truth(out: &mut impl Write, customers: &[Customer]) -> std::io::Result<()> {
    writeln!(
        out,
        "user_id,anonymous_id,persona,identified,app_anonymous_id"
    )?;
    for c in customers {
        writeln!(
            out,
            "{},{},{},{},{}",
            c.user_id,
            c.anonymous_id,
            c.persona.name,
            c.identified,
            c.app_anonymous_id.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn period() -> Period {
        let end = persona_core::time::parse_timestamp("2026-06-01T00:00:00Z").unwrap();
        Period {
            start: end - Duration::days(60),
            end,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let (_, a) = generate(5, 30, period(), || {});
        let (_, b) = generate(5, 30, period(), || {});
        let (_, c) = generate(6, 30, period(), || {});
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// A second run with the same seed over another period is the same customers doing
    /// new things: no message id of the first run comes back, or the second run's events
    /// would be dropped as copies.
    #[test]
    fn another_period_gives_new_message_ids_for_the_same_customers() {
        let ids = |p: Period| {
            let (customers, lines) = generate(5, 30, p, || {});
            let ids: std::collections::HashSet<String> = lines
                .iter()
                .map(|(_, l)| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .map(|m| m["messageId"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(ids.len(), lines.len(), "unique within a run");
            let anonymous: Vec<_> = customers.into_iter().map(|c| c.anonymous_id).collect();
            (ids, anonymous)
        };
        let first = period();
        let later = Period {
            start: first.start + Duration::seconds(5),
            end: first.end + Duration::seconds(5),
        };
        let longer = Period {
            start: first.start - Duration::days(30),
            end: first.end,
        };
        let (a, customers_a) = ids(first);
        for other in [later, longer] {
            let (b, customers_b) = ids(other);
            assert!(a.is_disjoint(&b));
            assert_eq!(customers_a, customers_b, "the same customers");
        }
    }

    /// Every event falls inside the requested period, even a session begun just before its
    /// end; and a customer counts as identified exactly when an identify was kept.
    #[test]
    fn every_event_falls_inside_the_period() {
        let p = period();
        for seed in 0..5 {
            let (customers, lines) = generate(seed, 300, p, || {});
            for (at, _) in &lines {
                assert!(p.start <= *at && *at < p.end, "{at} outside the period");
            }
            let identified: std::collections::HashSet<String> = lines
                .iter()
                .map(|(_, l)| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter(|m| m["type"] == "identify")
                .map(|m| m["userId"].as_str().unwrap().to_string())
                .collect();
            for c in &customers {
                assert_eq!(
                    c.identified,
                    identified.contains(&c.user_id),
                    "{}",
                    c.user_id
                );
            }
        }
    }

    /// Which customer each anonymous id belongs to, web and app alike.
    fn owners(customers: &[Customer]) -> std::collections::HashMap<&str, &Customer> {
        customers
            .iter()
            .flat_map(|c| {
                std::iter::once(c.anonymous_id.as_str())
                    .chain(c.app_anonymous_id.as_deref())
                    .map(move |id| (id, c))
            })
            .collect()
    }

    /// Customers browse anonymously before they sign up: each one's first event carries no
    /// user id, so identity resolution has an anonymous history to join.
    #[test]
    fn every_customer_is_anonymous_before_signing_up() {
        let (customers, lines) = generate(3, 300, period(), || {});
        let owner = owners(&customers);
        let mut first = std::collections::HashMap::new();
        for (_, line) in &lines {
            let m: serde_json::Value = serde_json::from_str(line).unwrap();
            let c = owner[m["anonymousId"].as_str().unwrap()];
            first.entry(&c.user_id).or_insert(m);
        }
        assert_eq!(first.len(), customers.len());
        for m in first.values() {
            assert!(m["userId"].is_null(), "a customer's first event is {m}");
        }
    }

    fn on_device<'a>(
        messages: &'a [serde_json::Value],
        id: &'a str,
    ) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
        messages.iter().filter(move |m| m["anonymousId"] == id)
    }

    /// The web and the app are two devices with their own anonymous ids. A customer who
    /// used the app before signing up has an anonymous app history that a later app
    /// message, carrying the user id, joins; one who never signs up stays two anonymous
    /// visitors, as in real traffic.
    #[test]
    fn the_app_is_a_second_device_joined_by_signing_up() {
        let (customers, lines) = generate(5, 400, period(), || {});
        let messages: Vec<serde_json::Value> = lines
            .iter()
            .map(|(_, l)| serde_json::from_str(l).unwrap())
            .collect();
        let (mut joined, mut apart) = (0, 0);
        for c in &customers {
            let Some(app) = c.app_anonymous_id.as_deref() else {
                continue;
            };
            assert_ne!(app, c.anonymous_id);
            let on = |id| on_device(&messages, id);
            for m in on(app) {
                assert!(
                    m["context"]["app"].is_object(),
                    "a web message on the app id: {m}"
                );
            }
            for m in on(&c.anonymous_id) {
                assert!(
                    m["context"]["app"].is_null(),
                    "an app message on the web id: {m}"
                );
            }
            let anonymous_on_both = on(app).any(|m| m["userId"].is_null())
                && on(&c.anonymous_id).any(|m| m["userId"].is_null());
            if !anonymous_on_both {
                continue;
            }
            if on(app).any(|m| m["userId"] == c.user_id.as_str()) {
                joined += 1;
            } else if !c.identified {
                apart += 1;
            }
        }
        assert!(joined > 10, "{joined} customers had both devices joined");
        assert!(
            apart > 0,
            "{apart} unidentified customers used both devices"
        );
    }

    #[test]
    fn personas_appear_in_their_shares() {
        let n = 3000;
        let (customers, _) = generate(1, n, period(), || {});
        for p in PERSONAS {
            let share = customers
                .iter()
                .filter(|c| c.persona.name == p.name)
                .count() as f64
                / n as f64;
            assert!(
                (share - p.share).abs() < 0.03,
                "{}: {share} vs {}",
                p.name,
                p.share
            );
        }
    }

    #[test]
    fn behaviour_follows_the_persona() {
        let p = period();
        let lapse = p.start + Duration::milliseconds((p.end - p.start).num_milliseconds() * 2 / 5);
        let (customers, lines) = generate(2, 400, p, || {});
        let persona_of: std::collections::HashMap<&str, &str> = owners(&customers)
            .into_iter()
            .map(|(id, c)| (id, c.persona.name))
            .collect();
        let mut orders = std::collections::HashMap::<&str, usize>::new();
        let mut events = std::collections::HashMap::<String, usize>::new();
        for (at, line) in &lines {
            let m: serde_json::Value = serde_json::from_str(line).unwrap();
            let persona = persona_of[m["anonymousId"].as_str().unwrap()];
            let event = m["event"].as_str().unwrap_or("");
            *events.entry(event.to_string()).or_default() += 1;
            // A visit begun before the lapse may end a few minutes after it.
            if persona == "lapsed" && !event.starts_with("Email") {
                assert!(
                    *at <= lapse + Duration::hours(1),
                    "a lapsed customer was active at {at}"
                );
            }
            if event == "Order Completed" {
                assert!(m["userId"].is_string(), "orders need an account");
                assert!(m["properties"]["revenue"].as_f64().unwrap() > 0.0);
                assert_eq!(m["properties"]["total"], m["properties"]["revenue"]);
                // What the products cost, less the coupon's discount.
                let props = &m["properties"];
                let cost: f64 = props["products"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["price"].as_f64().unwrap() * p["quantity"].as_f64().unwrap())
                    .sum();
                let discount = props["discount"].as_f64().unwrap_or(0.0);
                let revenue = props["revenue"].as_f64().unwrap();
                assert!((cost - discount - revenue).abs() < 0.011, "{m}");
                assert_eq!(
                    m["properties"]["coupon"].is_string(),
                    persona == "deal_hunter",
                    "{m}"
                );
                *orders.entry(persona).or_default() += 1;
            }
        }
        let per_customer = |name: &str| {
            orders.get(name).copied().unwrap_or(0) as f64
                / customers
                    .iter()
                    .filter(|c| c.persona.name == name)
                    .count()
                    .max(1) as f64
        };
        assert!(per_customer("champion") > 3.0 * per_customer("window_shopper"));
        // Most carts are abandoned: far more products are added than orders completed, and
        // checkouts are started more often than finished.
        let count = |e: &str| events.get(e).copied().unwrap_or(0) as f64;
        assert!(
            count("Product Added") > 1.5 * count("Order Completed"),
            "{events:?}"
        );
        assert!(count("Checkout Started") > 1.1 * count("Order Completed"));
    }
}
