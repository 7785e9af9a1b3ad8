//! Configuration: one typed tree. Defaults first, then the TOML file
//! (`--config FILE` or `EPISTLE_CONFIG`), then `EPISTLE_*` environment
//! variables (`EPISTLE_<SECTION>__<KEY>`), then the seed names `SMTP_*`,
//! `SMTP_FAILOVER_*` and `FRONTEND_URL`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use epistle_deliver::smtp::TlsMode;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// A secret that never prints.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://PATH` (file and folder created) or `postgres://USER@HOST/DB`.
    pub database_url: String,
    /// Where the HTTP API and pages listen.
    pub http_addr: String,
    /// Base URL for links in mail; defaults to `http://<http_addr>`.
    pub public_url: Option<String>,
    /// On a database without API keys, this key is installed instead of a
    /// generated one (and added if missing on later starts).
    pub bootstrap_api_key: Option<Secret>,
    /// Log filter, e.g. `info` or `epistle=debug,info`.
    pub log: String,
    /// Where the SMTP submission listener listens; empty to turn it off.
    pub smtp_addr: String,
    pub smtp: SmtpConfig,
    pub database: DatabaseConfig,
    pub delivery: DeliveryConfig,
    pub limits: LimitsConfig,
    /// Ways out, in failover order. Empty: mail is captured.
    pub transports: Vec<TransportConfig>,
    /// Which transports serve which mail; the first matching route wins.
    /// Without routes (or when none matches) every transport is used, in
    /// the order written.
    pub routes: Vec<RouteConfig>,
    /// Message brokers business events are consumed from (NATS JetStream,
    /// AMQP); each message body is the JSON of `POST /v1/events`.
    pub consumers: Vec<ConsumerConfig>,
    /// The key that seals secrets at rest (DKIM private keys): 32 bytes as
    /// base64 or 64 hex digits. Every node of a cluster needs the same one.
    pub master_key: Option<Secret>,
    /// Where the master key is kept when `master_key` is not set; made
    /// (mode 0600) at first start. Default: `master.key` beside the SQLite
    /// database, or `epistle-data/master.key`.
    pub master_key_file: Option<PathBuf>,
    pub dns: DnsConfig,
    pub domains: DomainsConfig,
    pub feedback: FeedbackConfig,
    pub hooks: HooksConfig,
    pub webhooks: WebhooksConfig,
}

/// Bounces and unsubscribes by mail.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// A domain whose MX points at this server's SMTP listener: mail goes
    /// out with VERP return paths `bounce+…@` it (one SMTP transaction per
    /// recipient), and List-Unsubscribe gets a `mailto:unsubscribe+…@` it.
    /// Unset: the sender's own address is the return path.
    pub bounce_domain: Option<String>,
}

/// Credentials of provider webhooks (`/hooks/…`). A hook without its
/// credentials refuses everything.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// Mailgun's "HTTP webhook signing key".
    pub mailgun_signing_key: Option<Secret>,
    /// SendGrid's signed event webhook verification key (base64 or PEM).
    pub sendgrid_public_key: Option<String>,
    /// The basic-auth user and password put in Postmark's webhook URL.
    pub postmark_username: Option<String>,
    pub postmark_password: Option<Secret>,
    /// SNS topic ARNs whose SES notifications are taken.
    pub ses_topic_arns: StringList,
    /// Extra places SNS certificates and subscription URLs may come from
    /// (tests, private endpoints); Amazon's own hosts are always allowed
    /// when this is empty.
    pub sns_cert_prefixes: StringList,
    /// Confirm SNS subscriptions by itself.
    pub sns_auto_confirm: bool,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            mailgun_signing_key: None,
            sendgrid_public_key: None,
            postmark_username: None,
            postmark_password: None,
            ses_topic_arns: StringList::Empty,
            sns_cert_prefixes: StringList::Empty,
            sns_auto_confirm: true,
        }
    }
}

