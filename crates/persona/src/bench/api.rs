//! A bench's JSON calls to the server it started: ingestion with the write key, the admin
//! API with the admin token.

use std::time::Duration;

use anyhow::bail;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;

use super::{ADMIN_TOKEN, Server, WRITE_KEY};

#[derive(Clone)]
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    write: String,
    admin: String,
}

impl Api {
    pub fn new(server: &Server) -> anyhow::Result<Self> {
        let base = format!("http://{}", server.addr);
        let (client, _) = crate::client::http_client(&base)?;
        Ok(Api {
            client,
            base,
            write: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{WRITE_KEY}:"))
            ),
            admin: format!("Bearer {ADMIN_TOKEN}"),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends events (`/v1/batch` and the like) with the write key.
    pub async fn ingest(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, &self.write, body).await
    }

    /// Calls the admin API; `Value::Null` sends no body.
    pub async fn admin(&self, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(method, path, &self.admin, body).await
    }

    /// Waits until the processor has applied every logged event.
    pub async fn wait_processed(&self) {
        loop {
            let ready = self.admin(Method::GET, "/readyz", Value::Null).await;
            if ready.is_ok_and(|r| r["processor"]["lag_records"] == 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let body = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .expect("a valid request");
        let answer = self.client.request(request).await?;
        let status = answer.status();
        let bytes = answer.into_body().collect().await?.to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path} answered {status}: {body}");
        }
        Ok(body)
    }
}
