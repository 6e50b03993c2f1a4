//! `GET /openapi.json`: persona's HTTP interface as an OpenAPI 3.1 document, for client
//! generators, API explorers and whoever reads it. Built from the same list of ingestion
//! paths the router is built from; a test calls every operation it names and checks that
//! every route in the routers' source is named.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use persona_core::MessageType;
use serde_json::{Map, Value, json};

static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_string());

/// The route serving the document, without authentication (it holds no data).
pub fn router() -> Router {
    Router::new().route(
        "/openapi.json",
        get(|| async {
            (
                [(header::CONTENT_TYPE, "application/json")],
                DOCUMENT.as_str(),
            )
        }),
    )
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_body(schema: Value) -> Value {
    json!({ "content": { "application/json": { "schema": schema } } })
}

fn answer(description: &str, body: Option<Value>) -> Value {
    let mut a = json!({ "description": description });
    if let Some(s) = body {
        a["content"] = json!({ "application/json": { "schema": s } });
    }
    a
}

/// An error answer in the API's one error shape.
fn error(description: &str) -> Value {
    answer(description, Some(schema("Error")))
}

fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string" } })
}

fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description,
            "schema": schema })
}

/// One operation; `admin` puts it behind the admin token (and adds the 401).
struct Op {
    tag: &'static str,
    summary: &'static str,
    admin: bool,
    params: Vec<Value>,
    body: Option<Value>,
    answers: Vec<(u16, Value)>,
}

impl Op {
    fn new(tag: &'static str, summary: &'static str) -> Op {
        Op {
            tag,
            summary,
            admin: true,
            params: Vec::new(),
            body: None,
            answers: Vec::new(),
        }
    }

    /// An operation that needs no admin token.
    fn public(tag: &'static str, summary: &'static str) -> Op {
        Op {
            admin: false,
            ..Op::new(tag, summary)
        }
    }

    fn param(mut self, p: Value) -> Op {
        self.params.push(p);
        self
    }

    fn body(mut self, schema: Value) -> Op {
        self.body = Some(json_body(schema));
        self
    }

    fn answer(mut self, status: u16, a: Value) -> Op {
        self.answers.push((status, a));
        self
    }

    fn value(self) -> Value {
        let mut responses = Map::new();
        for (status, a) in self.answers {
            responses.insert(status.to_string(), a);
        }
        let mut op = json!({ "tags": [self.tag], "summary": self.summary });
        if self.admin {
            responses.insert(
                "401".into(),
                error("Missing or wrong admin token (`Authorization: Bearer …`)"),
            );
            op["security"] = json!([{ "adminToken": [] }]);
        }
        if !self.params.is_empty() {
            op["parameters"] = Value::Array(self.params);
        }
        if let Some(body) = self.body {
            op["requestBody"] = body;
            op["requestBody"]["required"] = true.into();
        }
        op["responses"] = Value::Object(responses);
        op
    }
}

fn add(paths: &mut Map<String, Value>, path: &str, method: &str, op: Op) {
    let item = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
    item[method] = op.value();
}

/// The write key: Basic auth's user name, or `writeKey` in the body or the query.
fn write_key() -> Value {
    json!([{ "writeKey": [] }, { "writeKeyInQuery": [] }])
}

fn ingestion(paths: &mut Map<String, Value>) {
    for (path, kind) in persona_collector::ingest_routes() {
        let (summary, body) = match kind {
            Some(kind) => (
                match kind {
                    MessageType::Track => "Record an action (Segment `track`)",
                    MessageType::Identify => "Tie a user to their traits (Segment `identify`)",
                    MessageType::Page => "Record a page view (Segment `page`)",
                    MessageType::Screen => "Record an app screen view (Segment `screen`)",
                    MessageType::Group => "Tie a user to a group (Segment `group`)",
                    MessageType::Alias => "Merge two user identities (Segment `alias`)",
                },
                schema("Message"),
            ),
            None => ("Send several messages at once", schema("Batch")),
        };
        let op = Op::public("ingestion", summary)
            .body(body)
            .answer(
                200,
                answer(
                    "On disk (`fdatasync`) before this answer. A batch with some invalid messages stores the valid ones and names the others by index (`accepted`, `rejected`, `error`)",
                    Some(schema("Success")),
                ),
            )
            .answer(400, error("Invalid: every problem is named by `index` and `field`"))
            .answer(401, error("Missing or unknown write key"))
            .answer(408, error("The body took over 30 s to arrive"))
            .answer(413, error("Over 32 KB a message or 500 KB a request"))
            .answer(415, error("A `Content-Encoding` other than gzip or identity"))
            .answer(503, error("Overloaded, starting, stopping, or the log cannot write: retry after `Retry-After`"));
        let mut op = op.value();
        op["security"] = write_key();
        paths.insert(path, json!({ "post": op }));
    }
}

