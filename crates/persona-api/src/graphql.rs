//! `POST /graphql`: the read API as one GraphQL schema, so that a site or CRM gets a
//! customer's profile, segments, recent events and history, or a segment's members with
//! their profiles, in one request and with only the fields it names. Read-only: changes go
//! through the REST endpoints. The resolvers share the REST handlers' code, so both answer
//! alike; field names follow GraphQL's convention (`userId` for `user_id`).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Error, ErrorExtensions, Json as GqlJson, Object,
    Result, Schema, SimpleObject,
};
use axum::Json;
use axum::extract::State;
use persona_core::profile::Profile;
use persona_store::{ProfileId, SegmentDef};
use serde_json::Value;

use crate::body::{JsonBody, invalid};
use crate::profiles::{self, store_error};
use crate::segments::{DEFAULT_MEMBERS, MAX_MEMBERS, member_page};
use crate::{ApiError, ApiState, off_workers};

/// Nesting a query may reach (a segment's members' profiles' events is 5).
const MAX_DEPTH: usize = 12;
/// What a query may cost: each field counts once for every item the lists around it may
/// hold (a `limit`, or [`SEGMENTS_COUNTED`] for the list of segments). A profile with
/// 1,000 events and 1,000 history entries costs about 2,000; a page of 1,000 members with
/// a few fields of their profiles about 10,000.
const MAX_COMPLEXITY: usize = 20_000;
/// The longest query text taken: parsing and checking run on the async workers, about a
/// quarter of a second a megabyte.
const MAX_QUERY_BYTES: usize = 64 << 10;
/// What the list of every segment counts as, for the cost of a query.
const SEGMENTS_COUNTED: usize = 20;

type PersonaSchema = Schema<Query, EmptyMutation, EmptySubscription>;

static SCHEMA: LazyLock<PersonaSchema> = LazyLock::new(|| {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
});

/// The schema in GraphQL's schema language, for code generators and the docs.
pub fn sdl() -> String {
    SCHEMA.sdl()
}

pub(crate) async fn execute(
    State(state): State<ApiState>,
    JsonBody(request): JsonBody<async_graphql::Request>,
) -> Json<async_graphql::Response> {
    if request.query.len() > MAX_QUERY_BYTES {
        return Json(refusal(
            format!(
                "the query is {} bytes long; at most {MAX_QUERY_BYTES}",
                request.query.len()
            ),
            "too_large",
        ));
    }
    // A query that does not parse is left to the schema, which says why.
    if let Ok(doc) = async_graphql::parser::parse_query(&request.query) {
        let fields = spread_fields(&doc);
        if fields > MAX_COMPLEXITY {
            let message = format!(
                "the query names {fields} fields once its fragments are spread; at most {MAX_COMPLEXITY}"
            );
            return Json(refusal(message, "too_complex"));
        }
    }
    let mut response = SCHEMA.execute(request.data(state)).await;
    // The schema's own refusals carry no code; every error gets one.
    for error in &mut response.errors {
        let code = if error.message.contains("too complex") || error.message.contains("too deep") {
            "too_complex"
        } else {
            "invalid_query"
        };
        let ext = error.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", code);
        }
    }
    Json(response)
}

/// An answer refusing the whole query, with `code` in the error's extensions.
fn refusal(message: String, code: &str) -> async_graphql::Response {
    let mut error = async_graphql::ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", code);
    error.extensions = Some(extensions);
    async_graphql::Response::from_errors(vec![error])
}

