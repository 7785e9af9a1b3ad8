use std::sync::Arc;
use std::time::Duration;

use epistle::config::{Config, TransportConfig};
use epistle::{App, build};
use epistle_core::clock::{ManualClock, SharedClock};
use epistle_testkit::{DnsServer, Engine, SinkConfig, SmtpSink, TestDb};
use serde_json::{Value, json};

pub const KEY: &str = "ep_testkeytestkeytestkeytestkey00";
/// The injected clock starts here (2027-01-15).
pub const START_MS: i64 = 1_800_000_000_000;
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestApp {
    pub app: Option<App>,
    pub base: String,
    pub client: reqwest::Client,
    pub sink: SmtpSink,
    pub clock: ManualClock,
    /// The DNS server the app asks (`dns.nameservers`).
    pub dns: DnsServer,
    pub _db: TestDb,
    /// What the app was started with (for [`TestApp::restart`]).
    pub cfg: Config,
}

/// The master key tests run with (so they can open what the app sealed).
pub const MASTER_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A change to the configuration made at run time.
pub type Configure = Box<dyn FnOnce(&mut Config) + Send>;

pub struct Options {
    pub engine: Engine,
    pub sink: SinkConfig,
    /// Relay through the sink (true) or capture (false).
    pub relay: bool,
    pub tweak: fn(&mut Config),
    /// Like `tweak`, for settings known only at run time (a fake's URL).
    pub configure: Option<Configure>,
    /// Certificate and key files for the SMTP listener's STARTTLS.
    pub smtp_tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// More transports after the sink, and routes.
    pub extra_transports: Vec<TransportConfig>,
    pub routes: Vec<epistle::config::RouteConfig>,
    /// Deliver directly (an `mx` transport) to MX hosts on the sink's port,
    /// resolved through the test DNS server, instead of relaying.
    pub mx: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            engine: Engine::Sqlite,
            sink: SinkConfig::default(),
            relay: true,
            tweak: |_| {},
            configure: None,
            smtp_tls: None,
            extra_transports: vec![],
            routes: vec![],
            mx: false,
        }
    }
}

pub fn config_for(db: &TestDb, sink: &SmtpSink, relay: bool) -> Config {
    let mut cfg = Config {
        database_url: db.url.clone(),
        http_addr: "127.0.0.1:0".into(),
        smtp_addr: "127.0.0.1:0".into(),
        bootstrap_api_key: Some(epistle::config::Secret(KEY.into())),
        master_key: Some(epistle::config::Secret(MASTER_KEY.into())),
        ..Default::default()
    };
    cfg.delivery.poll_interval = Duration::from_millis(50);
    cfg.delivery.retry_base = Duration::from_secs(60);
    cfg.delivery.shutdown_grace = Duration::from_secs(5);
    if relay {
        let mut t = TransportConfig::smtp("sink", "127.0.0.1");
        t.port = Some(sink.port());
        t.tls = Some("none".into());
        t.connect_timeout = Duration::from_secs(2);
        t.command_timeout = Duration::from_secs(5);
        t.data_timeout = Duration::from_secs(5);
        cfg.transports.push(t);
    }
    cfg
}

pub async fn spawn(opts: Options) -> TestApp {
    let db = TestDb::new(opts.engine).await;
    let sink = SmtpSink::start(opts.sink).await;
    let dns = DnsServer::start().await;
    let mut cfg = config_for(&db, &sink, opts.relay);
    cfg.dns.nameservers = epistle::config::StringList::One(dns.addr.to_string());
    if opts.mx {
        let mut t = TransportConfig::smtp("direct", "");
        t.kind = epistle::config::TransportKind::Mx;
        t.host = None;
        t.connect_timeout = Duration::from_secs(2);
        t.command_timeout = Duration::from_secs(5);
        cfg.transports = vec![t];
        cfg.delivery.mx_port = sink.port();
        // The sink and the DNS answers live on loopback.
        cfg.delivery.mx_allow_private_addresses = true;
    }
    cfg.transports.extend(opts.extra_transports);
    cfg.routes = opts.routes;
    (opts.tweak)(&mut cfg);
    if let Some(f) = opts.configure {
        f(&mut cfg);
    }
    if let Some((cert, key)) = opts.smtp_tls {
        cfg.smtp.tls_cert = Some(cert);
        cfg.smtp.tls_key = Some(key);
    }
    let clock = ManualClock::new(START_MS);
    let shared: SharedClock = Arc::new(clock.clone());
    let app = build(cfg.clone(), shared).await.expect("app starts");
    let base = format!("http://{}", app.http_addr);
    TestApp { app: Some(app), base, client: reqwest::Client::new(), sink, clock, dns, _db: db, cfg }
}

pub async fn spawn_app() -> TestApp {
    spawn(Options::default()).await
}

pub fn message(to: &str) -> Value {
    json!({
        "from": "Shop <orders@shop.example>",
        "to": [format!("Jane Doe <{to}>")],
        "subject": "Your order #1042",
        "text": "Thanks for your order.",
        "html": "<p>Thanks for your order.</p>",
        "tags": ["order-confirmation"],
        "metadata": {"order_id": "1042"}
    })
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(path)).bearer_auth(KEY).json(body).send().await.expect("request")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client.delete(self.url(path)).bearer_auth(KEY).send().await.expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(KEY).send().await.expect("request")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Sends one message; asserts 202 and returns its id.
    pub async fn send(&self, body: &Value) -> String {
        let r = self.post("/v1/messages", body).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 202, "{v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Waits until the message's status is `want`.
    pub async fn wait_status(&self, id: &str, want: &str) -> Value {
        epistle_testkit::wait_for(&format!("{id} to be {want}"), WAIT, || async {
            let v = self.get_json(&format!("/v1/messages/{id}")).await;
            (v["status"] == want).then_some(v)
        })
        .await
    }

    /// Moves the injected clock and wakes the worker.
    pub fn advance(&self, d: Duration) {
        self.clock.advance_ms(d.as_millis() as i64);
    }

    /// Stops the app and starts it again on the same database, sink and
    /// clock (a new HTTP port).
    pub async fn restart(&mut self) {
        self.halt().await;
        self.resume().await;
    }

    /// Stops the app (the database, sink and clock stay).
    pub async fn halt(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
            app.wait().await.expect("clean stop");
        }
    }

    /// Starts the app again after [`TestApp::halt`].
    pub async fn resume(&mut self) {
        let shared: SharedClock = Arc::new(self.clock.clone());
        let app = build(self.cfg.clone(), shared).await.expect("app starts again");
        self.base = format!("http://{}", app.http_addr);
        self.app = Some(app);
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
            app.wait().await.expect("clean stop");
        }
    }
}

/// Posts JSON; the status and the JSON answer (null when there is none).
pub async fn post(t: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let r = t.post(path, body).await;
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Waits until the rules have acted on a business event; the event.
pub async fn processed(t: &TestApp, id: &str) -> Value {
    epistle_testkit::wait_for(&format!("event {id} processed"), WAIT, || async {
        let v = t.get_json(&format!("/v1/events/{id}")).await;
        (v["status"] == "processed").then_some(v)
    })
    .await
}