fn operations(paths: &mut Map<String, Value>) {
    let open = |summary, description| {
        Op::public("operations", summary).answer(200, answer(description, None))
    };
    let health = open("Liveness", "The process answers (also while starting)");
    add(paths, "/healthz", "get", health);
    let ready = open(
        "Readiness, with the log's and the processor's state",
        "Ready",
    )
    .answer(503, answer("Not ready: `problems` says why", None));
    add(paths, "/readyz", "get", ready);
    let metrics = open("Prometheus metrics", "Text exposition format");
    add(paths, "/metrics", "get", metrics);
    add(
        paths,
        "/openapi.json",
        "get",
        open("This document", "OpenAPI 3.1"),
    );
    for (path, what) in [
        (
            "/",
            "The dashboard: health, throughput, segments, models, webhooks",
        ),
        ("/dashboard.js", "The dashboard's script"),
        ("/dashboard.css", "The dashboard's style"),
    ] {
        add(paths, path, "get", open(what, "The file"));
    }
    let settings = |summary| {
        Op::public("ingestion", summary).answer(
            200,
            answer("Settings naming persona as the only destination", None),
        )
    };
    let analytics_js = settings("analytics.js settings for a write key")
        .param(path_param("write_key", "A write key"))
        .answer(401, error("An unknown write key"));
    add(
        paths,
        "/v1/projects/{write_key}/settings",
        "get",
        analytics_js,
    );
    for path in ["/sourceConfig", "/sourceConfig/"] {
        let rudder = settings("RudderStack JavaScript SDK source configuration")
            .answer(401, error("Missing or unknown write key"));
        add(paths, path, "get", rudder);
        paths[path]["get"]["security"] = write_key();
    }
}

fn profiles(paths: &mut Map<String, Value>) {
    let key = || path_param("key", "`user_id:X`, `anonymous_id:Y`, or a bare user id");
    let limit = |max: u32| {
        query_param(
            "limit",
            "How many, newest first",
            json!({ "type": "integer", "minimum": 1, "maximum": max }),
        )
    };
    add(
        paths,
        "/v1/profiles/{key}",
        "get",
        Op::new("profiles", "A customer's live profile")
            .param(key())
            .param(query_param(
                "as_of",
                "Compute time-relative values (recency, windows) at this instant",
                json!({ "type": "string", "format": "date-time" }),
            ))
            .answer(200, answer("The profile", Some(schema("Profile"))))
            .answer(400, error("A bad `as_of` or key"))
            .answer(404, error("No profile for that key")),
    );
    add(
        paths,
        "/v1/profiles/{key}/events",
        "get",
        Op::new("profiles", "A customer's recent events, as stored")
            .param(key())
            .param(limit(1000))
            .answer(200, answer("`{\"events\": [message, ...]}`", None))
            .answer(400, error("A bad `limit`"))
            .answer(404, error("No profile for that key")),
    );
    add(
        paths,
        "/v1/profiles/{key}/history",
        "get",
        Op::new("profiles", "A customer's segment entries and exits")
            .param(key())
            .param(limit(1000))
            .answer(
                200,
                answer(
                    "`{\"history\": [event, ...]}`, newest first",
                    Some(json!({ "type": "object", "properties": { "history": {
                        "type": "array", "items": schema("MembershipEvent") } } })),
                ),
            )
            .answer(400, error("A bad `limit`"))
            .answer(404, error("No profile for that key")),
    );
}