/// A broker to take business events from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    pub kind: ConsumerKind,
    /// `nats://127.0.0.1:4222` or `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// NATS: the JetStream stream (created with `subject` when missing).
    #[serde(default)]
    pub stream: Option<String>,
    /// NATS: the subjects to take, e.g. `orders.>`.
    #[serde(default)]
    pub subject: Option<String>,
    /// NATS: the durable consumer's name (default `epistle`).
    #[serde(default)]
    pub durable: Option<String>,
    /// AMQP: the queue (declared durable when missing).
    #[serde(default)]
    pub queue: Option<String>,
    /// AMQP: unacknowledged deliveries at most.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// The tenant (by name) the events belong to.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// NATS: how long before an unacknowledged message is delivered again.
    #[serde(default = "default_ack_wait", with = "humantime_serde")]
    pub ack_wait: Duration,
}

fn default_prefetch() -> u16 {
    100
}

fn default_tenant() -> String {
    "default".into()
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerKind {
    Nats,
    Amqp,
}

/// Outgoing webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Let tenants point webhooks at loopback and private addresses.
    pub allow_private_addresses: bool,
    /// How long one POST may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// An endpoint that fails this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private_addresses: false,
            timeout: Duration::from_secs(10),
            disable_after: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Name servers as `IP:port` (`["127.0.0.1:5353"]` or
    /// `"127.0.0.1:5353,…"`); empty: the system's (/etc/resolv.conf).
    pub nameservers: StringList,
    /// Per query.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self { nameservers: StringList::Empty, timeout: Duration::from_secs(5) }
    }
}

