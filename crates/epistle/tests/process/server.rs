//! Starting and killing `epistle serve` processes.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const KEY: &str = "ep_processtestkeyprocesstestkey00";

pub struct Server {
    pub child: Child,
    pub base: String,
}

/// Starts `epistle serve` on a free port, relaying to the sink on
/// `sink_port`, and waits until it listens.
pub async fn start(db_url: &str, sink_port: u16, extra: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_epistle"));
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("EPISTLE_DATABASE_URL", db_url)
        .env("EPISTLE_HTTP_ADDR", "127.0.0.1:0")
        .env("EPISTLE_SMTP_ADDR", "127.0.0.1:0")
        .env("EPISTLE_BOOTSTRAP_API_KEY", KEY)
        .env("EPISTLE_MASTER_KEY", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        .env("EPISTLE_LOG", "warn")
        .env("SMTP_SERVER", "127.0.0.1")
        .env("SMTP_PORT", sink_port.to_string())
        .env("SMTP_TLS", "none")
        .env("EPISTLE_DELIVERY__LEASE", "3s")
        .env("EPISTLE_DELIVERY__POLL_INTERVAL", "100ms")
        .env("EPISTLE_DELIVERY__MAX_IN_FLIGHT", "64")
        .env("EPISTLE_DELIVERY__BATCH_SIZE", "32")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start epistle");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(addr) = line.strip_prefix("Epistle listening on ") {
                return addr.trim().to_string();
            }
        }
        panic!("epistle exited before listening");
    })
    .await
    .expect("epistle did not start within 60 s");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server { child, base }
}

impl Server {
    /// `kill -9`: no chance to clean up.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }

    /// SIGTERM, and the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("pid");
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("stops within 30 s").unwrap()
    }
}

pub fn batch(prefix: &str, from: usize, n: usize) -> Value {
    let messages: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({
                "from": "orders@shop.example",
                "to": format!("{prefix}{i}@example.com"),
                "subject": format!("Order {i}"),
                "text": format!("Order {i}: {}", "lorem ipsum ".repeat(80)),
            })
        })
        .collect();
    json!({ "messages": messages })
}

/// Posts a batch; returns the recipients acknowledged (202 with an id), or
/// nothing if the server died first.
pub async fn post_batch(client: &reqwest::Client, base: &str, body: &Value) -> Vec<String> {
    let Ok(r) = client.post(format!("{base}/v1/messages/batch")).bearer_auth(KEY).json(body).send().await else {
        return vec![];
    };
    if r.status() != 202 {
        return vec![];
    }
    let Ok(v) = r.json::<Value>().await else { return vec![] };
    let msgs = body["messages"].as_array().unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(msgs)
        .filter(|(res, _)| res["id"].is_string())
        .map(|(_, m)| m["to"].as_str().unwrap().to_string())
        .collect()
}

/// How often each recipient reached the sink.
pub fn receipts(sink: &epistle_testkit::SmtpSink) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in sink.received() {
        for rcpt in r.rcpts {
            *m.entry(rcpt).or_insert(0) += 1;
        }
    }
    m
}