fn segments(paths: &mut Map<String, Value>) {
    let id = || path_param("id", "The segment's id");
    let one = || answer("The segment", Some(schema("Segment")));
    add(
        paths,
        "/v1/segments",
        "get",
        Op::new("segments", "Every rule segment").answer(
            200,
            answer(
                "`{\"segments\": [...]}`",
                Some(json!({ "type": "object", "properties": {
                    "segments": { "type": "array", "items": schema("Segment") } } })),
            ),
        ),
    );
    add(
        paths,
        "/v1/segments",
        "post",
        Op::new(
            "segments",
            "Create a rule segment (back-filled over every profile)",
        )
        .body(schema("SegmentRequest"))
        .answer(201, one())
        .answer(400, error("A bad name or rule, named"))
        .answer(409, error("A segment of that name exists")),
    );
    add(
        paths,
        "/v1/segments/{id}",
        "get",
        Op::new("segments", "One segment")
            .param(id())
            .answer(200, one())
            .answer(404, error("No such segment")),
    );
    add(
        paths,
        "/v1/segments/{id}",
        "put",
        Op::new("segments", "Rename a segment or change its rule")
            .param(id())
            .body(schema("SegmentRequest"))
            .answer(200, one())
            .answer(400, error("A bad name or rule, named"))
            .answer(404, error("No such segment"))
            .answer(409, error("A segment of that name exists")),
    );
    add(
        paths,
        "/v1/segments/{id}",
        "delete",
        Op::new("segments", "Delete a segment and its membership")
            .param(id())
            .answer(204, answer("Deleted", None))
            .answer(404, error("No such segment")),
    );
    add(
        paths,
        "/v1/segments/{id}/members",
        "get",
        Op::new(
            "segments",
            "A page of a segment's members, in profile order",
        )
        .param(id())
        .param(query_param(
            "limit",
            "Page size",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 100 }),
        ))
        .param(query_param(
            "cursor",
            "The `next_cursor` of the previous page",
            json!({ "type": "string" }),
        ))
        .answer(200, answer("A page", Some(schema("MembersPage"))))
        .answer(400, error("A bad `limit` or `cursor`"))
        .answer(404, error("No such segment")),
    );
}

fn models_and_rfm(paths: &mut Map<String, Value>) {
    let id = || path_param("id", "The model's id");
    let model = || answer("The model", Some(json!({ "type": "object" })));
    add(
        paths,
        "/v1/rfm",
        "get",
        Op::new("models", "The RFM quintile edges in force")
            .answer(200, answer("The fit", Some(json!({ "type": "object" }))))
            .answer(404, error("Not fitted yet")),
    );
    add(
        paths,
        "/v1/rfm",
        "post",
        Op::new(
            "models",
            "Fit the RFM edges now (body optional: `{\"as_of\": …}`)",
        )
        .answer(
            200,
            answer("The new fit", Some(json!({ "type": "object" }))),
        )
        .answer(400, error("A bad `as_of`"))
        .answer(409, error("No customer has purchased yet")),
    );
    add(
        paths,
        "/v1/models",
        "get",
        Op::new("models", "Every cluster model").answer(200, answer("`{\"models\": [...]}`", None)),
    );
    add(
        paths,
        "/v1/models",
        "post",
        Op::new(
            "models",
            "Train a cluster model on the profiles (in the background)",
        )
        .body(
            json!({ "type": "object", "required": ["name", "features"], "properties": {
                "name": { "type": "string" },
                "features": { "type": "array", "items": { "type": "string" } },
                "algorithm": { "enum": ["kmeans", "minibatch-kmeans", "hierarchical"] },
                "k": { "oneOf": [{ "type": "integer" }, { "const": "auto" }] },
                "k_max": { "type": "integer" },
                "linkage": { "enum": ["ward", "complete", "average", "single"] },
                "scale": { "enum": ["minmax", "zscore", "none"] },
                "seed": { "type": "integer" },
                "activate": { "type": "boolean", "default": true } } }),
        )
        .answer(202, model())
        .answer(400, error("A bad setting, named"))
        .answer(409, error("A model is training")),
    );
    for (path, summary) in [
        (
            "/v1/models/{id}",
            "One model: status, progress, metrics, clusters",
        ),
        ("/v1/models/{id}/curves", "A model's quality curves over k"),
    ] {
        add(
            paths,
            path,
            "get",
            Op::new("models", summary)
                .param(id())
                .answer(200, model())
                .answer(404, error("No such model")),
        );
    }
    add(
        paths,
        "/v1/models/{id}/activate",
        "post",
        Op::new("models", "Make a model the active one of its name")
            .param(id())
            .answer(200, model())
            .answer(404, error("No such model"))
            .answer(409, error("The model is not ready")),
    );
}