/// How many fields a query names once every fragment is spread where it is used, counted
/// in time linear in the query (each fragment once). The schema's own checks spread a
/// fragment at each use, so a query spreading each of 30 fragments twice into the next
/// (1 KB) would keep a core busy for minutes before they refuse it.
fn spread_fields(doc: &ExecutableDocument) -> usize {
    struct Counter<'a> {
        doc: &'a ExecutableDocument,
        done: HashMap<&'a str, usize>,
        open: HashSet<&'a str>,
    }
    impl<'a> Counter<'a> {
        fn set(&mut self, set: &'a SelectionSet) -> usize {
            set.items.iter().fold(0usize, |n, item| {
                n.saturating_add(match &item.node {
                    Selection::Field(f) => {
                        1usize.saturating_add(self.set(&f.node.selection_set.node))
                    }
                    Selection::InlineFragment(i) => self.set(&i.node.selection_set.node),
                    Selection::FragmentSpread(s) => {
                        self.fragment(s.node.fragment_name.node.as_str())
                    }
                })
            })
        }

        fn fragment(&mut self, name: &'a str) -> usize {
            if let Some(&n) = self.done.get(name) {
                return n;
            }
            // A cycle: the schema refuses it; it adds nothing here.
            if !self.open.insert(name) {
                return 0;
            }
            let doc = self.doc;
            let n = doc
                .fragments
                .iter()
                .find(|(k, _)| k.as_str() == name)
                .map_or(0, |(_, f)| self.set(&f.node.selection_set.node));
            self.open.remove(name);
            self.done.insert(name, n);
            n
        }
    }
    let mut counter = Counter {
        doc,
        done: HashMap::new(),
        open: HashSet::new(),
    };
    doc.operations.iter().fold(0usize, |n, (_, op)| {
        n.saturating_add(counter.set(&op.node.selection_set.node))
    })
}

/// An API error as a GraphQL error, with the REST error code in `extensions.code`.
fn gql(e: ApiError) -> Error {
    let code = e.code;
    Error::new(e.message).extend_with(|_, ext| ext.set("code", code))
}

/// A `limit` argument: a whole number from 1 to `max`, or `default`.
fn limit(given: Option<usize>, default: usize, max: usize) -> Result<usize> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(gql(invalid(
            "limit",
            format!("must be a whole number from 1 to {max}, got {n}"),
        ))),
    }
}

pub(crate) struct Query;

#[Object]
impl Query {
    /// A customer's live profile by `user_id:X`, `anonymous_id:Y` or a bare user id; null
    /// when no profile has that id. `asOf` (RFC 3339) computes the time-relative values
    /// (recency, windows) at that instant instead of now.
    async fn profile(
        &self,
        ctx: &Context<'_>,
        key: String,
        as_of: Option<String>,
    ) -> Result<Option<ProfileNode>> {
        let state = ctx.data::<ApiState>()?;
        let as_of = profiles::as_of(as_of.as_deref(), "asOf").map_err(gql)?;
        Ok(profiles::find(state, &key)
            .map_err(gql)?
            .map(|(id, profile)| ProfileNode::new(state, id, &profile, as_of)))
    }

    /// Every rule segment, by id.
    #[graphql(complexity = "SEGMENTS_COUNTED * (1 + child_complexity)")]
    async fn segments(&self, ctx: &Context<'_>) -> Result<Vec<SegmentNode>> {
        let state = ctx.data::<ApiState>()?;
        let defs = state.store.segments().map_err(store_error).map_err(gql)?;
        Ok(defs.into_iter().map(SegmentNode).collect())
    }

    /// One rule segment; null when there is none with that id.
    async fn segment(&self, ctx: &Context<'_>, id: u64) -> Result<Option<SegmentNode>> {
        let state = ctx.data::<ApiState>()?;
        let defs = state.store.segments().map_err(store_error).map_err(gql)?;
        Ok(defs.into_iter().find(|d| d.id == id).map(SegmentNode))
    }
}

/// A profile, as `GET /v1/profiles/{key}` shows it.
pub(crate) struct ProfileNode {
    id: ProfileId,
    body: Value,
}

impl ProfileNode {
    fn new(
        state: &ApiState,
        id: ProfileId,
        profile: &Profile,
        as_of: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let body = serde_json::to_value(profiles::body(state, profile, as_of))
            .expect("a profile serialises");
        ProfileNode { id, body }
    }

    fn field(&self, name: &str) -> Value {
        self.body.get(name).cloned().unwrap_or(Value::Null)
    }

    fn strings(&self, name: &str) -> Vec<String> {
        serde_json::from_value(self.field(name)).unwrap_or_default()
    }
}

/// The figures every profile has, typed; `all` holds every computed field.
#[derive(SimpleObject)]
pub(crate) struct Computed {
    event_count: u64,
    first_seen: Option<String>,
    last_seen: Option<String>,
    recency_days: Option<i64>,
    frequency: u64,
    monetary: f64,
    all: GqlJson<Value>,
}

