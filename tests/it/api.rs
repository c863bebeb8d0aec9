//! A small HTTP client for the black-box API tests: requests with tokens and headers, and
//! answers with their status, headers and JSON body.

use careflow_aggregates::{ChainBreak, ChainVerifier, RecordedEvent};
use serde_json::Value;
use std::collections::BTreeMap;

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with `status`, in careflow's message style, and returns
    /// its `code`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(self.body["status"], status, "{}", self.text);
        let title = self.body["title"].as_str().unwrap();
        assert!(
            !title.is_empty()
                && !title.ends_with('.')
                && !title.chars().next().unwrap().is_uppercase(),
            "title style: {title:?}"
        );
        let code = self.body["code"].as_str().unwrap().to_string();
        assert!(
            self.body["type"].as_str().unwrap().ends_with(&code),
            "{}",
            self.text
        );
        code
    }
}

/// The client of one server.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
            text,
        })
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, token, &[], None)
            .await
            .unwrap()
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: String,
    ) -> Reply {
        self.send(reqwest::Method::POST, path, token, headers, Some(body))
            .await
            .unwrap()
    }

    /// `POST /v1/{kind}/{id}/commands`.
    pub async fn command(&self, token: &str, kind: &str, id: &str, body: Value) -> Reply {
        self.command_with(token, kind, id, body, &[]).await
    }

    pub async fn command_with(
        &self,
        token: &str,
        kind: &str,
        id: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.post_raw(
            &format!("/v1/{kind}/{id}/commands"),
            Some(token),
            headers,
            body.to_string(),
        )
        .await
    }

    /// A command that must be carried out; returns the answer.
    pub async fn ok(&self, token: &str, kind: &str, id: &str, body: Value) -> Value {
        let reply = self.command(token, kind, id, body).await;
        assert_eq!(reply.status, 200, "{kind}/{id}: {}", reply.text);
        reply.body
    }

    /// The whole global log (needs an auditor or admin token).
    pub async fn all_events(&self, token: &str) -> Vec<RecordedEvent> {
        let mut from = 1;
        let mut out = Vec::new();
        loop {
            let reply = self
                .get(&format!("/v1/events?from={from}&limit=1000"), Some(token))
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            let page: Vec<RecordedEvent> =
                serde_json::from_value(reply.body["events"].clone()).unwrap();
            if page.is_empty() {
                return out;
            }
            from = reply.body["next"].as_u64().unwrap();
            out.extend(page);
        }
    }
}

/// Checks positions are strictly increasing, event ids unique, and every stream's hash chain.
#[track_caller]
pub fn assert_log_is_sound(events: &[RecordedEvent]) {
    let mut streams: BTreeMap<String, Vec<&RecordedEvent>> = BTreeMap::new();
    let mut ids = std::collections::HashSet::new();
    let mut last = 0;
    for event in events {
        assert!(
            event.position > last,
            "positions out of order at {}",
            event.position
        );
        last = event.position;
        assert!(
            ids.insert(event.event_id),
            "event {} appears twice",
            event.event_id
        );
        streams
            .entry(event.stream_id.to_string())
            .or_default()
            .push(event);
    }
    for (stream, mut list) in streams {
        list.sort_by_key(|e| e.version);
        let mut verifier = ChainVerifier::new(list[0].stream_id.clone());
        for event in list {
            // A patient's `personal` object is served decrypted (or null once erased) while
            // the hash covers the stored ciphertext: only the links can be checked for it
            // (docs/http-api.md "Command answer"; `GET /v1/audit/verify` checks the content).
            let served_plain = event.data.get("personal").is_some();
            if let Err(breaks) = verifier.check(event) {
                let real: Vec<_> = breaks
                    .into_iter()
                    .filter(|b| !(served_plain && *b == ChainBreak::HashMismatch))
                    .collect();
                assert!(real.is_empty(), "{stream} v{}: {real:?}", event.version);
            }
        }
    }
}

/// Every event acknowledged to the clients is in `log` exactly once, byte for byte.
pub fn assert_acknowledged_present_once(acknowledged: &[RecordedEvent], log: &[RecordedEvent]) {
    let mut seen = std::collections::HashMap::new();
    for event in log {
        *seen.entry(event.event_id).or_insert(0) += 1;
    }
    for event in acknowledged {
        let stored = log
            .iter()
            .find(|e| e.event_id == event.event_id)
            .unwrap_or_else(|| panic!("acknowledged event {} lost", event.event_id));
        assert_eq!(
            stored, event,
            "stored event differs from its acknowledgement"
        );
        assert_eq!(seen[&event.event_id], 1, "{} doubled", event.event_id);
    }
}