fn webhooks(paths: &mut Map<String, Value>) {
    let id = || path_param("id", "The webhook's id");
    let one = || answer("The webhook", Some(schema("Webhook")));
    add(
        paths,
        "/v1/webhooks",
        "get",
        Op::new(
            "webhooks",
            "Every webhook, with how its deliveries are going",
        )
        .answer(
            200,
            answer(
                "`{\"webhooks\": [...]}`",
                Some(json!({ "type": "object", "properties": {
                    "webhooks": { "type": "array", "items": schema("Webhook") } } })),
            ),
        ),
    );
    add(
        paths,
        "/v1/webhooks",
        "post",
        Op::new(
            "webhooks",
            "Subscribe a URL to segment entries and exits from now on",
        )
        .body(schema("WebhookRequest"))
        .answer(
            201,
            answer(
                "The webhook, with its `secret` (shown in this answer only)",
                Some(schema("Webhook")),
            ),
        )
        .answer(400, error("A bad field, named")),
    );
    add(
        paths,
        "/v1/webhooks/{id}",
        "get",
        Op::new("webhooks", "One webhook")
            .param(id())
            .answer(200, one())
            .answer(404, error("No such webhook")),
    );
    add(
        paths,
        "/v1/webhooks/{id}",
        "put",
        Op::new(
            "webhooks",
            "Change a webhook, or turn it off or on (`active`)",
        )
        .param(id())
        .body(schema("WebhookRequest"))
        .answer(200, one())
        .answer(400, error("A bad field, named"))
        .answer(404, error("No such webhook")),
    );
    add(
        paths,
        "/v1/webhooks/{id}",
        "delete",
        Op::new("webhooks", "Delete a webhook")
            .param(id())
            .answer(204, answer("Deleted", None))
            .answer(404, error("No such webhook")),
    );
    add(
        paths,
        "/v1/webhooks/{id}/ping",
        "post",
        Op::new(
            "webhooks",
            "Send a signed `ping` event and report the receiver's answer",
        )
        .param(id())
        .answer(
            200,
            answer(
                "How the receiver answered",
                Some(json!({ "type": "object", "properties": {
                        "delivered": { "type": "boolean" },
                        "status": { "type": ["integer", "null"] },
                        "duration_ms": { "type": "number" },
                        "error": { "type": ["string", "null"] } } })),
            ),
        )
        .answer(404, error("No such webhook")),
    );
}

fn graphql(paths: &mut Map<String, Value>) {
    add(
        paths,
        "/graphql",
        "post",
        Op::new(
            "profiles",
            "Read profiles, segments and members with GraphQL (schema: docs/schema.graphql)",
        )
        .body(
            json!({ "type": "object", "required": ["query"], "properties": {
            "query": { "type": "string" },
            "variables": { "type": ["object", "null"] },
            "operationName": { "type": ["string", "null"] } } }),
        )
        .answer(
            200,
            answer(
                "`{\"data\": ..., \"errors\": [...]}` as GraphQL answers",
                Some(json!({ "type": "object" })),
            ),
        )
        .answer(400, error("The body is not a GraphQL request")),
    );
}

