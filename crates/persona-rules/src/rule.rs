//! A rule: parsed by sqlparser (the SQL parser DataFusion uses), type-checked against the
//! profile schema, compiled once into a tree that is evaluated on every profile change.

use std::cmp::Ordering;

use persona_core::profile::ProfileView;
use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value as SqlValue};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::RuleError;
use crate::schema::{Field, Type};
use crate::value::{Val, from_truth};

/// Rules longer than this are refused: a segment is a condition, not a program.
pub const MAX_RULE_BYTES: usize = 4096;

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    source: String,
    root: Node,
    fields: Vec<Field>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone)]
enum Node {
    Lit(Val<'static>),
    Field(Field),
    Cmp(Cmp, Box<Node>, Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    IsNull(Box<Node>),
    /// `IS TRUE` / `IS FALSE`: never unknown (unknown IS TRUE is false).
    Is(Box<Node>, bool),
    In(Box<Node>, Vec<Val<'static>>),
    Like(Box<Node>, Vec<char>),
}

impl Rule {
    /// Parses and checks `sql`, a boolean expression such as
    /// `computed.frequency >= 3 AND traits.country = 'DE'`.
    pub fn compile(sql: &str) -> Result<Rule, RuleError> {
        if sql.len() > MAX_RULE_BYTES {
            return Err(RuleError::new(format!(
                "the rule is {} bytes; at most {MAX_RULE_BYTES}",
                sql.len()
            )));
        }
        if sql.trim().is_empty() {
            return Err(RuleError::new("the rule is empty".into()));
        }
        let expr = parse(sql)?;
        let mut fields = Vec::new();
        let root = resolve_times(build(&expr, &mut fields)?)?;
        let ty = type_of(&root)?;
        if ty != Type::Bool && ty != Type::Any {
            return Err(RuleError::new(format!(
                "the rule is {}, not a condition; compare it, e.g. `... > 0`",
                ty.name()
            )));
        }
        Ok(Rule {
            source: sql.to_owned(),
            root,
            fields,
        })
    }

    /// Whether the profile is in the segment (an unknown result, SQL's NULL, is not).
    pub fn matches(&self, profile: &ProfileView) -> bool {
        eval(&self.root, profile).truth() == Some(true)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the rule reads a value relative to `as_of` (`recency_days`, the rolling
    /// windows), so that time alone can change its result and a sweep must re-evaluate it.
    pub fn time_relative(&self) -> bool {
        self.fields.iter().any(Field::time_relative)
    }
}

fn parse(sql: &str) -> Result<Expr, RuleError> {
    let dialect = GenericDialect {};
    Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut p| {
            let e = p.parse_expr()?;
            // Anything after the expression is an error, not silently ignored.
            p.expect_token(&sqlparser::tokenizer::Token::EOF)?;
            Ok(e)
        })
        .map_err(|e| RuleError::new(format!("not a SQL expression: {e}")))
}

/// A profile field named as a rule names it (`computed.monetary`,
/// `computed.events."Order Completed"`, `traits.age`), for a model's features.
pub fn parse_field(name: &str) -> Result<Field, RuleError> {
    let named = |reason: String| RuleError {
        field: Some(name.to_owned()),
        reason,
    };
    let parts = match parse(name).map_err(|e| named(e.reason))? {
        Expr::Identifier(id) => vec![id.value],
        Expr::CompoundIdentifier(ids) => ids.into_iter().map(|i| i.value).collect(),
        _ => {
            return Err(named(
                "is not a profile field; name one such as computed.monetary or traits.age".into(),
            ));
        }
    };
    Field::resolve(&parts).map_err(named)
}

fn build(expr: &Expr, fields: &mut Vec<Field>) -> Result<Node, RuleError> {
    let b = |e: &Expr, fields: &mut Vec<Field>| build(e, fields).map(Box::new);
    Ok(match expr {
        Expr::Nested(e) => build(e, fields)?,
        Expr::Identifier(id) if id.quote_style == Some('"') => {
            return Err(RuleError::new(format!(
                "\"{0}\" is a name in SQL; write text in single quotes: '{0}'",
                id.value
            )));
        }
        Expr::Identifier(id) => field(vec![id.value.clone()], fields)?,
        Expr::CompoundIdentifier(ids) => {
            field(ids.iter().map(|i| i.value.clone()).collect(), fields)?
        }
        Expr::Value(v) => Node::Lit(literal(&v.value)?),
        Expr::BinaryOp { left, op, right } => {
            let (l, r) = (b(left, fields)?, b(right, fields)?);
            match op {
                BinaryOperator::And => Node::And(l, r),
                BinaryOperator::Or => Node::Or(l, r),
                BinaryOperator::Eq => Node::Cmp(Cmp::Eq, l, r),
                BinaryOperator::NotEq => Node::Cmp(Cmp::Ne, l, r),
                BinaryOperator::Lt => Node::Cmp(Cmp::Lt, l, r),
                BinaryOperator::LtEq => Node::Cmp(Cmp::Le, l, r),
                BinaryOperator::Gt => Node::Cmp(Cmp::Gt, l, r),
                BinaryOperator::GtEq => Node::Cmp(Cmp::Ge, l, r),
                BinaryOperator::Plus => Node::Arith(Arith::Add, l, r),
                BinaryOperator::Minus => Node::Arith(Arith::Sub, l, r),
                BinaryOperator::Multiply => Node::Arith(Arith::Mul, l, r),
                BinaryOperator::Divide => Node::Arith(Arith::Div, l, r),
                other => return Err(unsupported(&format!("the operator {other}"))),
            }
        }
        Expr::UnaryOp { op, expr } => match op {
            UnaryOperator::Not => Node::Not(b(expr, fields)?),
            UnaryOperator::Minus => Node::Neg(b(expr, fields)?),
            UnaryOperator::Plus => build(expr, fields)?,
            other => return Err(unsupported(&format!("the operator {other}"))),
        },
        Expr::IsNull(e) => Node::IsNull(b(e, fields)?),
        Expr::IsNotNull(e) => Node::Not(Box::new(Node::IsNull(b(e, fields)?))),
        Expr::IsTrue(e) => Node::Is(b(e, fields)?, true),
        Expr::IsFalse(e) => Node::Is(b(e, fields)?, false),
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let values = list
                .iter()
                .map(|e| match build(e, fields)? {
                    Node::Lit(v) => Ok(v),
                    Node::Neg(inner) => match *inner {
                        Node::Lit(Val::Num(x)) => Ok(Val::Num(-x)),
                        _ => Err(unsupported("an IN list of anything but literals")),
                    },
                    _ => Err(unsupported("an IN list of anything but literals")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let node = Node::In(b(expr, fields)?, values);
            if *negated {
                Node::Not(Box::new(node))
            } else {
                node
            }
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let e = b(expr, fields)?;
            let node = Node::And(
                Box::new(Node::Cmp(Cmp::Ge, e.clone(), b(low, fields)?)),
                Box::new(Node::Cmp(Cmp::Le, e, b(high, fields)?)),
            );
            if *negated {
                Node::Not(Box::new(node))
            } else {
                node
            }
        }
        Expr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char: None,
        } => {
            let Node::Lit(Val::Text(p)) = build(pattern, fields)? else {
                return Err(RuleError::new(
                    "LIKE needs a text pattern, e.g. '%@example.com'".into(),
                ));
            };
            let node = Node::Like(b(expr, fields)?, p.chars().collect());
            if *negated {
                Node::Not(Box::new(node))
            } else {
                node
            }
        }
        other => return Err(unsupported(&format!("`{other}`"))),
    })
}

fn field(parts: Vec<String>, fields: &mut Vec<Field>) -> Result<Node, RuleError> {
    let f = Field::resolve(&parts).map_err(|reason| RuleError {
        field: Some(parts.join(".")),
        reason,
    })?;
    fields.push(f.clone());
    Ok(Node::Field(f))
}

fn literal(v: &SqlValue) -> Result<Val<'static>, RuleError> {
    Ok(match v {
        SqlValue::Number(n, _) => Val::Num(
            n.parse()
                .map_err(|_| RuleError::new(format!("{n} is not a number")))?,
        ),
        SqlValue::SingleQuotedString(s) => Val::Text(s.clone().into()),
        SqlValue::Boolean(b) => Val::Bool(*b),
        SqlValue::Null => Val::Null,
        SqlValue::DoubleQuotedString(s) => {
            return Err(RuleError::new(format!(
                "\"{s}\" is a name in SQL; write text in single quotes: '{s}'"
            )));
        }
        other => return Err(unsupported(&format!("the literal {other}"))),
    })
}

fn unsupported(what: &str) -> RuleError {
    RuleError::new(format!(
        "{what} is not supported in a rule (use comparisons, AND, OR, NOT, IN, BETWEEN, LIKE, IS NULL and + - * /)"
    ))
}

/// A literal's type; `None` for NULL, which compares with anything.
fn literal_type(v: &Val) -> Option<Type> {
    match v {
        Val::Null => None,
        Val::Num(_) => Some(Type::Number),
        Val::Text(_) => Some(Type::Text),
        Val::Bool(_) => Some(Type::Bool),
        Val::Time(_) => Some(Type::Time),
    }
}

fn type_of(node: &Node) -> Result<Type, RuleError> {
    Ok(match node {
        Node::Lit(v) => literal_type(v).unwrap_or(Type::Any),
        Node::Field(f) => f.ty(),
        Node::Cmp(_, l, r) => {
            check_comparable(l, r)?;
            Type::Bool
        }
        Node::Arith(_, l, r) => {
            for side in [l, r] {
                let t = type_of(side)?;
                if !matches!(t, Type::Number | Type::Any) {
                    return Err(mismatch(side, "arithmetic needs numbers"));
                }
            }
            Type::Number
        }
        Node::Neg(e) => {
            if !matches!(type_of(e)?, Type::Number | Type::Any) {
                return Err(mismatch(e, "minus needs a number"));
            }
            Type::Number
        }
        Node::And(l, r) | Node::Or(l, r) => {
            for side in [l, r] {
                if !matches!(type_of(side)?, Type::Bool | Type::Any) {
                    return Err(mismatch(side, "AND and OR join conditions"));
                }
            }
            Type::Bool
        }
        Node::Not(e) => {
            if !matches!(type_of(e)?, Type::Bool | Type::Any) {
                return Err(mismatch(e, "NOT needs a condition"));
            }
            Type::Bool
        }
        Node::IsNull(e) => {
            type_of(e)?;
            Type::Bool
        }
        Node::Is(e, _) => {
            if !matches!(type_of(e)?, Type::Bool | Type::Any) {
                return Err(mismatch(e, "IS TRUE and IS FALSE need a condition"));
            }
            Type::Bool
        }
        Node::In(e, values) => {
            for v in values {
                check_comparable(e, &Node::Lit(v.clone()))?;
            }
            Type::Bool
        }
        Node::Like(e, _) => {
            if !matches!(type_of(e)?, Type::Text | Type::Any) {
                return Err(mismatch(e, "LIKE matches text"));
            }
            Type::Bool
        }
    })
}

/// Comparisons need operands of one type; a trait takes its type from the other side, and
/// text compared with a time field is read as a time when the rule is compiled.
fn check_comparable(l: &Node, r: &Node) -> Result<(), RuleError> {
    let (tl, tr) = (type_of(l)?, type_of(r)?);
    let null = |n: &Node| matches!(n, Node::Lit(Val::Null));
    if tl == tr || tl == Type::Any || tr == Type::Any || null(l) || null(r) {
        return Ok(());
    }
    let (field, other) = if matches!(l, Node::Field(_)) {
        (l, tr)
    } else {
        (r, tl)
    };
    Err(mismatch(
        field,
        &format!(
            "it is {}, compared here with {}",
            type_of(field)?.name(),
            other.name()
        ),
    ))
}

fn mismatch(node: &Node, reason: &str) -> RuleError {
    RuleError {
        field: match node {
            Node::Field(f) => Some(field_name(f)),
            _ => None,
        },
        reason: reason.to_owned(),
    }
}

fn field_name(f: &Field) -> String {
    match f {
        Field::UserId => "user_id".into(),
        Field::Computed(c) => format!("computed.{}", c.name),
        Field::EventCount(e) => format!("computed.events.\"{e}\""),
        Field::PageCategory(c) => format!("computed.page_categories.\"{c}\""),
        Field::Trait(path) => format!("traits.{}", path.join(".")),
    }
}

/// Text literals compared with a time field, read as times once, at compile time.
fn resolve_times(node: Node) -> Result<Node, RuleError> {
    // The name of a time field, for an error about what it is compared with.
    let time_field = |n: &Node| match n {
        Node::Field(Field::Computed(f)) if f.ty == Type::Time => Some(f.name),
        _ => None,
    };
    let as_time = |n: Node, field: &str| match n {
        Node::Lit(Val::Text(t)) => Ok(Node::Lit(Val::Time(parse_time(&t, field)?))),
        other => Ok(other),
    };
    Ok(match node {
        Node::Cmp(op, l, r) => {
            let (mut l, mut r) = (resolve_times(*l)?, resolve_times(*r)?);
            if let Some(field) = time_field(&l) {
                r = as_time(r, field)?;
            } else if let Some(field) = time_field(&r) {
                l = as_time(l, field)?;
            }
            Node::Cmp(op, Box::new(l), Box::new(r))
        }
        Node::And(l, r) => Node::And(Box::new(resolve_times(*l)?), Box::new(resolve_times(*r)?)),
        Node::Or(l, r) => Node::Or(Box::new(resolve_times(*l)?), Box::new(resolve_times(*r)?)),
        Node::Not(e) => Node::Not(Box::new(resolve_times(*e)?)),
        other => other,
    })
}

/// The text a rule compares the computed time field `field` with, as a time.
fn parse_time(text: &str, field: &str) -> Result<i64, RuleError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp_millis())
        .map_err(|_| RuleError {
            field: Some(format!("computed.{field}")),
            reason: format!(
                "is compared with '{text}', which is not a time; write RFC 3339 ('2026-11-01T00:00:00Z') or a date ('2026-11-01')"
            ),
        })
}

fn eval<'a>(node: &'a Node, p: &'a ProfileView) -> Val<'a> {
    match node {
        Node::Lit(v) => v.clone(),
        Node::Field(f) => f.read(p),
        Node::Cmp(op, l, r) => {
            let ord = eval(l, p).compare(&eval(r, p));
            from_truth(ord.map(|o| match op {
                Cmp::Eq => o == Ordering::Equal,
                Cmp::Ne => o != Ordering::Equal,
                Cmp::Lt => o == Ordering::Less,
                Cmp::Le => o != Ordering::Greater,
                Cmp::Gt => o == Ordering::Greater,
                Cmp::Ge => o != Ordering::Less,
            }))
        }
        Node::Arith(op, l, r) => match (eval(l, p), eval(r, p)) {
            (Val::Num(a), Val::Num(b)) => match op {
                Arith::Add => Val::Num(a + b),
                Arith::Sub => Val::Num(a - b),
                Arith::Mul => Val::Num(a * b),
                // Division by zero is unknown, as in SQL engines that do not raise.
                Arith::Div if b == 0.0 => Val::Null,
                Arith::Div => Val::Num(a / b),
            },
            _ => Val::Null,
        },
        Node::Neg(e) => match eval(e, p) {
            Val::Num(a) => Val::Num(-a),
            _ => Val::Null,
        },
        // Three-valued logic: false AND unknown is false, true OR unknown is true.
        Node::And(l, r) => match eval(l, p).truth() {
            Some(false) => Val::Bool(false),
            left => match (left, eval(r, p).truth()) {
                (_, Some(false)) => Val::Bool(false),
                (Some(true), Some(true)) => Val::Bool(true),
                _ => Val::Null,
            },
        },
        Node::Or(l, r) => match eval(l, p).truth() {
            Some(true) => Val::Bool(true),
            left => match (left, eval(r, p).truth()) {
                (_, Some(true)) => Val::Bool(true),
                (Some(false), Some(false)) => Val::Bool(false),
                _ => Val::Null,
            },
        },
        Node::Not(e) => from_truth(eval(e, p).truth().map(|b| !b)),
        Node::IsNull(e) => Val::Bool(eval(e, p) == Val::Null),
        Node::Is(e, want) => Val::Bool(eval(e, p).truth() == Some(*want)),
        // SQL: true if any item equals, else unknown if any comparison was, else false.
        Node::In(e, values) => {
            let v = eval(e, p);
            let mut unknown = false;
            for x in values {
                match v.compare(x) {
                    Some(Ordering::Equal) => return Val::Bool(true),
                    None => unknown = true,
                    Some(_) => {}
                }
            }
            if unknown { Val::Null } else { Val::Bool(false) }
        }
        Node::Like(e, pattern) => match eval(e, p) {
            Val::Text(t) => Val::Bool(like(&t, pattern)),
            _ => Val::Null,
        },
    }
}

/// SQL LIKE: `%` any run of characters, `_` any one character, anything else itself. The
/// usual wildcard match with one backtracking point, so time stays linear in the text times
/// the pattern, whatever the pattern (a customer's trait must not stall the processor).
fn like(text: &str, pattern: &[char]) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0, 0);
    // The last `%` seen, and the text position its run was last extended to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('%') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '_' || c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '%')
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use persona_core::profile::ComputedView;
    use serde_json::json;

