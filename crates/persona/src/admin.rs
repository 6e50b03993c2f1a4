//! `persona segments …`, `persona models …`, `persona webhooks …` and `persona jobs …`: the
//! segment, model, webhook and job API of a running server from the command line. Each command makes one request and prints the server's
//! JSON answer; an error answer goes to stderr with a non-zero exit, its message naming the
//! field and the reason as the API does.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Map, Value, json};

use crate::cli::{
    AdminArgs, JobsCommand, ModelsCommand, SegmentsCommand, TrainArgs, WebhooksCommand,
};
use crate::client::http_client;

/// One server's admin API, authenticated with its admin token.
pub(crate) struct AdminClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    auth: String,
}

impl AdminClient {
    pub(crate) fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let token = match &args.admin_token {
            Some(t) => t.clone(),
            None => {
                let path = args.data_dir.join("admin_token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no --admin-token given and cannot read {} (the token `serve` saved)",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        let (client, base) = http_client(&args.url)?;
        Ok(AdminClient {
            client,
            base,
            auth: format!("Bearer {token}"),
        })
    }

    /// Sends one request and returns the answer's JSON, or the server's error as the error.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, &self.auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("valid request");
        let resp = self
            .client
            .request(req)
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let answer: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_success() {
            return Ok(answer);
        }
        let message = answer["error"]["message"]
            .as_str()
            .map_or_else(|| answer.to_string(), str::to_string);
        bail!("{method} {path} answered {status}: {message}")
    }
}

pub async fn segments(args: AdminArgs, command: SegmentsCommand) -> anyhow::Result<()> {
    let api = AdminClient::new(&args)?;
    let answer = match command {
        SegmentsCommand::List => api.call(Method::GET, "/v1/segments", None).await?,
        SegmentsCommand::Get { id } => {
            api.call(Method::GET, &format!("/v1/segments/{id}"), None)
                .await?
        }
        SegmentsCommand::Create { name, rule } => {
            let body = json!({"name": name, "rule": rule});
            api.call(Method::POST, "/v1/segments", Some(body)).await?
        }
        SegmentsCommand::Update { id, name, rule } => {
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("name".into(), name.into());
            }
            if let Some(rule) = rule {
                body.insert("rule".into(), rule.into());
            }
            if body.is_empty() {
                bail!("give --name, --rule or both");
            }
            let path = format!("/v1/segments/{id}");
            api.call(Method::PUT, &path, Some(Value::Object(body)))
                .await?
        }
        SegmentsCommand::Delete { id } => {
            api.call(Method::DELETE, &format!("/v1/segments/{id}"), None)
                .await?
        }
        SegmentsCommand::Members { id, limit, cursor } => {
            let mut path = format!("/v1/segments/{id}/members?limit={limit}");
            if let Some(c) = cursor {
                // Whatever was typed reaches the server as the cursor, not as more query.
                path.push_str("&cursor=");
                path.extend(form_urlencoded::byte_serialize(c.as_bytes()));
            }
            api.call(Method::GET, &path, None).await?
        }
    };
    print(&answer)
}