fn sql(paths: &mut Map<String, Value>) {
    add(
        paths,
        "/v1/sql",
        "post",
        Op::new(
            "warehouse",
            "One read-only SQL statement over `events` (the Parquet lake, partitioned by `date` and `hour`), `profiles`, `segments` and `segment_members`",
        )
        .body(json!({ "type": "object", "required": ["query"], "additionalProperties": false,
            "properties": {
                "query": { "type": "string", "maxLength": 65536,
                           "examples": ["SELECT event, count(*) FROM events WHERE date = '2024-05-01' GROUP BY event"] },
                "limit": { "type": "integer", "minimum": 1, "maximum": persona_api::SQL_MAX_ROWS,
                           "default": persona_api::SQL_DEFAULT_ROWS } } }))
        .answer(
            200,
            answer(
                "The columns with their Arrow types, and the rows as arrays in column order",
                Some(json!({ "type": "object",
                    "required": ["columns", "rows", "row_count", "truncated", "elapsed_ms"],
                    "properties": {
                        "columns": { "type": "array", "items": { "type": "object", "properties": {
                            "name": { "type": "string" }, "type": { "type": "string" } } } },
                        "rows": { "type": "array", "items": { "type": "array" } },
                        "row_count": { "type": "integer" },
                        "truncated": { "type": "boolean", "description": "More rows than `limit` were found" },
                        "elapsed_ms": { "type": "number" } } })),
            ),
        )
        .answer(400, error("The statement is invalid (`invalid_sql`), would change something (`read_only`), or needs more memory than allowed (`too_expensive`)"))
        .answer(408, error("The query ran past `sql.timeout_seconds`"))
        .answer(413, error("The statement is longer than 64 KiB"))
        .answer(429, error("`sql.concurrent_queries` queries are running; retry after `Retry-After`")),
    );
}

fn jobs(paths: &mut Map<String, Value>) {
    let time_or_null = json!({ "type": ["string", "null"], "format": "date-time" });
    let run = json!({ "type": "object", "properties": {
        "job": { "type": "string" },
        "trigger": { "enum": ["schedule", "request"] },
        "started_at": { "type": "string", "format": "date-time" },
        "finished_at": { "type": "string", "format": "date-time" },
        "duration_ms": { "type": "number" },
        "outcome": { "enum": ["succeeded", "failed"] },
        "result": { "type": "object", "description": "What the job did (compact-lake: files merged and written, bytes, rows; snapshot-profiles: date, profiles, bytes, path)" },
        "error": { "type": "string" } } });
    add(
        paths,
        "/v1/jobs",
        "get",
        Op::new(
            "jobs",
            "The scheduled jobs (compact-lake, snapshot-profiles): schedule, next run, last run",
        )
        .answer(
            200,
            answer(
                "Every job",
                Some(json!({ "type": "object", "properties": { "jobs": { "type": "array",
                    "items": { "type": "object", "properties": {
                        "name": { "type": "string" }, "description": { "type": "string" },
                        "schedule": { "type": ["string", "null"],
                                      "description": "A five-field cron expression in UTC; null when the job runs only on request" },
                        "next_run": time_or_null, "running": { "type": "boolean" },
                        "runs": { "type": "integer" }, "failures": { "type": "integer" },
                        "last_run": { "oneOf": [run.clone(), { "type": "null" }] } } } } } })),
            ),
        ),
    );
    add(
        paths,
        "/v1/jobs/{name}/run",
        "post",
        Op::new("jobs", "Run a job now; answers once it has finished")
            .param(path_param(
                "name",
                "The job: compact-lake or snapshot-profiles",
            ))
            .answer(200, answer("The job succeeded: its run", Some(run)))
            .answer(404, error("No such job; the message lists the jobs"))
            .answer(409, error("The job is running already (`already_running`)"))
            .answer(
                500,
                error("The job failed (`job_failed`); the message says why"),
            ),
    );
}