    use super::*;

    fn profile() -> ProfileView<'static> {
        let day = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 12, 0, 0).unwrap();
        ProfileView {
            user_id: Some("u1".into()),
            aliases: Default::default(),
            anonymous_ids: Default::default(),
            traits: json!({"country": "DE", "age": 41, "vip": true, "address": {"city": "Köln"}, "email": "ann@example.com"})
                .as_object()
                .unwrap()
                .clone()
                .into(),
            computed: ComputedView {
                frequency: 4,
                monetary: 250.0,
                recency_days: Some(12),
                first_seen: Some(day(1)),
                events: std::borrow::Cow::Owned([("Order Completed".to_string(), 4)].into()),
                ..ComputedView::default()
            },
            as_of: day(20),
        }
    }

    fn check(sql: &str) -> bool {
        Rule::compile(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .matches(&profile())
    }

    #[test]
    fn the_issue_example_and_each_operator() {
        assert!(check(
            "computed.frequency >= 3 AND computed.monetary > 200 AND traits.country = 'DE' AND computed.recency_days <= 30"
        ));
        for (sql, want) in [
            ("computed.frequency = 4", true),
            ("computed.frequency <> 4 OR computed.monetary < 100", false),
            ("NOT computed.frequency > 4", true),
            ("traits.country IN ('FR', 'DE')", true),
            ("traits.country NOT IN ('FR', 'DE')", false),
            ("computed.monetary BETWEEN 200 AND 300", true),
            ("computed.monetary / computed.frequency > 60", true),
            ("-computed.monetary < -249", true),
            ("traits.email LIKE '%@example.com'", true),
            ("traits.address.city LIKE 'K_ln'", true),
            ("traits.vip IS TRUE AND traits.age >= 40", true),
            ("computed.events.\"Order Completed\" >= 4", true),
            ("computed.events.\"Cart Viewed\" = 0", true),
            (
                "computed.first_seen >= '2026-11-01' AND computed.first_seen < '2026-11-02T00:00:00Z'",
                true,
            ),
            ("user_id = 'u1'", true),
            ("computed.avg_order_value IS NULL", true),
            ("NOT (traits.missing IS TRUE)", true),
            ("traits.missing IS FALSE", false),
            ("computed.frequency IN (-1, 4)", true),
            ("traits.email LIKE 'ann@%.com'", true),
            ("traits.email LIKE '%@%@%'", false),
            ("traits.email LIKE 'ann%'", true),
            ("traits.email LIKE '%z%'", false),
            ("traits.address.city LIKE '%ö%'", true),
        ] {
            assert_eq!(check(sql), want, "{sql}");
        }
    }

    #[test]
    fn like_takes_linear_time_on_a_pattern_that_backtracks() {
        // Exponential for a naive matcher (about 10^10 steps); returns at once here.
        let pattern: Vec<char> = "%a%a%a%a%a%a%a%a%a%b".chars().collect();
        assert!(!like(&"a".repeat(60), &pattern));
        assert!(like(&format!("{}b", "a".repeat(60)), &pattern));
    }

    #[test]
    fn unknown_values_are_not_members() {
        // A missing trait is unknown: neither = nor <> holds, and NOT does not flip it.
        assert!(!check("traits.missing = 'x'"));
        assert!(!check("traits.missing <> 'x'"));
        assert!(!check("NOT (traits.missing = 'x')"));
        assert!(check("traits.missing IS NULL"));
        // Unknown OR true is true; unknown AND false is false.
        assert!(check("traits.missing = 'x' OR computed.frequency = 4"));
        assert!(!check("traits.missing = 'x' AND computed.frequency = 4"));
        // A trait holding a number compared with text is unknown, not an error.
        assert!(!check("traits.age = 'forty'"));
        // IN is unknown when nothing matched but a comparison was unknown.
        assert!(!check("traits.age NOT IN ('forty')"));
        assert!(!check("NOT (computed.frequency IN (1, NULL))"));
        // Division by zero is unknown.
        assert!(!check("computed.monetary / computed.email_opens > 0"));
    }

    #[test]
    fn errors_name_the_field_and_the_reason() {
        let err = |sql: &str| Rule::compile(sql).unwrap_err();
        let e = err("computed.frequncy > 3");
        assert_eq!(e.field.as_deref(), Some("computed.frequncy"));
        assert!(e.reason.contains("unknown field"), "{e}");
        let e = err("computed.monetary > 'lots'");
        assert_eq!(e.field.as_deref(), Some("computed.monetary"));
        assert!(
            e.reason.contains("a number") && e.reason.contains("text"),
            "{e}"
        );
        let e = err("computed.first_seen > 'yesterday'");
        assert!(e.reason.contains("not a time"), "{e}");
        let e = err("computed.last_seen BETWEEN '2026-01-01' AND 'bad'");
        assert_eq!(e.field.as_deref(), Some("computed.last_seen"), "{e}");
        assert!(e.reason.contains("'bad'"), "{e}");
        assert!(err("computed.frequency").reason.contains("not a condition"));
        assert!(
            err("computed.frequency >")
                .reason
                .contains("not a SQL expression")
        );
        assert!(
            err("computed.frequency > 1 extra")
                .reason
                .contains("not a SQL expression")
        );
        assert!(
            err("traits.country = \"DE\"")
                .reason
                .contains("single quotes")
        );
        assert!(err("(SELECT 1) = 1").reason.contains("not supported"));
        assert!(err("color.red = 1").reason.contains("unknown field"));
        assert!(err("").reason.contains("empty"));
    }

    #[test]
    fn rules_reading_time_relative_fields_say_so() {
        assert!(
            Rule::compile("computed.recency_days <= 30")
                .unwrap()
                .time_relative()
        );
        assert!(
            Rule::compile("computed.events_30d > 0")
                .unwrap()
                .time_relative()
        );
        assert!(
            !Rule::compile("computed.frequency > 0")
                .unwrap()
                .time_relative()
        );
    }
}
