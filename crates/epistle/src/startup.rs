//! Building a running server from a [`Config`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use epistle_core::clock::SharedClock;
use epistle_deliver::capture::Capture;
use epistle_deliver::dns::Dns;
use epistle_deliver::mx::{DestinationPolicy, MxSettings, MxTransport};
use epistle_deliver::shaping::{Rate, RateLimiter};
use epistle_deliver::smtp::client::{SmtpSettings, Timeouts};
use epistle_deliver::smtp::{SmtpRelay, tls};
use epistle_deliver::{Hop, Metrics, RetryPolicy, RouteMatch, Router, Transport, Worker, WorkerConfig};
use epistle_http::{AppState, HttpSettings, generate_api_key, hash_api_key};
use epistle_ingest::{SmtpListener, SmtpListenerConfig};
use epistle_store::{Committer, SqliteSync, Store, StoreOptions, Tenant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, TransportKind};

/// A running server.
pub struct App {
    pub http_addr: SocketAddr,
    /// The SMTP submission listener's address, when it runs.
    pub smtp_addr: Option<SocketAddr>,
    pub store: Store,
    /// A key generated at first start (print it once), if any.
    pub generated_key: Option<String>,
    pub node: String,
    pub delivery_mode: String,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    smtp: Option<JoinHandle<()>>,
    worker: JoinHandle<()>,
    janitor: JoinHandle<()>,
}

impl App {
    /// Stop taking work; in-flight messages finish (bounded by
    /// `delivery.shutdown_grace`).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits for the HTTP server and the worker to stop.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.janitor.abort();
        if let Some(smtp) = self.smtp {
            smtp.await.context("SMTP listener")?;
        }
        self.worker.await.context("delivery worker")?;
        self.http.await.context("http server")?.context("http server")?;
        self.store.close().await;
        Ok(())
    }
}

