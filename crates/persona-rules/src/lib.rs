//! Rule segments: a segment is a boolean expression over profile fields in SQL syntax, such
//! as `computed.frequency >= 3 AND computed.monetary > 200 AND traits.country = 'DE' AND
//! computed.recency_days <= 30`.
//!
//! [`Rule::compile`] parses it with sqlparser (the parser DataFusion uses), resolves every
//! name against the profile schema ([`schema`]), checks the types of each comparison and
//! compiles it once; [`Rule::matches`] evaluates it on a profile with SQL's three-valued
//! logic (a missing value is unknown, and unknown is not a member). Errors name the field
//! and the reason, for the API's 400.
//!
//! Names: `user_id`; `computed.<feature>` for each computed feature; `computed.events."<event
//! name>"` and `computed.page_categories."<category>"` for counts; `traits.<name>` (nested:
//! `traits.address.city`). Operators: `= <> != < <= > >=`, `AND OR NOT`, `IN (...)`,
//! `BETWEEN`, `LIKE`, `IS [NOT] NULL`, `IS TRUE/FALSE`, `+ - * /`. A time field compares with
//! RFC 3339 or `YYYY-MM-DD` text.

pub mod bench;
pub mod live;
pub mod rule;
pub mod schema;
pub mod value;

pub use live::{Live, LiveModel, LiveSegment, ModelDoc, ModelStatus, Reason, SegmentRegistry};
pub use rule::Rule;

/// Why a rule cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{reason}", field.as_ref().map_or(String::new(), |f| format!("{f}: ")))]
pub struct RuleError {
    /// The field the problem is with, when there is one.
    pub field: Option<String>,
    pub reason: String,
}

impl RuleError {
    fn new(reason: String) -> RuleError {
        RuleError {
            field: None,
            reason,
        }
    }
}
