//! A local HTTP server standing in for a provider's API: it records every
//! request and answers what the test's function says, so the function can
//! check authentication and payload the way the provider would.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The answer: status, headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

pub struct HttpFake {
    pub url: String,
    requests: Arc<Mutex<Vec<HttpRequest>>>,
    task: JoinHandle<()>,
}

impl Drop for HttpFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpFake {
    pub async fn start(respond: impl Fn(&HttpRequest) -> Answer + Send + Sync + 'static) -> Self {
        let requests: Arc<Mutex<Vec<HttpRequest>>> = Arc::default();
        let respond = Arc::new(respond);
        let log = requests.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let respond = respond.clone();
            let log = log.clone();
            async move {
                let req = HttpRequest {
                    method: method.to_string(),
                    path: uri.path().to_string(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                        .collect(),
                    body: body.to_vec(),
                };
                let (status, headers, body) = respond(&req);
                log.lock().unwrap().push(req);
                let mut resp = (StatusCode::from_u16(status).unwrap(), body).into_response();
                for (k, v) in headers {
                    resp.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        axum::http::HeaderValue::from_str(&v).unwrap(),
                    );
                }
                resp
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, requests, task }
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.requests.lock().unwrap().clone()
    }
}