pub async fn connect_store(cfg: &Config) -> anyhow::Result<Store> {
    let mut opts = StoreOptions::new(&cfg.database_url);
    opts.max_connections = cfg.database.max_connections;
    opts.sqlite_sync = if cfg.database.sqlite_synchronous == "normal" { SqliteSync::Normal } else { SqliteSync::Full };
    let store = Store::connect(&opts).await.with_context(|| {
        format!(
            "cannot open the database {}; check database_url / EPISTLE_DATABASE_URL",
            epistle_store::redact(&cfg.database_url)
        )
    })?;
    store.migrate().await.context("cannot apply database migrations")?;
    Ok(store)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn hops(cfg: &Config) -> anyhow::Result<Vec<Arc<Hop>>> {
    let threshold = cfg.delivery.circuit_threshold;
    let cooldown = cfg.delivery.circuit_cooldown.as_millis() as i64;
    let mut out = Vec::new();
    for (t, transport) in cfg.transports.iter().zip(transports(cfg)?) {
        let kind = match t.kind {
            TransportKind::Capture => "capture",
            TransportKind::Smtp => "smtp",
            TransportKind::Mx => "mx",
            TransportKind::Ses => "ses",
            TransportKind::Mailgun => "mailgun",
            TransportKind::Sendgrid => "sendgrid",
            TransportKind::Postmark => "postmark",
        };
        let mut hop = Hop::new(transport, kind, threshold, cooldown);
        if let Some(r) = &t.rate {
            let rate: Rate = r.parse().map_err(|e| anyhow::anyhow!("transport `{}`: {e}", t.name))?;
            hop.limiter = Some(RateLimiter::new(rate));
        }
        // dollars per 1,000 messages -> micro-dollars per message
        hop.cost_micros = (t.cost_per_1000.unwrap_or(0.0) * 1000.0).round() as i64;
        hop.connections = t.max_connections;
        out.push(Arc::new(hop));
    }
    if out.is_empty() {
        out.push(Arc::new(Hop::new(Arc::new(Capture::new("capture")), "capture", threshold, cooldown)));
    }
    Ok(out)
}

fn router(cfg: &Config, clock: SharedClock) -> anyhow::Result<Router> {
    let hops = hops(cfg)?;
    let rules = cfg
        .routes
        .iter()
        .map(|r| {
            let m = RouteMatch { stream: r.stream.clone(), sender_domain: r.sender_domain.clone(), tag: r.tag.clone() };
            let chosen = r.transports.iter().filter_map(|n| hops.iter().find(|h| h.name() == n).cloned()).collect();
            (m, chosen)
        })
        .collect();
    Ok(Router::new(hops, rules, clock))
}

fn provider_transport(t: &crate::config::TransportConfig) -> Arc<dyn Transport> {
    use epistle_deliver::providers::{mailgun, postmark, sendgrid, ses};
    let key = t.api_key.as_ref().map(|k| k.expose().to_string()).unwrap_or_default();
    let timeout = t.data_timeout;
    match t.kind {
        TransportKind::Ses => Arc::new(ses::Ses::new(
            &t.name,
            ses::SesSettings {
                region: t.region.clone().unwrap_or_default(),
                endpoint: t.endpoint.clone(),
                access_key_id: t.access_key_id.clone().unwrap_or_default(),
                secret_access_key: t.secret_access_key.as_ref().map(|s| s.expose().to_string()).unwrap_or_default(),
                configuration_set: t.configuration_set.clone(),
                timeout,
            },
        )),
        TransportKind::Mailgun => Arc::new(mailgun::Mailgun::new(
            &t.name,
            mailgun::MailgunSettings { endpoint: t.endpoint.clone(), api_key: key, domain: t.domain.clone(), timeout },
        )),
        TransportKind::Sendgrid => Arc::new(sendgrid::SendGrid::new(
            &t.name,
            sendgrid::SendGridSettings { endpoint: t.endpoint.clone(), api_key: key, timeout },
        )),
        _ => Arc::new(postmark::Postmark::new(
            &t.name,
            postmark::PostmarkSettings {
                endpoint: t.endpoint.clone(),
                api_key: key,
                message_stream: t.message_stream.clone(),
                timeout,
            },
        )),
    }
}

fn mx_transport(cfg: &Config, t: &crate::config::TransportConfig) -> anyhow::Result<MxTransport> {
    let dns = Dns::new(&cfg.dns.servers()?, cfg.dns.timeout, true).map_err(|e| anyhow::anyhow!(e))?;
    let defaults = DestinationPolicy { connections: t.max_connections, rate: None, require_tls: false };
    let mut destinations = std::collections::HashMap::new();
    for d in &cfg.delivery.destinations {
        let domain = epistle_core::parse_domain(&d.domain)
            .ok_or_else(|| anyhow::anyhow!("delivery.destinations: `{}` is not a domain", d.domain))?;
        let rate = d.rate.as_deref().map(str::parse::<Rate>).transpose().map_err(|e| anyhow::anyhow!("{e}"))?;
        destinations.insert(
            domain,
            DestinationPolicy {
                connections: d.connections.unwrap_or(t.max_connections),
                rate,
                require_tls: d.tls.as_deref() == Some("required"),
            },
        );
    }
    Ok(MxTransport::new(
        &t.name,
        dns,
        MxSettings {
            port: cfg.delivery.mx_port,
            helo_name: t.helo_name.clone().unwrap_or_else(host_name),
            timeouts: Timeouts { connect: t.connect_timeout, command: t.command_timeout, data: t.data_timeout },
            defaults,
            destinations,
            dead_backoff: cfg.delivery.dead_destination_backoff,
            allow_private: cfg.delivery.mx_allow_private_addresses,
        },
    ))
}

fn transports(cfg: &Config) -> anyhow::Result<Vec<Arc<dyn Transport>>> {
    let mut out: Vec<Arc<dyn Transport>> = Vec::new();
    for t in &cfg.transports {
        match t.kind {
            TransportKind::Capture => out.push(Arc::new(Capture::new(&t.name))),
            TransportKind::Smtp => {
                let ca = match &t.ca_file {
                    Some(p) => Some(
                        std::fs::read_to_string(p)
                            .with_context(|| format!("transport `{}`: cannot read ca_file {}", t.name, p.display()))?,
                    ),
                    None => None,
                };
                let connector =
                    tls::connector(ca.as_deref()).map_err(|e| anyhow::anyhow!("transport `{}`: {e}", t.name))?;
                let settings = SmtpSettings {
                    host: t.host.clone().unwrap_or_default(),
                    port: t.effective_port()?,
                    tls: t.tls_mode()?,
                    username: t.username.clone(),
                    password: t.password.as_ref().map(|p| p.expose().to_string()),
                    helo_name: t.helo_name.clone().unwrap_or_else(host_name),
                    timeouts: Timeouts { connect: t.connect_timeout, command: t.command_timeout, data: t.data_timeout },
                    connector: Some(connector),
                    connect_addr: None,
                };
                out.push(Arc::new(SmtpRelay::new(&t.name, settings, t.max_connections)));
            }
            TransportKind::Mx => out.push(Arc::new(mx_transport(cfg, t)?)),
            TransportKind::Ses | TransportKind::Mailgun | TransportKind::Sendgrid | TransportKind::Postmark => {
                out.push(provider_transport(t))
            }
        }
    }
    if out.is_empty() {
        out.push(Arc::new(Capture::new("capture")));
    }
    Ok(out)
}

fn smtp_listener_config(cfg: &Config) -> anyhow::Result<SmtpListenerConfig> {
    let tls = match (&cfg.smtp.tls_cert, &cfg.smtp.tls_key) {
        (Some(c), Some(k)) => {
            let cert = std::fs::read(c).with_context(|| format!("smtp.tls_cert: cannot read {}", c.display()))?;
            let key = std::fs::read(k).with_context(|| format!("smtp.tls_key: cannot read {}", k.display()))?;
            Some(epistle_ingest::smtp::tls_acceptor(&cert, &key).map_err(|e| anyhow::anyhow!("smtp TLS: {e}"))?)
        }
        _ => None,
    };
    let trusted = cfg.smtp.trusted_networks()?;
    Ok(SmtpListenerConfig {
        hostname: cfg.smtp.hostname.clone().unwrap_or_else(host_name),
        max_message_bytes: cfg.smtp.max_message_bytes,
        max_recipients: cfg.smtp.max_recipients,
        trusted_networks: trusted,
        tls,
        allow_plain_auth: cfg.smtp.allow_plain_auth,
        ..Default::default()
    })
}

/// Makes sure tenant `default` and a first API key exist. Returns the
/// tenant, and the key when one was generated (to be shown once).
async fn bootstrap(store: &Store, cfg: &Config, now: i64) -> anyhow::Result<(Tenant, Option<String>)> {
    let tenant = store.ensure_tenant("default", now).await?;
    if let Some(key) = &cfg.bootstrap_api_key {
        let key = key.expose();
        if store.find_api_key(&hash_api_key(key)).await?.is_none() {
            store
                .create_api_key(
                    &tenant.id,
                    "bootstrap",
                    &key[..key.len().min(10)],
                    &hash_api_key(key),
                    &["*".into()],
                    now,
                )
                .await?;
        }
        return Ok((tenant, None));
    }
    if store.count_api_keys().await? > 0 {
        return Ok((tenant, None));
    }
    let key = generate_api_key();
    store.create_api_key(&tenant.id, "first key", &key[..10], &hash_api_key(&key), &["*".into()], now).await?;
    Ok((tenant, Some(key)))
}

/// Starts the whole server: database, bootstrap, worker, HTTP.
pub async fn build(cfg: Config, clock: SharedClock) -> anyhow::Result<App> {
    let store = connect_store(&cfg).await?;
    let (default_tenant, generated_key) =
        bootstrap(&store, &cfg, clock.now_ms()).await.context("cannot create the default tenant and key")?;

    let delivery_mode = if cfg.transports.is_empty() {
        "captured: mail is kept here, not sent (set SMTP_SERVER or [[transports]] to relay)".to_string()
    } else {
        format!(
            "relayed through {}",
            cfg.transports.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", then ")
        )
    };
    let route = Arc::new(router(&cfg, clock.clone())?);
    let metrics = Arc::new(Metrics::new());
    let node = cfg
        .delivery
        .node_name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-{:04x}", host_name(), std::process::id(), rand::random::<u16>()));
    let worker = Worker::new(
        store.clone(),
        route.clone(),
        RetryPolicy {
            base: cfg.delivery.retry_base,
            max_delay: cfg.delivery.retry_max_delay,
            max_age: cfg.delivery.max_age,
        },
        clock.clone(),
        metrics.clone(),
        WorkerConfig {
            node: node.clone(),
            batch_size: cfg.delivery.batch_size,
            max_in_flight: cfg.delivery.max_in_flight,
            lease: cfg.delivery.lease,
            poll_interval: cfg.delivery.poll_interval,
            shutdown_grace: cfg.delivery.shutdown_grace,
        },
    );
    let (keyring, domains, master) = crate::secrets::domain_service(&cfg, &store).await?;
    let mut worker = worker.with_keyring(keyring.clone());
    let bounce_domain = match cfg.feedback.bounce_domain.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => Some(
            epistle_core::parse_domain(d)
                .ok_or_else(|| anyhow::anyhow!("feedback.bounce_domain `{d}` is not a domain name"))?
                .to_string(),
        ),
        None => None,
    };
    let token_key = epistle_core::token::TokenKey::new(master.derive("tracking"));
    if let Some(d) = &bounce_domain {
        worker = worker.with_verp(epistle_deliver::worker::Verp { domain: d.clone(), key: token_key.clone() });
    }
    let wake = worker.waker();
    let rules_wake = Arc::new(tokio::sync::Notify::new());
    // Accepted mail that can go now is handed to the worker as it commits,
    // and the worker's outcomes share the accepts' transactions.
    let committer = Committer::start_with_handoff(store.clone(), worker.hand_off());
    worker.record_through(committer.clone());

    let listener = tokio::net::TcpListener::bind(&cfg.http_addr).await.with_context(|| {
        format!("cannot listen on {} (http_addr / EPISTLE_HTTP_ADDR); is another server using it?", cfg.http_addr)
    })?;
    let http_addr = listener.local_addr()?;
    let (shutdown, rx) = watch::channel(false);
    let mut http_rx = rx.clone();
    let hub = epistle_deliver::events::EventHub::new();
    tokio::spawn(hub.clone().run(store.clone(), std::time::Duration::from_millis(500), rx.clone()));
    let hooks = &cfg.hooks;
    let inbound = bounce_domain.as_deref().map(|d| epistle_ingest::inbound::Inbound::new(d, token_key.clone()));
    let feedback = Arc::new(epistle_http::feedback::Feedback::new(
        store.clone(),
        token_key,
        master.clone(),
        bounce_domain.clone(),
        hub.clone(),
        epistle_http::feedback::HookSettings {
            mailgun_signing_key: hooks.mailgun_signing_key.as_ref().map(|s| s.expose().to_string()),
            sendgrid_public_key: hooks.sendgrid_public_key.clone(),
            postmark_username: hooks.postmark_username.clone(),
            postmark_password: hooks.postmark_password.as_ref().map(|s| s.expose().to_string()),
            ses_topic_arns: hooks.ses_topic_arns.items(),
            sns_cert_prefixes: hooks.sns_cert_prefixes.items(),
            sns_auto_confirm: hooks.sns_auto_confirm,
        },
        cfg.webhooks.allow_private_addresses,
    ));
    let webhooks = epistle_deliver::webhooks::Webhooks::new(
        store.clone(),
        master.clone(),
        clock.clone(),
        epistle_deliver::webhooks::WebhookConfig {
            node: node.clone(),
            allow_private: cfg.webhooks.allow_private_addresses,
            timeout: cfg.webhooks.timeout,
            disable_after: cfg.webhooks.disable_after,
            ..Default::default()
        },
    );
    tokio::spawn(webhooks.run(hub.clone(), rx.clone()));
    let state = AppState {
        store: store.clone(),
        committer: committer.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        wake: wake.clone(),
        intake: epistle_ingest::consumers::Intake {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            wake: rules_wake.clone(),
        },
        router: Some(route),
        domains: Some(domains),
        templates: Default::default(),
        settings: Arc::new(HttpSettings {
            max_request_bytes: cfg.limits.max_request_bytes,
            max_recipients: cfg.limits.max_recipients,
            public_url: cfg.public_url(&http_addr.to_string()),
            delivery_mode: delivery_mode.clone(),
        }),
        feedback: Some(feedback),
    };
    let rules = epistle_http::rules::RuleEngine::new(state.clone(), node.clone(), rules_wake.clone());
    tokio::spawn(rules.run(rx.clone()));
    let intake = state.intake.clone();
    for c in &cfg.consumers {
        let tenant = store
            .tenant_by_name(&c.tenant)
            .await?
            .ok_or_else(|| anyhow::anyhow!("consumer {}: no tenant named `{}`", c.url, c.tenant))?;
        let required = |v: &Option<String>, what: &str| {
            v.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                anyhow::anyhow!("a {:?} consumer needs `{what}` ([[consumers]] url = {})", c.kind, c.url)
            })
        };
        match c.kind {
            crate::config::ConsumerKind::Nats => {
                let consumer = epistle_ingest::consumers::nats::NatsConsumer {
                    url: c.url.clone(),
                    stream: required(&c.stream, "stream")?,
                    subject: required(&c.subject, "subject")?,
                    durable: c.durable.clone().unwrap_or_else(|| "epistle".into()),
                    tenant_id: tenant.id.clone(),
                    ack_wait: c.ack_wait,
                };
                tokio::spawn(consumer.run(intake.clone(), rx.clone()));
            }
            crate::config::ConsumerKind::Amqp => {
                let consumer = epistle_ingest::consumers::amqp::AmqpConsumer {
                    url: c.url.clone(),
                    queue: required(&c.queue, "queue")?,
                    prefetch: c.prefetch.max(1),
                    tenant_id: tenant.id.clone(),
                };
                tokio::spawn(consumer.run(intake.clone(), rx.clone()));
            }
        }
    }
    let app = epistle_http::router(state);
    let http = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = http_rx.wait_for(|s| *s).await;
            })
            .await
    });
    let worker = tokio::spawn(worker.run(rx.clone()));

    let (smtp_addr, smtp) = if cfg.smtp_addr.trim().is_empty() {
        (None, None)
    } else {
        let listener = tokio::net::TcpListener::bind(cfg.smtp_addr.trim()).await.with_context(|| {
            format!("cannot listen for SMTP on {} (smtp_addr / EPISTLE_SMTP_ADDR; empty turns it off)", cfg.smtp_addr)
        })?;
        let addr = listener.local_addr()?;
        let smtp = Arc::new(SmtpListener {
            store: store.clone(),
            committer,
            clock: clock.clone(),
            metrics,
            default_tenant_id: default_tenant.id.clone(),
            cfg: SmtpListenerConfig { inbound, ..smtp_listener_config(&cfg)? },
            events: Some(hub.clone()),
        });
        (Some(addr), Some(tokio::spawn(smtp.serve(listener, rx.clone()))))
    };

    // Forget idempotency keys after 48 hours (the contract promises 24),
    // and pick up DKIM keys changed through other nodes.
    let janitor_store = store.clone();
    let janitor_clock = clock.clone();
    let purge = async move {
        loop {
            let cutoff = janitor_clock.now_ms() - 48 * 3600 * 1000;
            match janitor_store.purge_idempotency_keys(cutoff).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "forgot old idempotency keys"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot purge idempotency keys"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
    };
    let janitor = tokio::spawn(async move {
        tokio::join!(purge, keyring.refresh_loop(std::time::Duration::from_secs(15)));
    });

    Ok(App { http_addr, smtp_addr, store, generated_key, node, delivery_mode, shutdown, http, smtp, worker, janitor })
}
