//! Generates one customer's Segment-spec messages from their persona.
//!
//! Each customer has their own random stream (seeded from the run's seed and their index),
//! so the output for a seed does not depend on how many customers come before or on
//! thread scheduling.

use chrono::{DateTime, Duration, Utc};
use persona_core::time::format_timestamp;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use crate::personas::{self, Persona};

const PRODUCTS: [(&str, &str, f64); 10] = [
    ("sku-100", "shoes", 89.0),
    ("sku-101", "shoes", 129.0),
    ("sku-200", "shirts", 29.0),
    ("sku-201", "shirts", 45.0),
    ("sku-300", "bags", 159.0),
    ("sku-301", "bags", 249.0),
    ("sku-400", "accessories", 15.0),
    ("sku-401", "accessories", 35.0),
    ("sku-500", "outdoor", 199.0),
    ("sku-501", "outdoor", 399.0),
];
const COUNTRIES: [(&str, f64); 6] = [
    ("US", 0.4),
    ("DE", 0.2),
    ("GB", 0.15),
    ("FR", 0.1),
    ("NL", 0.08),
    ("JP", 0.07),
];
const PAGES: [&str; 4] = ["Home", "Category", "Product", "Blog"];
/// Marketing emails go out weekly.
const CAMPAIGN_EVERY: Duration = Duration::days(7);

/// One generated message, with its event time for ordering the whole stream.
pub struct Generated {
    pub at: DateTime<Utc>,
    pub message: Value,
}

/// One simulated customer and what they did.
pub struct Customer {
    pub user_id: String,
    /// The web browser's anonymous id.
    pub anonymous_id: String,
    /// The phone app's own anonymous id, a second device: `None` for a customer who never
    /// opened the app. Before sign-up the two histories are separate anonymous profiles;
    /// the first app message after it carries the user id too and joins them.
    pub app_anonymous_id: Option<String>,
    pub persona: &'static Persona,
    /// Whether they identified (signed up) during the period.
    pub identified: bool,
    pub messages: Vec<Generated>,
}

/// The period being simulated.
#[derive(Clone, Copy)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    /// What makes the message ids of one period differ from another's. A customer is the
    /// same in every run with one seed, but the messages of a run ending at another time
    /// are new ones: with the seed's ids they would be dropped as copies of the first run's.
    fn id_salt(&self) -> [u8; 16] {
        let mut salt = [0u8; 16];
        salt[..8].copy_from_slice(&self.start.timestamp_millis().to_le_bytes());
        salt[8..].copy_from_slice(&self.end.timestamp_millis().to_le_bytes());
        salt
    }

    fn at_fraction(&self, f: f64) -> DateTime<Utc> {
        self.start
            + Duration::milliseconds(((self.end - self.start).num_milliseconds() as f64 * f) as i64)
    }
}

struct State<'a> {
    rng: ChaCha8Rng,
    /// Mixed into every `messageId`: see [`Period::id_salt`].
    id_salt: [u8; 16],
    c: &'a mut Customer,
    ip: String,
    country: &'static str,
    orders: u32,
    device: &'static str,
    /// Whether the current session is in the mobile app (its messages get app context).
    in_app: bool,
}

pub fn customer(seed: u64, index: usize, period: Period) -> Customer {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let persona = personas::pick(rng.random());
    let mut c = Customer {
        user_id: format!("user-{index:06}"),
        anonymous_id: uuid(&mut rng),
        app_anonymous_id: Some(uuid(&mut rng)),
        persona,
        identified: false,
        messages: Vec::new(),
    };
    let country = weighted(&mut rng, &COUNTRIES);
    let ip = format!("203.0.113.{}", rng.random_range(1..255));
    let device = if rng.random_bool(0.5) {
        "ios"
    } else {
        "android"
    };
    let mut s = State {
        rng,
        id_salt: period.id_salt(),
        c: &mut c,
        ip,
        country,
        orders: 0,
        device,
        in_app: false,
    };
    s.simulate(period);
    c.messages.sort_by_key(|m| m.at);
    // A session that starts near the end runs on for minutes past it; the period is the
    // promise, so what falls after it is left out (and with it, perhaps, the sign-up).
    c.messages.retain(|m| m.at < period.end);
    c.identified = c.messages.iter().any(|m| m.message["type"] == "identify");
    let app_id = c.app_anonymous_id.take();
    c.app_anonymous_id =
        app_id.filter(|id| c.messages.iter().any(|m| m.message["anonymousId"] == **id));
    c
}

