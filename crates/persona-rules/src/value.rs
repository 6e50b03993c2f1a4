//! Values while a rule is evaluated, with SQL's comparison and three-valued logic.

use std::borrow::Cow;
use std::cmp::Ordering;

/// A value: a field's, a literal's or an expression's. `Null` is SQL's unknown.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Num(f64),
    Text(Cow<'a, str>),
    Bool(bool),
    /// Milliseconds since the Unix epoch.
    Time(i64),
}

impl<'a> Val<'a> {
    pub fn text(s: &'a str) -> Val<'a> {
        Val::Text(Cow::Borrowed(s))
    }

    /// The order of two values of the same kind; `None` when either is null or the kinds
    /// differ (a trait holding text compared with a number is unknown, not an error).
    pub fn compare(&self, other: &Val) -> Option<Ordering> {
        match (self, other) {
            (Val::Num(a), Val::Num(b)) => a.partial_cmp(b),
            (Val::Text(a), Val::Text(b)) => Some(a.as_ref().cmp(b.as_ref())),
            (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
            (Val::Time(a), Val::Time(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// As a truth value: `None` for null (and for anything not a boolean).
    pub fn truth(&self) -> Option<bool> {
        match self {
            Val::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// `NULL` stays unknown through NOT.
pub fn from_truth(t: Option<bool>) -> Val<'static> {
    t.map_or(Val::Null, Val::Bool)
}
