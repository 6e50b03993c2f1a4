//! The customer personas the simulator draws from: the ground truth that segmentation
//! should rediscover.

/// How one kind of customer behaves. Rates are per week; probabilities per occasion.
#[derive(Debug, Clone, Copy)]
pub struct Persona {
    pub name: &'static str,
    /// Share of customers with this persona.
    pub share: f64,
    /// Mean sessions per week while active.
    pub sessions_per_week: f64,
    /// Part of the simulated period in which the customer is active, as fractions.
    pub active: (f64, f64),
    /// Chance that a session ends in an order.
    pub purchase_rate: f64,
    /// Chance that a session with product views that ends without an order leaves a
    /// product in the cart (most online carts are abandoned), and a third of those times a
    /// started checkout too.
    pub cart_abandon: f64,
    /// Median order value and the spread (sigma of its logarithm).
    pub order_value: (f64, f64),
    /// Mean page or screen views per session.
    pub views_per_session: f64,
    /// Chance of opening a marketing email, and of clicking once opened.
    pub email_open: f64,
    pub email_click: f64,
    /// Share of sessions in the mobile app rather than on the web site.
    pub app_share: f64,
    /// Chance per session that an anonymous visitor signs up (identifies).
    pub signup_rate: f64,
}

pub const PERSONAS: [Persona; 7] = [
    Persona {
        name: "champion",
        share: 0.10,
        sessions_per_week: 4.0,
        active: (0.0, 1.0),
        purchase_rate: 0.35,
        cart_abandon: 0.3,
        order_value: (120.0, 0.4),
        views_per_session: 5.0,
        email_open: 0.6,
        email_click: 0.4,
        app_share: 0.3,
        signup_rate: 0.6,
    },
    Persona {
        name: "deal_hunter",
        share: 0.15,
        sessions_per_week: 3.0,
        active: (0.0, 1.0),
        purchase_rate: 0.3,
        cart_abandon: 0.6,
        order_value: (25.0, 0.3),
        views_per_session: 7.0,
        email_open: 0.5,
        email_click: 0.5,
        app_share: 0.2,
        signup_rate: 0.4,
    },
    Persona {
        name: "big_spender",
        share: 0.08,
        sessions_per_week: 0.7,
        active: (0.0, 1.0),
        purchase_rate: 0.3,
        cart_abandon: 0.25,
        order_value: (400.0, 0.5),
        views_per_session: 4.0,
        email_open: 0.2,
        email_click: 0.2,
        app_share: 0.1,
        signup_rate: 0.5,
    },
    Persona {
        name: "window_shopper",
        share: 0.30,
        sessions_per_week: 2.5,
        active: (0.0, 1.0),
        purchase_rate: 0.015,
        cart_abandon: 0.35,
        order_value: (40.0, 0.4),
        views_per_session: 9.0,
        email_open: 0.15,
        email_click: 0.1,
        app_share: 0.2,
        signup_rate: 0.08,
    },
    Persona {
        name: "lapsed",
        share: 0.20,
        sessions_per_week: 3.0,
        active: (0.0, 0.4),
        purchase_rate: 0.2,
        cart_abandon: 0.3,
        order_value: (60.0, 0.4),
        views_per_session: 5.0,
        email_open: 0.08,
        email_click: 0.05,
        app_share: 0.2,
        signup_rate: 0.5,
    },
    Persona {
        name: "newcomer",
        share: 0.10,
        sessions_per_week: 3.0,
        active: (0.85, 1.0),
        purchase_rate: 0.3,
        cart_abandon: 0.4,
        order_value: (50.0, 0.4),
        views_per_session: 6.0,
        email_open: 0.45,
        email_click: 0.3,
        app_share: 0.2,
        signup_rate: 0.5,
    },
    Persona {
        name: "app_loyalist",
        share: 0.07,
        sessions_per_week: 5.0,
        active: (0.0, 1.0),
        purchase_rate: 0.15,
        cart_abandon: 0.3,
        order_value: (35.0, 0.3),
        views_per_session: 6.0,
        email_open: 0.05,
        email_click: 0.1,
        app_share: 0.9,
        signup_rate: 0.6,
    },
];

/// Picks a persona for a uniform draw `u` in [0, 1) by the shares.
pub fn pick(u: f64) -> &'static Persona {
    let mut acc = 0.0;
    for p in &PERSONAS {
        acc += p.share;
        if u < acc {
            return p;
        }
    }
    PERSONAS.last().expect("non-empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_one() {
        let total: f64 = PERSONAS.iter().map(|p| p.share).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert_eq!(pick(0.0).name, "champion");
        assert_eq!(pick(0.999_999).name, "app_loyalist");
    }
}