impl State<'_> {
    fn simulate(&mut self, period: Period) {
        let p = *self.c.persona;
        let from = period.at_fraction(p.active.0);
        let until = period.at_fraction(p.active.1);
        let mean_gap_secs = 7.0 * 86_400.0 / p.sessions_per_week;
        let mut t = from + self.exp_secs(mean_gap_secs);
        if t >= until {
            // Everyone visits at least once within their active part.
            t = from
                + Duration::milliseconds(
                    ((until - from).num_milliseconds() as f64 * self.rng.random::<f64>()) as i64,
                );
        }
        while t < until {
            let ended = self.session(t, &p);
            // One session at a time: the next starts after this one ended, and further off
            // than the processor's 30-minute session gap, so that it counts as a new one.
            t = (t + self.exp_secs(mean_gap_secs)).max(ended + Duration::minutes(31));
        }
        self.in_app = false;
        self.emails(period, &p);
    }

    /// One visit starting at `t`; returns when it ended.
    fn session(&mut self, mut t: DateTime<Utc>, p: &Persona) -> DateTime<Utc> {
        let app = self.rng.random_bool(p.app_share);
        self.in_app = app;
        if app {
            self.track(t, "Application Opened", json!({"from_background": false}));
        }
        let views = 1 + self.geometric(p.views_per_session - 1.0);
        let mut viewed = Vec::new();
        for _ in 0..views {
            t += self.secs(10.0, 120.0);
            let page = PAGES[self.rng.random_range(0..PAGES.len())];
            if page == "Product" {
                let product = PRODUCTS[self.rng.random_range(0..PRODUCTS.len())];
                self.view(t, app, "Product", product.1);
                t += self.secs(1.0, 5.0);
                self.track(t, "Product Viewed", product_props(product));
                viewed.push(product);
            } else {
                self.view(t, app, page, page_category(page));
            }
        }
        // A visitor signs up after looking around, so the anonymous views come first.
        if !self.c.identified && self.rng.random_bool(p.signup_rate) {
            t += self.secs(5.0, 30.0);
            self.identify(t);
        }
        if self.rng.random_bool(p.purchase_rate) {
            if !self.c.identified {
                // Checking out needs an account.
                t += self.secs(10.0, 60.0);
                self.identify(t);
            }
            t = self.order(t, p, &viewed);
        } else if let Some(&product) = viewed.first()
            && self.rng.random_bool(p.cart_abandon)
        {
            t = self.abandon(t, product);
        }
        t
    }

    /// A product put in the cart and left there, sometimes after starting the checkout.
    fn abandon(&mut self, mut t: DateTime<Utc>, product: (&str, &str, f64)) -> DateTime<Utc> {
        t += self.secs(5.0, 60.0);
        let mut added = product_props(product);
        added["quantity"] = 1.into();
        self.track(t, "Product Added", added);
        if self.rng.random_bool(1.0 / 3.0) {
            t += self.secs(20.0, 120.0);
            self.track(
                t,
                "Checkout Started",
                json!({"value": product.2, "currency": "USD"}),
            );
        }
        t
    }

    fn order(
        &mut self,
        mut t: DateTime<Utc>,
        p: &Persona,
        viewed: &[(&'static str, &'static str, f64)],
    ) -> DateTime<Utc> {
        let target = p.order_value.0 * (p.order_value.1 * self.normal()).exp();
        let coupon = p.name == "deal_hunter";
        // What this persona waits for: 20% off.
        let paid = if coupon { 0.8 } else { 1.0 };
        let (product, quantity) = basket(target / paid, viewed);
        let revenue = (product.2 * f64::from(quantity) * paid * 100.0).round() / 100.0;
        t += self.secs(5.0, 60.0);
        let mut added = product_props(product);
        added["quantity"] = quantity.into();
        self.track(t, "Product Added", added);
        t += self.secs(20.0, 120.0);
        self.track(
            t,
            "Checkout Started",
            json!({"value": revenue, "currency": "USD"}),
        );
        t += self.secs(30.0, 180.0);
        self.orders += 1;
        let order_id = format!("{}-o{}", self.c.user_id, self.orders);
        let mut props = json!({
            "order_id": order_id,
            "revenue": revenue,
            "total": revenue,
            "currency": "USD",
            "products": [{
                "product_id": product.0, "category": product.1,
                "price": product.2, "quantity": quantity,
            }],
        });
        if coupon {
            // The spec's fields for it.
            props["coupon"] = "SAVE20".into();
            props["discount"] =
                json!((product.2 * f64::from(quantity) * (1.0 - paid) * 100.0).round() / 100.0);
        }
        self.track(t, "Order Completed", props);
        t
    }

    fn emails(&mut self, period: Period, p: &Persona) {
        // Campaigns go to every customer who has an email address (identified) by then.
        let Some(signup) = self
            .c
            .messages
            .iter()
            .find(|m| m.message["type"] == "identify")
            .map(|m| m.at)
        else {
            return;
        };
        let mut t = period.start + Duration::hours(10);
        let mut campaign = 0;
        while t < period.end {
            campaign += 1;
            if t > signup && self.rng.random_bool(p.email_open) {
                let opened = t + self.exp_secs(6.0 * 3600.0);
                let props = json!({"campaign_id": format!("weekly-{campaign}"), "email_subject": "This week's picks"});
                if opened < period.end {
                    self.track(opened, "Email Opened", props.clone());
                    if self.rng.random_bool(p.email_click) {
                        let clicked = opened + self.secs(5.0, 300.0);
                        self.track(clicked, "Email Link Clicked", props);
                    }
                }
            }
            t += CAMPAIGN_EVERY;
        }
    }

    fn identify(&mut self, t: DateTime<Utc>) {
        self.c.identified = true;
        let n = &self.c.user_id[5..];
        let traits = json!({
            "email": format!("customer{n}@example.com"),
            "first_name": format!("Customer {n}"),
            "country": self.country,
            "created_at": format_timestamp(t),
        });
        self.push(t, "identify", |m| {
            m.insert("traits".into(), traits);
        });
    }

    fn view(&mut self, t: DateTime<Utc>, app: bool, name: &str, category: &str) {
        let kind = if app { "screen" } else { "page" };
        let path = format!("/{}", name.to_lowercase());
        self.push(t, kind, |m| {
            m.insert("name".into(), name.into());
            m.insert("category".into(), category.into());
            let mut props = json!({"category": category});
            if !app {
                props["path"] = path.clone().into();
                props["url"] = format!("https://shop.example{path}").into();
            }
            m.insert("properties".into(), props);
        });
    }

    fn track(&mut self, t: DateTime<Utc>, event: &str, properties: Value) {
        self.push(t, "track", |m| {
            m.insert("event".into(), event.into());
            m.insert("properties".into(), properties);
        });
    }

    fn push(&mut self, t: DateTime<Utc>, kind: &str, fill: impl FnOnce(&mut Map<String, Value>)) {
        let mut m = Map::new();
        m.insert("type".into(), kind.into());
        let id = salted_uuid(&mut self.rng, self.id_salt);
        m.insert("messageId".into(), id.into());
        let device_id = match (&self.c.app_anonymous_id, self.in_app) {
            (Some(app), true) => app,
            _ => &self.c.anonymous_id,
        };
        m.insert("anonymousId".into(), device_id.clone().into());
        if self.c.identified {
            m.insert("userId".into(), self.c.user_id.clone().into());
        }
        m.insert("timestamp".into(), format_timestamp(t).into());
        let context = if self.in_app {
            json!({"library": {"name": "persona-simulate"}, "ip": self.ip,
                   "app": {"name": "Shop", "version": "3.2.0"}, "device": {"type": self.device}})
        } else {
            json!({"library": {"name": "persona-simulate"}, "ip": self.ip,
                   "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"})
        };
        m.insert("context".into(), context);
        fill(&mut m);
        self.c.messages.push(Generated {
            at: t,
            message: Value::Object(m),
        });
    }

    fn secs(&mut self, lo: f64, hi: f64) -> Duration {
        Duration::milliseconds((self.rng.random_range(lo..hi) * 1000.0) as i64)
    }

    fn exp_secs(&mut self, mean: f64) -> Duration {
        let u: f64 = self.rng.random();
        Duration::milliseconds((-(1.0 - u).ln() * mean * 1000.0) as i64)
    }

    /// Number of failures before a success, with the given mean.
    fn geometric(&mut self, mean: f64) -> u32 {
        let p = 1.0 / (1.0 + mean.max(0.0));
        let mut n = 0;
        while !self.rng.random_bool(p) && n < 100 {
            n += 1;
        }
        n
    }

    /// A standard normal draw (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Most of one product in an order.