fn schemas() -> Value {
    let string = json!({ "type": "string" });
    let object = json!({ "type": "object" });
    let time = json!({ "type": "string", "format": "date-time" });
    let time_or_null = json!({ "type": ["string", "null"], "format": "date-time" });
    let mut all = Map::new();
    all.insert("Error".into(), json!({ "type": "object", "required": ["error"], "properties": { "error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": string, "message": string,
                "details": { "type": "array", "items": { "type": "object", "properties": {
                    "index": { "type": "integer" }, "field": string, "reason": string } } } } } } }));
    all.insert(
        "Success".into(),
        json!({ "type": "object", "required": ["success"], "properties": {
            "success": { "const": true },
            "accepted": { "type": "integer" }, "rejected": { "type": "integer" },
            "error": { "$ref": "#/components/schemas/Error/properties/error" } } }),
    );
    all.insert("Message".into(), json!({ "type": "object", "additionalProperties": true,
            "description": "A Segment-spec message; `userId` or `anonymousId` is required",
            "properties": {
                "type": { "enum": ["track", "identify", "page", "screen", "group", "alias"] },
                "userId": { "type": ["string", "number"] }, "anonymousId": { "type": ["string", "number"] },
                "event": string, "name": string, "groupId": { "type": ["string", "number"] },
                "previousId": { "type": ["string", "number"] },
                "properties": object, "traits": object, "context": object, "integrations": object,
                "timestamp": time, "originalTimestamp": time, "sentAt": time,
                "messageId": string, "writeKey": string } }));
    all.insert(
        "Batch".into(),
        json!({ "type": "object", "required": ["batch"], "properties": {
            "batch": { "type": "array", "items": { "$ref": "#/components/schemas/Message" } },
            "context": object, "integrations": object, "sentAt": time, "writeKey": string } }),
    );
    all.insert(
        "Profile".into(),
        json!({ "type": "object", "properties": {
            "user_id": { "type": ["string", "null"] },
            "aliases": { "type": "array", "items": string },
            "anonymous_ids": { "type": "array", "items": string },
            "traits": object,
            "computed": { "type": "object", "properties": {
                "event_count": { "type": "integer" }, "first_seen": time, "last_seen": time,
                "recency_days": { "type": ["integer", "null"] },
                "frequency": { "type": "integer" }, "monetary": { "type": "number" } },
                "additionalProperties": true },
            "rfm": { "type": ["object", "null"] },
            "segments": { "type": "array", "items": { "type": "object", "properties": {
                "id": { "type": "integer" }, "name": string } } },
            "cluster": { "type": ["object", "null"] },
            "clusters": { "type": "array", "items": object },
            "as_of": time, "stale": { "type": "boolean" } } }),
    );
    all.insert("SegmentRequest".into(), json!({ "type": "object", "properties": {
            "name": string,
            "rule": { "type": "string", "description": "A SQL boolean expression over profile fields, e.g. `computed.frequency >= 3 AND traits.country = 'DE'`" } } }));
    all.insert("Segment".into(), json!({ "type": "object", "properties": {
            "id": { "type": "integer" }, "name": string, "rule": string, "version": { "type": "integer" },
            "created_at": time, "updated_at": time, "time_relative": { "type": "boolean" },
            "members": { "type": "integer" }, "backfill": object,
            "warnings": { "type": "array", "items": string } } }));
    all.insert(
        "MembersPage".into(),
        json!({ "type": "object", "properties": {
            "members": { "type": "array", "items": { "type": "object", "properties": {
                "user_id": { "type": ["string", "null"] }, "anonymous_id": string,
                "profile_id": { "type": "integer" } } } },
            "next_cursor": { "type": ["string", "null"] } } }),
    );
    all.insert(
        "MembershipEvent".into(),
        json!({ "type": "object", "properties": {
            "event": { "enum": ["segment.entered", "segment.exited"] },
            "kind": { "enum": ["rule", "cluster"] },
            "profile_id": { "type": "integer" }, "user_id": { "type": ["string", "null"] },
            "anonymous_id": string,
            "segment_id": { "type": "integer" }, "segment": string,
            "model_id": { "type": "integer" }, "model": string,
            "model_version": { "type": "integer" }, "cluster": { "type": "integer" },
            "at": time, "reason": { "enum": ["event", "backfill", "sweep", "merged", "deleted"] } } }),
    );
    all.insert("Delivery".into(), json!({ "allOf": [
            { "type": "object", "properties": {
                "id": { "type": "string", "description": "The delivery id, as in `X-Persona-Delivery`" },
                "webhook_id": { "type": "integer" },
                "sequence": { "type": "integer", "description": "The event's place in the outbox, rising" } } },
            { "$ref": "#/components/schemas/MembershipEvent" } ] }));
    all.insert("WebhookRequest".into(), json!({ "type": "object", "additionalProperties": false, "properties": {
            "url": { "type": "string", "format": "uri", "description": "http or https" },
            "events": { "type": "array", "minItems": 1, "items": { "enum": ["segment.entered", "segment.exited"] } },
            "segments": { "type": "array", "items": { "type": "integer" }, "description": "Only these rule segments' events; empty or left out for every segment and cluster" },
            "secret": { "type": "string", "minLength": 8, "maxLength": 256, "description": "Generated when left out" },
            "active": { "type": "boolean" } } }));
    all.insert("Webhook".into(), json!({ "type": "object", "properties": {
            "id": { "type": "integer" }, "url": string,
            "events": { "type": "array", "items": string },
            "segments": { "type": "array", "items": { "type": "integer" } },
            "active": { "type": "boolean" },
            "disabled_reason": { "type": ["string", "null"] },
            "created_at": time, "updated_at": time,
            "secret": { "type": "string", "description": "Only in the answer that created the webhook" },
            "delivery": { "type": "object", "properties": {
                "state": { "enum": ["delivering", "idle", "retrying", "disabled"] },
                "cursor": { "type": "integer" }, "behind": { "type": "integer" },
                "delivered": { "type": "integer" }, "failed_attempts": { "type": "integer" },
                "last_delivered_at": time_or_null,
                "last_error": { "type": ["object", "null"], "properties": {
                    "at": time, "delivery": string, "status": { "type": ["integer", "null"] },
                    "message": string } },
                "failing_since": time_or_null, "next_attempt_at": time_or_null } } } }));
    Value::Object(all)
}