pub async fn webhooks(args: AdminArgs, command: WebhooksCommand) -> anyhow::Result<()> {
    let api = AdminClient::new(&args)?;
    let answer = match command {
        WebhooksCommand::List => api.call(Method::GET, "/v1/webhooks", None).await?,
        WebhooksCommand::Get { id } => {
            api.call(Method::GET, &format!("/v1/webhooks/{id}"), None)
                .await?
        }
        WebhooksCommand::Create {
            endpoint,
            events,
            segments,
            secret,
        } => {
            let events = if events.is_empty() {
                persona_webhooks::EVENTS.map(String::from).to_vec()
            } else {
                events
            };
            let mut body = json!({"url": endpoint, "events": events, "segments": segments});
            if let Some(secret) = secret {
                body["secret"] = secret.into();
            }
            api.call(Method::POST, "/v1/webhooks", Some(body)).await?
        }
        WebhooksCommand::Update {
            id,
            endpoint,
            events,
            segments,
            secret,
            enable,
            disable,
        } => {
            let mut body = Map::new();
            if let Some(url) = endpoint {
                body.insert("url".into(), url.into());
            }
            if let Some(events) = events {
                body.insert("events".into(), events.into());
            }
            if let Some(segments) = segments {
                body.insert("segments".into(), segments.into());
            }
            if let Some(secret) = secret {
                body.insert("secret".into(), secret.into());
            }
            if enable || disable {
                body.insert("active".into(), enable.into());
            }
            if body.is_empty() {
                bail!(
                    "give at least one of --endpoint, --events, --segments, --secret, --enable, --disable"
                );
            }
            let path = format!("/v1/webhooks/{id}");
            api.call(Method::PUT, &path, Some(Value::Object(body)))
                .await?
        }
        WebhooksCommand::Delete { id } => {
            api.call(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
                .await?
        }
        WebhooksCommand::Ping { id } => {
            let answer = api
                .call(Method::POST, &format!("/v1/webhooks/{id}/ping"), None)
                .await?;
            print(&answer)?;
            // A script checking a receiver learns from the exit status.
            if answer["delivered"] != true {
                bail!(
                    "the receiver did not take the ping: {}",
                    answer["error"].as_str().unwrap_or("no answer")
                );
            }
            return Ok(());
        }
    };
    print(&answer)
}

pub async fn jobs(args: AdminArgs, command: JobsCommand) -> anyhow::Result<()> {
    let api = AdminClient::new(&args)?;
    let answer = match command {
        JobsCommand::List => api.call(Method::GET, "/v1/jobs", None).await?,
        JobsCommand::Run { name } => {
            // The name goes as one path segment, whatever was typed.
            let name: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
            api.call(Method::POST, &format!("/v1/jobs/{name}/run"), None)
                .await?
        }
    };
    print(&answer)
}

pub async fn models(args: AdminArgs, command: ModelsCommand) -> anyhow::Result<()> {
    let api = AdminClient::new(&args)?;
    let answer = match command {
        ModelsCommand::List => api.call(Method::GET, "/v1/models", None).await?,
        ModelsCommand::Get { id } => {
            api.call(Method::GET, &format!("/v1/models/{id}"), None)
                .await?
        }
        ModelsCommand::Curves { id } => {
            let path = format!("/v1/models/{id}/curves");
            api.call(Method::GET, &path, None).await?
        }
        ModelsCommand::Activate { id } => {
            let path = format!("/v1/models/{id}/activate");
            api.call(Method::POST, &path, None).await?
        }
        ModelsCommand::Train(train) => {
            let body = train_body(train);
            api.call(Method::POST, "/v1/models", Some(body)).await?
        }
    };
    print(&answer)
}

/// The body of `POST /v1/models`: only what was given, so the server's defaults apply.
fn train_body(t: TrainArgs) -> Value {
    // A number goes as a number; anything else (`auto`, or a mistake) as given, for the
    // server to accept or name in its error.
    let k =
        t.k.parse::<u64>()
            .map_or_else(|_| Value::from(t.k), Value::from);
    let mut body = json!({"name": t.name, "features": t.features, "k": k,
                          "activate": !t.no_activate});
    for (field, value) in [
        ("algorithm", t.algorithm.map(Value::from)),
        ("seed", t.seed.map(Value::from)),
    ] {
        if let Some(v) = value {
            body[field] = v;
        }
    }
    body
}

/// Prints the server's answer; an empty one (a deletion's 204) prints nothing.
fn print(answer: &Value) -> anyhow::Result<()> {
    if !answer.is_null() {
        crate::say::print_json(answer)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_sends_only_what_was_given() {
        let t = TrainArgs {
            name: "rfm".into(),
            features: vec!["computed.frequency".into(), "computed.monetary".into()],
            algorithm: None,
            k: "auto".into(),
            seed: None,
            no_activate: false,
        };
        assert_eq!(
            train_body(t),
            json!({"name": "rfm", "features": ["computed.frequency", "computed.monetary"],
                   "activate": true, "k": "auto"})
        );
        let t = TrainArgs {
            name: "m".into(),
            features: vec!["computed.frequency".into()],
            algorithm: Some("kmeans".into()),
            k: "4".into(),
            seed: Some(7),
            no_activate: true,
        };
        assert_eq!(
            train_body(t),
            json!({"name": "m", "features": ["computed.frequency"], "activate": false,
                   "algorithm": "kmeans", "k": 4, "seed": 7})
        );
    }
}