const MAX_QUANTITY: u32 = 5;

/// The product and quantity whose price comes nearest `value`: one of those viewed in the
/// visit when one comes within a quarter of it, else any in the catalog. So an order's
/// revenue is what its products cost, near what the persona spends.
fn basket(
    value: f64,
    viewed: &[(&'static str, &'static str, f64)],
) -> ((&'static str, &'static str, f64), u32) {
    let nearest = |products: &[(&'static str, &'static str, f64)]| {
        products
            .iter()
            .flat_map(|&p| (1..=MAX_QUANTITY).map(move |q| (p, q)))
            .min_by(|a, b| {
                let off = |(p, q): &((&str, &str, f64), u32)| (p.2 * f64::from(*q) - value).abs();
                off(a).total_cmp(&off(b))
            })
    };
    match nearest(viewed) {
        Some((p, q)) if (p.2 * f64::from(q) - value).abs() <= value / 4.0 => (p, q),
        _ => nearest(&PRODUCTS).expect("a catalog"),
    }
}

fn product_props(p: (&str, &str, f64)) -> Value {
    json!({"product_id": p.0, "category": p.1, "price": p.2, "currency": "USD"})
}

fn page_category(page: &str) -> &'static str {
    match page {
        "Home" => "home",
        "Category" => "browse",
        "Blog" => "content",
        _ => "product",
    }
}

fn weighted<T: Copy>(rng: &mut impl Rng, items: &[(T, f64)]) -> T {
    let u: f64 = rng.random::<f64>() * items.iter().map(|i| i.1).sum::<f64>();
    let mut acc = 0.0;
    for (item, w) in items {
        acc += w;
        if u < acc {
            return *item;
        }
    }
    items.last().expect("non-empty").0
}

fn uuid(rng: &mut impl RngCore) -> String {
    salted_uuid(rng, [0; 16])
}

/// A random id from `rng`, with `salt` mixed in (the generator draws the same numbers
/// either way, so nothing else in a simulation changes with the salt).
fn salted_uuid(rng: &mut impl RngCore, salt: [u8; 16]) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    for (b, s) in bytes.iter_mut().zip(salt) {
        *b ^= s;
    }
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}