#[derive(SimpleObject)]
pub(crate) struct SegmentRef {
    id: u64,
    name: String,
}

#[Object(name = "Profile")]
impl ProfileNode {
    /// The store's number for the profile.
    async fn profile_id(&self) -> u64 {
        self.id
    }

    async fn user_id(&self) -> Option<String> {
        self.field("user_id").as_str().map(str::to_owned)
    }

    async fn aliases(&self) -> Vec<String> {
        self.strings("aliases")
    }

    async fn anonymous_ids(&self) -> Vec<String> {
        self.strings("anonymous_ids")
    }

    async fn traits(&self) -> GqlJson<Value> {
        GqlJson(self.field("traits"))
    }

    async fn computed(&self) -> Computed {
        let all = self.field("computed");
        let text = |k: &str| all[k].as_str().map(str::to_owned);
        Computed {
            event_count: all["event_count"].as_u64().unwrap_or(0),
            first_seen: text("first_seen"),
            last_seen: text("last_seen"),
            recency_days: all["recency_days"].as_i64(),
            frequency: all["frequency"].as_u64().unwrap_or(0),
            monetary: all["monetary"].as_f64().unwrap_or(0.0),
            all: GqlJson(all),
        }
    }

    /// RFM scores against the edges in force, for a customer who purchased.
    async fn rfm(&self) -> Option<GqlJson<Value>> {
        Some(self.field("rfm"))
            .filter(|v| !v.is_null())
            .map(GqlJson)
    }

    /// The rule segments the customer is in.
    async fn segments(&self) -> Vec<SegmentRef> {
        serde_json::from_value::<Vec<Value>>(self.field("segments"))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| {
                Some(SegmentRef {
                    id: s["id"].as_u64()?,
                    name: s["name"].as_str()?.to_owned(),
                })
            })
            .collect()
    }

    /// The customer's cluster in each active model.
    async fn clusters(&self) -> Vec<GqlJson<Value>> {
        serde_json::from_value::<Vec<Value>>(self.field("clusters"))
            .unwrap_or_default()
            .into_iter()
            .map(GqlJson)
            .collect()
    }

    /// The instant the time-relative values are computed against.
    async fn as_of(&self) -> Option<String> {
        self.field("as_of").as_str().map(str::to_owned)
    }

    /// True when the processor is failing or far behind, so recent events may be missing.
    async fn stale(&self) -> bool {
        self.field("stale").as_bool().unwrap_or(false)
    }

    /// The most recent events as logged, newest first (1 to 1000, default 50).
    // Each item a JSON value of its own: the limit is the cost.
    #[graphql(complexity = "limit.unwrap_or(50)")]
    async fn events(&self, ctx: &Context<'_>, limit: Option<usize>) -> Result<Vec<GqlJson<Value>>> {
        let n = self::limit(limit, 50, 1000)?;
        let (state, id) = (ctx.data::<ApiState>()?.clone(), self.id);
        let events = off_workers(move || profiles::recent_events(&state, id, n))
            .await
            .map_err(gql)?;
        Ok(events.into_iter().map(GqlJson).collect())
    }

    /// Segment entries and exits, newest first (1 to 1000, default 50).
    // Each item a JSON value of its own: the limit is the cost.
    #[graphql(complexity = "limit.unwrap_or(50)")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        limit: Option<usize>,
    ) -> Result<Vec<GqlJson<Value>>> {
        let n = self::limit(limit, 50, 1000)?;
        let (state, id) = (ctx.data::<ApiState>()?.clone(), self.id);
        let history = off_workers(move || profiles::history_of(&state, id, n))
            .await
            .map_err(gql)?;
        Ok(history.into_iter().map(GqlJson).collect())
    }
}

/// A rule segment.
pub(crate) struct SegmentNode(SegmentDef);

/// A page of a segment's members.
#[derive(SimpleObject)]
pub(crate) struct MemberPage {
    members: Vec<Member>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// One member of a segment.
pub(crate) struct Member {
    profile_id: ProfileId,
    user_id: Option<String>,
    anonymous_id: Option<String>,
}

#[Object]
impl Member {
    async fn profile_id(&self) -> u64 {
        self.profile_id
    }

