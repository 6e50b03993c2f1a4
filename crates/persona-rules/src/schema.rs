//! The profile fields a rule may name, their types, and how each is read from a
//! [`ProfileView`].

use persona_core::profile::{ComputedView, ProfileView};
use serde_json::Value as Json;

use crate::value::Val;

/// The type of a field or an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Number,
    Text,
    Bool,
    /// A point in time; compared with RFC 3339 or `YYYY-MM-DD` text literals.
    Time,
    /// A trait: its type is whatever the customer's value is, known only when evaluated.
    Any,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Number => "a number",
            Type::Text => "text",
            Type::Bool => "a boolean",
            Type::Time => "a time",
            Type::Any => "a trait",
        }
    }
}

/// A field of the profile.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    UserId,
    Computed(&'static ComputedField),
    /// `computed.events."Order Completed"`: how often the customer sent that event.
    EventCount(String),
    /// `computed.page_categories."Shoes"`: page views in that category.
    PageCategory(String),
    /// `traits.address.city`: the path into the traits.
    Trait(Vec<String>),
}

/// One of the computed features.
#[derive(Debug)]
pub struct ComputedField {
    pub name: &'static str,
    pub ty: Type,
    /// Relative to `as_of`, so it changes with time alone and needs the sweep.
    pub time_relative: bool,
    read: for<'a> fn(&'a ComputedView<'_>) -> Val<'a>,
}

impl PartialEq for ComputedField {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

fn num(x: u64) -> Val<'static> {
    Val::Num(x as f64)
}

fn opt_num(x: Option<f64>) -> Val<'static> {
    x.map_or(Val::Null, Val::Num)
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> Val<'static> {
    t.map_or(Val::Null, |t| Val::Time(t.timestamp_millis()))
}

macro_rules! computed {
    ($($name:literal, $ty:ident, $rel:literal, |$c:ident| $read:expr;)*) => {
        /// Every computed field, as `computed.<name>`.
        pub static COMPUTED: &[ComputedField] = &[
            $(ComputedField { name: $name, ty: Type::$ty, time_relative: $rel, read: |$c| $read },)*
        ];
    };
}

computed! {
    "event_count", Number, false, |c| num(c.event_count);
    "first_seen", Time, false, |c| time(c.first_seen);
    "last_seen", Time, false, |c| time(c.last_seen);
    "days_since_last_seen", Number, true, |c| opt_num(c.days_since_last_seen.map(|d| d as f64));
    "recency_days", Number, true, |c| opt_num(c.recency_days.map(|d| d as f64));
    "frequency", Number, false, |c| num(c.frequency);
    "monetary", Number, false, |c| Val::Num(c.monetary);
    "avg_order_value", Number, false, |c| opt_num(c.avg_order_value);
    "first_purchase", Time, false, |c| time(c.first_purchase);
    "last_purchase", Time, false, |c| time(c.last_purchase);
    "page_views", Number, false, |c| num(c.page_views);
    "screen_views", Number, false, |c| num(c.screen_views);
    "sessions", Number, false, |c| num(c.sessions);
    "time_on_site_seconds", Number, false, |c| Val::Num(c.time_on_site_seconds);
    "avg_session_seconds", Number, false, |c| opt_num(c.avg_session_seconds);
    "email_opens", Number, false, |c| num(c.email_opens);
    "email_clicks", Number, false, |c| num(c.email_clicks);
    "click_through_rate", Number, false, |c| opt_num(c.click_through_rate);
    "app_sessions", Number, false, |c| num(c.app_sessions);
    "events_7d", Number, true, |c| num(c.events_7d);
    "events_30d", Number, true, |c| num(c.events_30d);
    "events_90d", Number, true, |c| num(c.events_90d);
    "purchases_30d", Number, true, |c| num(c.purchases_30d);
    "purchases_90d", Number, true, |c| num(c.purchases_90d);
    "revenue_30d", Number, true, |c| Val::Num(c.revenue_30d);
    "revenue_90d", Number, true, |c| Val::Num(c.revenue_90d);
}

impl Field {
    /// The field a dotted name (as the parser split it) refers to.
    pub fn resolve(parts: &[String]) -> Result<Field, String> {
        let path = parts.join(".");
        match parts {
            [one] if one == "user_id" => Ok(Field::UserId),
            [c, name] if c == "computed" => COMPUTED
                .iter()
                .find(|f| f.name == name)
                .map(Field::Computed)
                .ok_or_else(|| {
                    format!(
                        "unknown field {path}; the computed fields are {}, and computed.events.\"<event>\", computed.page_categories.\"<category>\"",
                        COMPUTED.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
                    )
                }),
            [c, map, key] if c == "computed" && map == "events" => {
                Ok(Field::EventCount(key.clone()))
            }
            [c, map, key] if c == "computed" && map == "page_categories" => {
                Ok(Field::PageCategory(key.clone()))
            }
            [t, rest @ ..] if t == "traits" && !rest.is_empty() => Ok(Field::Trait(rest.to_vec())),
            _ => Err(format!(
                "unknown field {path}; a rule names user_id, computed.<field> or traits.<name>"
            )),
        }
    }

    pub fn ty(&self) -> Type {
        match self {
            Field::UserId => Type::Text,
            Field::Computed(f) => f.ty,
            Field::EventCount(_) | Field::PageCategory(_) => Type::Number,
            Field::Trait(_) => Type::Any,
        }
    }

    pub fn time_relative(&self) -> bool {
        matches!(self, Field::Computed(f) if f.time_relative)
    }

    /// The field's value for one profile.
    pub fn read<'a>(&self, p: &'a ProfileView) -> Val<'a> {
        match self {
            Field::UserId => p.user_id.as_deref().map_or(Val::Null, Val::text),
            Field::Computed(f) => (f.read)(&p.computed),
            Field::EventCount(name) => num(p.computed.events.get(name).copied().unwrap_or(0)),
            Field::PageCategory(name) => {
                num(p.computed.page_categories.get(name).copied().unwrap_or(0))
            }
            Field::Trait(path) => {
                let mut at = p.traits.get(&path[0]);
                for key in &path[1..] {
                    at = at.and_then(|v| v.get(key));
                }
                match at {
                    Some(Json::String(s)) => Val::text(s),
                    Some(Json::Number(n)) => n.as_f64().map_or(Val::Null, Val::Num),
                    Some(Json::Bool(b)) => Val::Bool(*b),
                    _ => Val::Null,
                }
            }
        }
    }
}