fn document() -> Value {
    let mut paths = Map::new();
    ingestion(&mut paths);
    operations(&mut paths);
    profiles(&mut paths);
    segments(&mut paths);
    models_and_rfm(&mut paths);
    webhooks(&mut paths);
    graphql(&mut paths);
    sql(&mut paths);
    jobs(&mut paths);
    let header = |description: &str| {
        json!({ "description": description, "required": true,
                                              "schema": { "type": "string" } })
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "persona",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A self-hosted, real-time customer data platform: Segment-compatible ingestion, live profiles, segments, cluster models and webhooks.",
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" }
        },
        "servers": [{ "url": "http://127.0.0.1:8080" }],
        "tags": [
            { "name": "ingestion", "description": "Segment HTTP Tracking API, for Segment's and RudderStack's SDKs" },
            { "name": "profiles" }, { "name": "segments" }, { "name": "models" },
            { "name": "webhooks" }, { "name": "warehouse" },
            { "name": "jobs", "description": "Scheduled maintenance of the lake, also run on request" },
            { "name": "operations" }
        ],
        "paths": paths,
        "webhooks": {
            "segmentMembership": { "post": {
                "summary": "A customer entered or left a segment (sent to each webhook subscribed)",
                "parameters": [
                    { "name": "X-Persona-Event", "in": "header", "required": true,
                      "schema": { "enum": ["segment.entered", "segment.exited", "ping"] } },
                    { "name": "X-Persona-Delivery", "in": "header", "required": true,
                      "description": "The same on every attempt at one delivery: deduplicate by it",
                      "schema": { "type": "string" } },
                    { "name": "X-Persona-Signature", "in": "header", "required": true,
                      "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<raw body>\")>`",
                      "schema": { "type": "string" } }
                ],
                "requestBody": json_body(schema("Delivery")),
                "responses": { "2XX": { "description": "Taken; anything else is retried with backoff" } }
            } }
        },
        "components": {
            "securitySchemes": {
                "writeKey": { "type": "http", "scheme": "basic",
                              "description": "The write key as the user name, the password empty" },
                "writeKeyInQuery": { "type": "apiKey", "in": "query", "name": "writeKey",
                                     "description": "The write key in the address; ingestion also takes `writeKey` in the JSON body" },
                "adminToken": { "type": "http", "scheme": "bearer" }
            },
            "schemas": schemas(),
            "headers": { "Retry-After": header("Seconds to wait before retrying") }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_summary_and_answers() {
        let doc = document();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                assert!(op["summary"].is_string(), "{method} {path}");
                assert!(
                    !op["responses"].as_object().unwrap().is_empty(),
                    "{method} {path}"
                );
                for p in path.split('/').filter(|s| s.starts_with('{')) {
                    let name = p.trim_matches(|c| c == '{' || c == '}');
                    let declared = op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|q| q["name"] == name && q["in"] == "path")
                    });
                    assert!(declared, "{method} {path} declares {name}");
                }
            }
        }
        assert!(operations > 40, "{operations}");
    }
}