    async fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// For a customer who never signed up.
    async fn anonymous_id(&self) -> Option<&str> {
        self.anonymous_id.as_deref()
    }

    /// The member's whole profile, as of now.
    async fn profile(&self, ctx: &Context<'_>) -> Result<Option<ProfileNode>> {
        let (state, id) = (ctx.data::<ApiState>()?.clone(), self.profile_id);
        // A page of members reads as many profiles: off the async workers.
        off_workers(move || {
            let profile = state.store.get(id).map_err(store_error)?;
            Ok(profile.map(|p| ProfileNode::new(&state, id, &p, chrono::Utc::now())))
        })
        .await
        .map_err(gql)
    }
}

#[Object(name = "Segment")]
impl SegmentNode {
    async fn id(&self) -> u64 {
        self.0.id
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// The rule as written: a SQL boolean expression over profile fields.
    async fn rule(&self) -> &str {
        &self.0.rule
    }

    /// Raised on every change of the rule.
    async fn version(&self) -> u64 {
        self.0.version
    }

    /// How many customers are in it.
    async fn member_count(&self, ctx: &Context<'_>) -> Result<u64> {
        let state = ctx.data::<ApiState>()?;
        state
            .store
            .member_count(self.0.id)
            .map_err(store_error)
            .map_err(gql)
    }

    /// A page of members in profile order (1 to 1000, default 100), after `cursor`.
    #[graphql(complexity = "limit.unwrap_or(DEFAULT_MEMBERS) * (1 + child_complexity)")]
    async fn members(
        &self,
        ctx: &Context<'_>,
        limit: Option<usize>,
        cursor: Option<String>,
    ) -> Result<MemberPage> {
        let n = self::limit(limit, DEFAULT_MEMBERS, MAX_MEMBERS)?;
        let after = match cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(c.parse::<u64>().map_err(|_| {
                gql(invalid(
                    "cursor",
                    format!("must be a nextCursor this field returned, got {c:?}"),
                ))
            })?),
        };
        let (store, id) = (ctx.data::<ApiState>()?.store.clone(), self.0.id);
        let page = off_workers(move || member_page(&*store, id, after, n))
            .await
            .map_err(gql)?;
        let members = page["members"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|m| Member {
                        profile_id: m["profile_id"].as_u64().unwrap_or(0),
                        user_id: m["user_id"].as_str().map(str::to_owned),
                        anonymous_id: m["anonymous_id"].as_str().map(str::to_owned),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(MemberPage {
            members,
            next_cursor: page["next_cursor"].as_str().map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/schema.graphql` is the schema as served; `PERSONA_BLESS=1` rewrites it.
    #[test]
    fn fragments_are_counted_once_each_however_often_they_are_spread() {
        let mut query = String::from("query { profile(key: \"u\") { ...F0 } }\n");
        for i in 0..40 {
            query.push_str(&format!(
                "fragment F{i} on Profile {{ ...F{} ...F{} }}\n",
                i + 1,
                i + 1
            ));
        }
        query.push_str("fragment F40 on Profile { userId }\n");
        let doc = async_graphql::parser::parse_query(&query).unwrap();
        // Counted without spreading 2^40 times (which would never end).
        assert_eq!(spread_fields(&doc), 1 + (1usize << 40));
        let cycle = "query { profile(key: \"u\") { ...A } } fragment A on Profile { userId ...A }";
        assert_eq!(
            spread_fields(&async_graphql::parser::parse_query(cycle).unwrap()),
            2
        );
    }

    #[test]
    fn the_documented_schema_is_the_served_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schema.graphql");
        let served = sdl();
        if std::env::var_os("PERSONA_BLESS").is_some() {
            std::fs::write(path, &served).unwrap();
        }
        let documented = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            documented == served,
            "docs/schema.graphql differs from the served schema; run this test with PERSONA_BLESS=1 to rewrite it"
        );
        assert!(served.contains("profile(key: String!, asOf: String): Profile"));
    }
}