impl DnsConfig {
    pub fn servers(&self) -> anyhow::Result<Vec<std::net::SocketAddr>> {
        self.nameservers
            .items()
            .iter()
            .map(|s| {
                s.parse::<std::net::SocketAddr>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
                    .map_err(|_| anyhow::anyhow!("dns.nameservers: `{s}` is not an address such as 127.0.0.1:53"))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsConfig {
    /// The SPF record domain owners are asked to publish. Put in what your
    /// mail leaves from: `ip4:…` for direct delivery, `include:…` of your
    /// relay.
    pub spf: String,
    /// The DMARC record recommended at `_dmarc.<domain>`.
    pub dmarc: String,
    /// DKIM keys made for a new domain: `rsa`, `ed25519` or both.
    pub dkim_algorithms: StringList,
    /// Size of new RSA keys (2048 is what DNS hosts and verifiers expect).
    pub rsa_bits: usize,
}

impl Default for DomainsConfig {
    fn default() -> Self {
        Self {
            spf: "v=spf1 a mx ~all".into(),
            dmarc: "v=DMARC1; p=none".into(),
            dkim_algorithms: StringList::Many(vec!["rsa".into()]),
            rsa_bits: 2048,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `transactional` or `broadcast`.
    pub stream: Option<String>,
    /// The envelope sender's domain, e.g. `shop.example`.
    pub sender_domain: Option<String>,
    /// A tag the message carries.
    pub tag: Option<String>,
    /// Transport names, in failover order.
    pub transports: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://epistle-data/epistle.db".into(),
            http_addr: "127.0.0.1:8787".into(),
            public_url: None,
            bootstrap_api_key: None,
            log: "info".into(),
            smtp_addr: "127.0.0.1:2587".into(),
            smtp: SmtpConfig::default(),
            database: DatabaseConfig::default(),
            delivery: DeliveryConfig::default(),
            limits: LimitsConfig::default(),
            transports: Vec::new(),
            routes: Vec::new(),
            consumers: Vec::new(),
            master_key: None,
            master_key_file: None,
            dns: DnsConfig::default(),
            domains: DomainsConfig::default(),
            feedback: FeedbackConfig::default(),
            hooks: HooksConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

/// A list written as a TOML array or as one comma-separated string (the
/// form an environment variable can hold).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(untagged)]
pub enum StringList {
    #[default]
    Empty,
    One(String),
    Many(Vec<String>),
}

impl StringList {
    pub fn items(&self) -> Vec<String> {
        match self {
            StringList::Empty => vec![],
            StringList::One(s) => s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
            StringList::Many(v) => v.iter().map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Our name in the greeting and `Received` headers (default: host name).
    pub hostname: Option<String>,
    /// Networks that may send without AUTH, into tenant `default`, e.g.
    /// `["127.0.0.0/8", "10.0.0.0/8"]` or `"127.0.0.0/8,10.0.0.0/8"`.
    pub trusted_networks: StringList,
    /// Largest message accepted (552 above). Default 25 MiB.
    pub max_message_bytes: usize,
    /// Most recipients per message (452 above).
    pub max_recipients: usize,
    /// PEM certificate chain and key: STARTTLS is offered when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Offer AUTH without TLS to clients that are not on loopback. Off:
    /// API keys would cross the network in clear.
    pub allow_plain_auth: bool,
}

impl SmtpConfig {
    /// `trusted_networks` parsed: `10.0.0.0/8`, or a lone address.
    pub fn trusted_networks(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.trusted_networks
            .items()
            .iter()
            .map(|n| {
                n.parse::<ipnet::IpNet>()
                    .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| anyhow::anyhow!("smtp.trusted_networks: `{n}` is not a network such as 127.0.0.0/8"))
            })
            .collect()
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            hostname: None,
            trusted_networks: StringList::Empty,
            max_message_bytes: 25 * 1024 * 1024,
            max_recipients: 1000,
            tls_cert: None,
            tls_key: None,
            allow_plain_auth: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// PostgreSQL pool size (SQLite: readers; it always has one writer).
    pub max_connections: u32,
    /// SQLite only: `full` (fsync every commit; the default) or `normal`.
    pub sqlite_synchronous: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { max_connections: 16, sqlite_synchronous: "full".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// First retry after about this long; doubles each time.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest wait between two tries.
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Give up (status `failed`) this long after accepting.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How long a node holds claimed work; a dead node's work is taken
    /// over after this.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Recipients claimed per query.
    pub batch_size: usize,
    /// Recipients being sent at once by this node.
    pub max_in_flight: usize,
    /// How often to look for work queued by other nodes.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// On shutdown, how long messages in flight may take to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Session failures in a row that open a transport's circuit.
    pub circuit_threshold: u32,
    /// How long an open circuit waits before one probe.
    #[serde(with = "humantime_serde")]
    pub circuit_cooldown: Duration,
    /// This node's name in leases and attempts (default: host-pid-random).
    pub node_name: Option<String>,
    /// Port of MX hosts for `kind = "mx"` transports (25; tests point it
    /// at a local sink).
    pub mx_port: u16,
    /// After no MX host of a domain answered, defer its mail without new
    /// connection attempts for this long (0s turns it off).
    #[serde(with = "humantime_serde")]
    pub dead_destination_backoff: Duration,
    /// Let `mx` transports deliver to MX hosts on loopback, private or
    /// link-local addresses (off: such MX records are not followed).
    pub mx_allow_private_addresses: bool,
    /// Limits and TLS policy per destination domain for `mx` transports,
    /// e.g. `[[delivery.destinations]] domain = "gmail.com"
    /// connections = 5  rate = "600/m"  tls = "required"`.
    pub destinations: Vec<DestinationConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    pub domain: String,
    /// Sessions at once to each of its MX hosts (default: the transport's
    /// `connections`).
    pub connections: Option<usize>,
    /// Messages per time unit to it, per node, e.g. `600/m`.
    pub rate: Option<String>,
    /// `opportunistic` (default: STARTTLS when offered) or `required`.
    pub tls: Option<String>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            retry_base: Duration::from_secs(30),
            retry_max_delay: Duration::from_secs(30 * 60),
            max_age: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(60),
            batch_size: 200,
            max_in_flight: 400,
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(20),
            circuit_threshold: 3,
            circuit_cooldown: Duration::from_secs(30),
            node_name: None,
            mx_port: 25,
            dead_destination_backoff: Duration::from_secs(60),
            mx_allow_private_addresses: false,
            destinations: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body, in bytes (413 above). Default 32 MiB.
    pub max_request_bytes: usize,
    /// Most recipients (to + cc + bcc) in one message.
    pub max_recipients: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { max_request_bytes: 32 * 1024 * 1024, max_recipients: 1000 }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Capture,
    Smtp,
    /// Direct delivery to each recipient domain's MX hosts.
    Mx,
    /// Amazon SES v2 (raw MIME, SigV4).
    Ses,
    /// Mailgun's MIME endpoint.
    Mailgun,
    /// SendGrid v3 mail send.
    Sendgrid,
    /// Postmark's email API.
    Postmark,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    pub name: String,
    pub kind: TransportKind,
    pub host: Option<String>,
    /// Default: 465 with `tls = "tls"`, else 587.
    pub port: Option<u16>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `none`, `starttls` (default) or `tls`.
    pub tls: Option<String>,
    /// Extra CA certificate (PEM) to trust, for private relays.
    pub ca_file: Option<PathBuf>,
    /// Parallel sessions to this relay.
    #[serde(default = "default_connections", alias = "connections")]
    pub max_connections: usize,
    /// Message rate limit for this transport, e.g. `300/m` (per node).
    pub rate: Option<String>,
    /// Price per 1,000 messages handed over, in US dollars (costs).
    pub cost_per_1000: Option<f64>,
    /// Name given in EHLO (default: the machine's host name).
    pub helo_name: Option<String>,
    /// Provider API base URL (EU regions, tests); each has its default.
    pub endpoint: Option<String>,
    /// SES: AWS region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// SES credentials.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// SES: configuration set for event publishing.
    pub configuration_set: Option<String>,
    /// Mailgun, SendGrid: API key; Postmark: server token.
    pub api_key: Option<Secret>,
    /// Mailgun: sending domain (default: the envelope sender's domain).
    pub domain: Option<String>,
    /// Postmark: message stream (default `outbound`).
    pub message_stream: Option<String>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
    #[serde(default = "default_data_timeout", with = "humantime_serde")]
    pub data_timeout: Duration,
}

fn default_connections() -> usize {
    8
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_data_timeout() -> Duration {
    Duration::from_secs(120)
}

impl TransportConfig {
    pub fn smtp(name: &str, host: &str) -> Self {
        Self {
            name: name.into(),
            kind: TransportKind::Smtp,
            host: Some(host.into()),
            port: None,
            username: None,
            password: None,
            tls: None,
            ca_file: None,
            max_connections: default_connections(),
            rate: None,
            cost_per_1000: None,
            helo_name: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            configuration_set: None,
            api_key: None,
            domain: None,
            message_stream: None,
            connect_timeout: default_connect_timeout(),
            command_timeout: default_command_timeout(),
            data_timeout: default_data_timeout(),
        }
    }

    pub fn tls_mode(&self) -> anyhow::Result<TlsMode> {
        match &self.tls {
            None => Ok(TlsMode::StartTls),
            Some(s) => s.parse().map_err(|e: String| anyhow::anyhow!("transport `{}`: {e}", self.name)),
        }
    }

    pub fn effective_port(&self) -> anyhow::Result<u16> {
        Ok(self.port.unwrap_or(if self.tls_mode()? == TlsMode::Tls { 465 } else { 587 }))
    }
}

/// Top-level keys an `EPISTLE_*` variable may set; others (such as
/// `EPISTLE_CONFIG` or test settings) are not configuration.
const ENV_KEYS: &[&str] = &[
    "routes",
    "database_url",
    "http_addr",
    "public_url",
    "bootstrap_api_key",
    "log",
    "smtp_addr",
    "smtp",
    "database",
    "delivery",
    "limits",
    "master_key",
    "master_key_file",
    "dns",
    "domains",
    "feedback",
    "hooks",
    "webhooks",
    "consumers",
];

impl Config {
    /// Loads defaults, the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("EPISTLE_").split("__").filter(|k| {
            // Figment may hand the key over before or after it
            // lower-cases and splits it; normalise both ways.
            let k = k.as_str().to_ascii_lowercase().replace("__", ".");
            ENV_KEYS.contains(&k.split('.').next().unwrap_or_default())
        }));
        let mut cfg: Config = fig.extract().map_err(|e| {
            let mut msg = String::new();
            for err in e {
                msg.push_str(&format!("\n  - {err}"));
            }
            anyhow::anyhow!("invalid configuration:{msg}")
        })?;
        cfg.apply_seed_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The names of the requirement documents: `SMTP_*` and
    /// `SMTP_FAILOVER_*` become the first two transports; `FRONTEND_URL`
    /// the public URL when `EPISTLE_PUBLIC_URL` is not set.
    pub fn apply_seed_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let mut seeded = Vec::new();
        for (prefix, name) in [("SMTP_", "primary"), ("SMTP_FAILOVER_", "failover")] {
            let Some(host) = get(&format!("{prefix}SERVER")).filter(|h| !h.trim().is_empty()) else { continue };
            let mut t = TransportConfig::smtp(name, host.trim());
            if let Some(p) = get(&format!("{prefix}PORT")).filter(|p| !p.is_empty()) {
                t.port = Some(p.trim().parse().with_context(|| format!("{prefix}PORT=`{p}` is not a port number"))?);
            }
            t.username = get(&format!("{prefix}USER")).filter(|u| !u.is_empty());
            t.password = get(&format!("{prefix}PASSWORD")).filter(|p| !p.is_empty()).map(Secret);
            t.tls = get(&format!("{prefix}TLS")).filter(|p| !p.is_empty());
            if t.tls.is_none() && t.port == Some(465) {
                t.tls = Some("tls".into());
            }
            t.tls_mode().with_context(|| format!("{prefix}TLS"))?;
            seeded.push(t);
        }
        if !seeded.is_empty() {
            seeded.append(&mut self.transports);
            self.transports = seeded;
        }
        if self.public_url.is_none() {
            self.public_url = get("FRONTEND_URL").filter(|u| !u.is_empty());
        }
        Ok(())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let mut names = std::collections::HashSet::new();
        for t in &self.transports {
            if !names.insert(t.name.clone()) {
                bail!("two transports are named `{}`; names must be unique", t.name);
            }
            let need = |what: &str, ok: bool| {
                if ok { Ok(()) } else { Err(anyhow::anyhow!("transport `{}` ({:?}) needs `{what}`", t.name, t.kind)) }
            };
            match t.kind {
                TransportKind::Ses => {
                    need("region", t.region.is_some())?;
                    need("access_key_id", t.access_key_id.is_some())?;
                    need("secret_access_key", t.secret_access_key.is_some())?;
                }
                TransportKind::Mailgun | TransportKind::Sendgrid | TransportKind::Postmark => {
                    need("api_key", t.api_key.is_some())?;
                }
                _ => {}
            }
            if let Some(e) = &t.endpoint
                && !(e.starts_with("https://") || e.starts_with("http://"))
            {
                bail!("transport `{}`: endpoint `{e}` must be an http(s) URL", t.name);
            }
            if t.kind == TransportKind::Smtp {
                if t.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
                    bail!("transport `{}` (smtp) needs a `host`", t.name);
                }
                t.tls_mode()?;
                if t.username.is_some() != t.password.is_some() {
                    bail!("transport `{}`: give both a username and a password, or neither", t.name);
                }
            }
        }
        self.smtp.trusted_networks()?;
        self.dns.servers()?;
        for d in &self.delivery.destinations {
            if let Some(r) = &d.rate {
                r.parse::<epistle_deliver::shaping::Rate>()
                    .map_err(|e| anyhow::anyhow!("delivery.destinations `{}`: {e}", d.domain))?;
            }
            match d.tls.as_deref() {
                None | Some("opportunistic") | Some("required") => {}
                Some(other) => {
                    bail!("delivery.destinations `{}`: tls = `{other}`; use `opportunistic` or `required`", d.domain)
                }
            }
        }
        if !self.domains.spf.trim().to_ascii_lowercase().starts_with("v=spf1") {
            bail!("domains.spf must be an SPF record starting with `v=spf1`, not `{}`", self.domains.spf);
        }
        if !self.domains.dmarc.trim().to_ascii_lowercase().starts_with("v=dmarc1") {
            bail!("domains.dmarc must be a DMARC record starting with `v=DMARC1`, not `{}`", self.domains.dmarc);
        }
        if !(1024..=4096).contains(&self.domains.rsa_bits) {
            bail!("domains.rsa_bits must be between 1024 and 4096 (2048 recommended)");
        }
        for a in self.domains.dkim_algorithms.items() {
            a.parse::<epistle_mail::dkim::Algorithm>().map_err(|e| anyhow::anyhow!("domains.dkim_algorithms: {e}"))?;
        }
        if self.smtp.tls_cert.is_some() != self.smtp.tls_key.is_some() {
            bail!("smtp.tls_cert and smtp.tls_key go together: give both or neither");
        }
        for t in &self.transports {
            if let Some(r) = &t.rate {
                r.parse::<epistle_deliver::shaping::Rate>()
                    .map_err(|e| anyhow::anyhow!("transport `{}`: rate {e}", t.name))?;
            }
            if t.cost_per_1000.is_some_and(|c| !(0.0..=1_000_000.0).contains(&c)) {
                bail!("transport `{}`: cost_per_1000 must be a price in dollars, 0 or more", t.name);
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.transports.is_empty() {
                bail!("routes[{i}] names no transports; list them in failover order");
            }
            for name in &r.transports {
                if !self.transports.iter().any(|t| &t.name == name) {
                    bail!("routes[{i}] names transport `{name}`, which is not among [[transports]]");
                }
            }
            if let Some(st) = &r.stream {
                st.parse::<epistle_core::Stream>().map_err(|e| anyhow::anyhow!("routes[{i}]: {e}"))?;
            }
        }
        match self.database.sqlite_synchronous.as_str() {
            "full" | "normal" => {}
            other => bail!("database.sqlite_synchronous = `{other}`: use `full` or `normal`"),
        }
        if self.delivery.batch_size == 0 || self.delivery.max_in_flight == 0 {
            bail!("delivery.batch_size and delivery.max_in_flight must be at least 1");
        }
        Ok(())
    }

    pub fn public_url(&self, bound: &str) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{bound}")).trim_end_matches('/').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn seed_names_make_primary_and_failover() {
        let env: HashMap<&str, &str> = [
            ("SMTP_SERVER", "smtp.sendgrid.example"),
            ("SMTP_PORT", "465"),
            ("SMTP_USER", "apikey"),
            ("SMTP_PASSWORD", "secret"),
            ("SMTP_FAILOVER_SERVER", "email-smtp.us-east-1.example"),
            ("SMTP_FAILOVER_TLS", "starttls"),
            ("FRONTEND_URL", "https://app.example"),
        ]
        .into();
        let mut c = Config::default();
        c.apply_seed_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        c.validate().unwrap();
        assert_eq!(c.transports.len(), 2);
        assert_eq!(c.transports[0].name, "primary");
        assert_eq!(c.transports[0].tls_mode().unwrap(), TlsMode::Tls, "port 465 means implicit TLS");
        assert_eq!(c.transports[1].effective_port().unwrap(), 587);
        assert_eq!(c.public_url.as_deref(), Some("https://app.example"));
        assert!(!format!("{c:?}").contains("\"secret\""), "secrets never print");
    }

    #[test]
    fn bad_values_are_explained() {
        let env: HashMap<&str, &str> = [("SMTP_SERVER", "x.example"), ("SMTP_PORT", "smtp")].into();
        let err = Config::default().apply_seed_env(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(format!("{err:#}").contains("not a port number"));
        let env: HashMap<&str, &str> = [("SMTP_SERVER", "x.example"), ("SMTP_TLS", "maybe")].into();
        let err = Config::default().apply_seed_env(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(format!("{err:#}").contains("none, starttls, tls or opportunistic"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the error type
    fn environment_overrides_and_unrelated_variables_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("EPISTLE_HTTP_ADDR", "127.0.0.1:0");
            jail.set_env("EPISTLE_DELIVERY__LEASE", "3s");
            jail.set_env("EPISTLE_DATABASE__MAX_CONNECTIONS", "4");
            jail.set_env("EPISTLE_TEST_POSTGRES_URL", "postgres://elsewhere/x");
            jail.set_env("EPISTLE_API_KEY", "ep_for_the_send_command");
            jail.set_env("EPISTLE_SMTP_ADDR", "127.0.0.1:0");
            jail.set_env("EPISTLE_SMTP__TRUSTED_NETWORKS", "127.0.0.0/8, 10.0.0.0/8");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.smtp_addr, "127.0.0.1:0");
            assert_eq!(c.smtp.trusted_networks.items(), vec!["127.0.0.0/8", "10.0.0.0/8"]);
            assert_eq!(c.http_addr, "127.0.0.1:0");
            assert_eq!(c.delivery.lease, Duration::from_secs(3));
            assert_eq!(c.database.max_connections, 4);
            jail.set_env("EPISTLE_DELIVERY__LEASE", "soon");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.to_ascii_lowercase().contains("delivery.lease") && err.contains("soon"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn bad_smtp_settings_are_named() {
        let mut c = Config::default();
        c.smtp.trusted_networks = StringList::One("127.0.0.0/8, nonsense".into());
        assert!(c.validate().unwrap_err().to_string().contains("`nonsense` is not a network"));
        c.smtp.trusted_networks = StringList::Many(vec!["10.0.0.0/8".into(), "192.0.2.7".into()]);
        assert_eq!(c.smtp.trusted_networks().unwrap().len(), 2, "a lone address is a /32");
        c.smtp.tls_cert = Some("/etc/epistle/smtp.crt".into());
        assert!(c.validate().unwrap_err().to_string().contains("tls_cert and smtp.tls_key go together"));
    }

    #[test]
    fn bad_dns_domains_destinations_and_provider_settings_are_named() {
        let check = |f: fn(&mut Config), want: &str| {
            let mut c = Config::default();
            f(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
        };
        check(
            |c| c.dns.nameservers = StringList::One("127.0.0.1:5353, dns.example".into()),
            "dns.nameservers: `dns.example`",
        );
        check(|c| c.domains.spf = "include:x".into(), "domains.spf must be an SPF record");
        check(|c| c.domains.dmarc = "p=none".into(), "domains.dmarc must be a DMARC record");
        check(|c| c.domains.rsa_bits = 512, "domains.rsa_bits");
        check(|c| c.domains.dkim_algorithms = StringList::One("rsa,dsa".into()), "unknown DKIM algorithm `dsa`");
        let dest = |tls: Option<&str>, rate: Option<&str>| DestinationConfig {
            domain: "gmail.com".into(),
            connections: None,
            rate: rate.map(Into::into),
            tls: tls.map(Into::into),
        };
        let mut c = Config::default();
        c.delivery.destinations.push(dest(Some("always"), None));
        assert!(c.validate().unwrap_err().to_string().contains("use `opportunistic` or `required`"));
        c.delivery.destinations = vec![dest(None, Some("fast"))];
        assert!(c.validate().unwrap_err().to_string().contains("delivery.destinations `gmail.com`"));
        c.delivery.destinations = vec![dest(Some("required"), Some("600/m"))];
        c.validate().unwrap();

        let provider = |kind: TransportKind| {
            let mut t = TransportConfig::smtp("p", "");
            t.kind = kind;
            t.host = None;
            t
        };
        for (kind, want) in [
            (TransportKind::Ses, "needs `region`"),
            (TransportKind::Mailgun, "needs `api_key`"),
            (TransportKind::Sendgrid, "needs `api_key`"),
            (TransportKind::Postmark, "needs `api_key`"),
        ] {
            let c = Config { transports: vec![provider(kind)], ..Config::default() };
            assert!(c.validate().unwrap_err().to_string().contains(want), "{kind:?}");
        }
        let mut t = provider(TransportKind::Postmark);
        t.api_key = Some(Secret("k".into()));
        t.endpoint = Some("api.postmarkapp.com".into());
        let c = Config { transports: vec![t], ..Config::default() };
        assert!(c.validate().unwrap_err().to_string().contains("must be an http(s) URL"));
        let c = Config { transports: vec![provider(TransportKind::Mx)], ..Config::default() };
        c.validate().unwrap();
    }

    #[test]
    fn the_shipped_example_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/epistle.toml");
        let c: Config =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::file(&path)).extract().unwrap();
        c.validate().unwrap();
        assert_eq!(c.transports.len(), 2);
        assert_eq!(c.delivery.max_age, Duration::from_secs(2 * 86400));
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("epistle.toml");
        std::fs::write(
            &path,
            "http_addr = \"127.0.0.1:9999\"\n[delivery]\nmax_age = \"2h\"\n\n[[transports]]\nname = \"relay\"\nkind = \"smtp\"\nhost = \"relay.example\"\ntls = \"none\"\nport = 2525\n",
        )
        .unwrap();
        let fig = Figment::from(Serialized::defaults(Config::default())).merge(Toml::file(&path));
        let c: Config = fig.extract().unwrap();
        assert_eq!(c.http_addr, "127.0.0.1:9999");
        assert_eq!(c.delivery.max_age, Duration::from_secs(7200));
        assert_eq!(c.delivery.retry_base, Duration::from_secs(30), "defaults fill the rest");
        assert_eq!(c.transports[0].effective_port().unwrap(), 2525);
        std::fs::write(
            &path,
            "[[transports]]\nname = \"ses\"\nkind = \"smtp\"\nhost = \"h.example\"\nrate = \"300/m\"\nconnections = 10\ncost_per_1000 = 0.10\n\n[[routes]]\nstream = \"transactional\"\ntransports = [\"ses\"]\n",
        )
        .unwrap();
        let c: Config =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::file(&path)).extract().unwrap();
        c.validate().unwrap();
        assert_eq!(c.transports[0].max_connections, 10);
        assert_eq!(c.routes[0].transports, vec!["ses"]);
        let mut bad = c.clone();
        bad.routes[0].transports = vec!["nope".into()];
        assert!(bad.validate().unwrap_err().to_string().contains("`nope`"));
        let mut bad = c;
        bad.transports[0].rate = Some("lots".into());
        assert!(bad.validate().unwrap_err().to_string().contains("300/m"));
        std::fs::write(&path, "[delivery]\nmax_agee = \"2h\"\n").unwrap();
        let err = Figment::from(Serialized::defaults(Config::default())).merge(Toml::file(&path)).extract::<Config>();
        assert!(err.unwrap_err().to_string().contains("max_agee"), "typos are refused, not ignored");
    }
}
