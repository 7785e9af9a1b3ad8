//! The command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use epistle_core::SystemClock;
use epistle_http::{generate_api_key, hash_api_key};

use crate::config::Config;
use crate::startup;

#[derive(Parser, Debug)]
#[command(
    name = "epistle",
    version,
    about = "Epistle: transactional email, delivery and more, in one program",
    long_about = "Epistle accepts mail over an HTTP API, stores it durably and delivers it through SMTP relays \
                  (with failover), or captures it for inspection when no relay is configured.\n\n\
                  Start with `epistle serve`, then open http://127.0.0.1:8787/ and sign in with the key it prints."
)]
pub struct Cli {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, global = true, env = "EPISTLE_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API, web page, SMTP submission listener and delivery workers.
    Serve,
    /// Apply database migrations and exit (serve also does this at start).
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Send a message through a running server's API.
    Send(SendArgs),
    /// Sending domains: DKIM keys and the DNS records to publish.
    Domains {
        #[command(subcommand)]
        command: DomainsCommand,
    },
    /// Bounces: read returned mail and say why each recipient failed.
    Bounce {
        #[command(subcommand)]
        command: BounceCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum BounceCommand {
    /// Classify bounce, DSN, abuse-report (ARF) and auto-reply mails (needs no database).
    #[command(
        long_about = "Reads each FILE as one raw mail (RFC 5322, e.g. a .eml file) and prints one JSON line per \
                      file: {\"file\": ..., \"recipients\": [{\"email\", \"status\", \"reply_code\", \"reason\", \
                      \"hard_bounce\", \"feedback_type\"}]}. A hard bounce means the address itself is bad and \
                      should be suppressed. A file that cannot be read gives a line with \"error\" and a non-zero \
                      exit status at the end. Reasons are listed in docs/bounces.md."
    )]
    Classify {
        /// Mail files to classify.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainsCommand {
    /// Add a sending domain: makes its DKIM key(s) and prints the DNS records to publish.
    Add {
        /// The domain of your From addresses, e.g. shop.example.
        name: String,
        /// DKIM key algorithm; repeat for both (`--algorithm rsa --algorithm ed25519`).
        /// Default: domains.dkim_algorithms of the configuration (rsa).
        #[arg(long = "algorithm", value_parser = ["rsa", "ed25519"])]
        algorithms: Vec<String>,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Print the domain as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Look the domain's records up in DNS and say, per record, whether it is right.
    Verify {
        name: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// List the tenant's sending domains.
    List {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Make a new DKIM key; it signs once `verify` sees its DNS record (or at once with --now).
    Rotate {
        name: String,
        /// Sign with the new key at once, before its record is in DNS.
        #[arg(long)]
        now: bool,
        /// Rotate only this algorithm's key (default: every signing key).
        #[arg(long, value_parser = ["rsa", "ed25519"])]
        algorithm: Option<String>,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an API key and print it (it is shown only once).
    Create {
        /// Tenant the key belongs to (created if it does not exist).
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Scopes, e.g. `messages:send messages:read`; `*` is everything.
        #[arg(long, num_args = 1.., default_values_t = vec!["*".to_string()])]
        scopes: Vec<String>,
        /// A label to tell keys apart.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// Recipient (repeat for several).
    #[arg(long, required = true)]
    pub to: Vec<String>,
    #[arg(long)]
    pub subject: String,
    /// Plain-text body.
    #[arg(long)]
    pub text: Option<String>,
    /// HTML body.
    #[arg(long)]
    pub html: Option<String>,
    /// Sender, e.g. "Shop <orders@shop.example>".
    #[arg(long, default_value = "Epistle <epistle@localhost.localdomain>")]
    pub from: String,
    /// Server URL (default: http://<http_addr> of the configuration).
    #[arg(long, env = "EPISTLE_URL")]
    pub server: Option<String>,
    /// API key.
    #[arg(long, env = "EPISTLE_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    let env = |k: &str| std::env::var(k).ok();
    crate::logging::apply(&crate::logging::effective_filter(
        &cfg.log,
        env("EPISTLE_LOG").as_deref(),
        env("RUST_LOG").as_deref(),
    ))?;
    match cli.command {
        Command::Serve => serve(cfg).await,
        Command::Migrate => {
            let store = startup::connect_store(&cfg).await?;
            println!("database is up to date ({})", epistle_store::redact(&cfg.database_url));
            store.close().await;
            Ok(())
        }
        Command::Keys { command: KeysCommand::Create { tenant, scopes, name } } => {
            let store = startup::connect_store(&cfg).await?;
            let now = epistle_core::Clock::now_ms(&SystemClock);
            let t = store.ensure_tenant(&tenant, now).await?;
            let key = generate_api_key();
            store.create_api_key(&t.id, &name, &key[..10], &hash_api_key(&key), &scopes, now).await?;
            store.close().await;
            println!("{key}");
            eprintln!("API key for tenant `{tenant}` with scopes [{}]; it is shown only this once.", scopes.join(" "));
            Ok(())
        }
        Command::Send(args) => send(cfg, args).await,
        Command::Domains { command } => domains(cfg, command).await,
        Command::Bounce { command: BounceCommand::Classify { files } } => bounce_classify(&files),
    }
}

/// `epistle bounce classify FILE…`: one JSON line per file; no database, no network.
fn bounce_classify(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for file in files {
        let line = match std::fs::read(file) {
            Ok(raw) => {
                let recipients: Vec<serde_json::Value> = epistle_mail::bounce::classify_mail(&raw)
                    .into_iter()
                    .map(|r| {
                        serde_json::json!({
                            "email": r.email,
                            "status": r.status,
                            "reply_code": r.reply_code,
                            "reason": r.reason.as_str(),
                            "hard_bounce": r.hard_bounce,
                            "feedback_type": r.feedback_type,
                        })
                    })
                    .collect();
                serde_json::json!({ "file": file.display().to_string(), "recipients": recipients })
            }
            Err(e) => {
                failed += 1;
                serde_json::json!({ "file": file.display().to_string(), "error": e.to_string() })
            }
        };
        println!("{line}");
    }
    if failed > 0 {
        bail!("{failed} of {} file(s) could not be read", files.len());
    }
    Ok(())
}

async fn domains(cfg: Config, command: DomainsCommand) -> anyhow::Result<()> {
    let store = startup::connect_store(&cfg).await?;
    let (_keyring, service, _) = crate::secrets::domain_service(&cfg, &store).await?;
    let now = epistle_core::Clock::now_ms(&SystemClock);
    let tenant_id = |name: String| {
        let store = store.clone();
        async move { store.tenant_by_name(&name).await?.map(|t| t.id).with_context(|| format!("no tenant `{name}`")) }
    };
    let result = match command {
        DomainsCommand::Add { name, algorithms, tenant, json } => {
            let tenant = store.ensure_tenant(&tenant, now).await?;
            let algs: Vec<_> = algorithms.iter().filter_map(|a| a.parse().ok()).collect();
            eprintln!("making the DKIM key(s) for {name}…");
            let d = service.add(&tenant.id, &name, &algs, now).await?;
            print_domain(&d, json);
            if !json {
                println!();
                println!("Publish these records at your DNS host, then run `epistle domains verify {}`.", d.name);
            }
            Ok(())
        }
        DomainsCommand::Verify { name, tenant, json } => {
            let d = service.verify(&tenant_id(tenant).await?, &name, now).await?;
            print_domain(&d, json);
            if d.status != "verified" && !json {
                bail!(
                    "{} is not verified yet: publish the records marked missing or mismatch, then verify again",
                    d.name
                );
            }
            Ok(())
        }
        DomainsCommand::List { tenant, json } => {
            let list = service.list(&tenant_id(tenant).await?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no sending domains yet; add one with `epistle domains add shop.example`");
            } else {
                for d in &list {
                    let keys: Vec<String> = d
                        .dkim
                        .keys
                        .iter()
                        .filter(|k| k.signing)
                        .map(|k| format!("{} ({})", k.selector, k.algorithm))
                        .collect();
                    println!("{:<32} {:<10} signing with {}", d.name, d.status, keys.join(", "));
                }
            }
            Ok(())
        }
        DomainsCommand::Rotate { name, algorithm, tenant, json, now: immediate } => {
            let alg = algorithm.as_deref().and_then(|a| a.parse().ok());
            let d = service.rotate(&tenant_id(tenant).await?, &name, alg, immediate, now).await?;
            print_domain(&d, json);
            Ok(())
        }
    };
    store.close().await;
    result
}

fn print_domain(d: &epistle_deliver::domains::DomainView, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(d).unwrap_or_default());
        return;
    }
    println!("{}  ({})", d.name, d.status);
    for r in &d.records {
        let status =
            serde_json::to_value(&r.status).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let optional = if r.required { "" } else { ", recommended" };
        println!();
        println!("  {} {} record ({status}{optional})", r.purpose.to_uppercase(), r.kind);
        println!("    name:  {}", r.name);
        println!("    value: {}", r.value);
        if let Some(found) =
            r.found.as_ref().filter(|f| !f.is_empty() && r.status != epistle_deliver::domains::RecordStatus::Verified)
        {
            println!("    found: {}", found.join(" | "));
        }
        if let Some(detail) = &r.detail {
            println!("    note:  {detail}");
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    // Listen for SIGTERM before anything can be asked to stop us: a signal
    // that came during startup would otherwise kill the process outright.
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("signal handler")?;
    let app = startup::build(cfg.clone(), Arc::new(SystemClock)).await?;
    println!("Epistle listening on http://{}", app.http_addr);
    if let Some(smtp) = app.smtp_addr {
        println!("SMTP submission on {smtp} (AUTH with an API key as the password)");
    }
    println!("Delivery: {}", app.delivery_mode);
    if let Some(key) = &app.generated_key {
        println!();
        println!("Created tenant `default` and its first API key. It is shown only this once; keep it:");
        println!();
        println!("    {key}");
        println!();
        println!("Open http://{}/ and sign in with it, or send a first message:", app.http_addr);
        println!(
            "    curl -X POST http://{}/v1/messages -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n      -d '{{\"from\":\"you@example.com\",\"to\":\"friend@example.com\",\"subject\":\"Hello\",\"text\":\"It works!\"}}'",
            app.http_addr
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("signal handler")?,
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing messages in flight");
    app.shutdown();
    app.wait().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn send(cfg: Config, a: SendArgs) -> anyhow::Result<()> {
    if a.text.is_none() && a.html.is_none() {
        bail!("give a body with --text, --html or both");
    }
    let server = a.server.unwrap_or_else(|| format!("http://{}", cfg.http_addr));
    let body = serde_json::json!({
        "from": a.from, "to": a.to, "subject": a.subject, "text": a.text, "html": a.html,
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", server.trim_end_matches('/')))
        .bearer_auth(&a.api_key)
        .json(&body)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach Epistle at {server}; is `epistle serve` running? (--server / EPISTLE_URL)")
        })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let msg = v["error"]["message"].as_str().unwrap_or(&text).to_string();
        bail!("server refused the message ({status}): {msg}");
    }
    println!("{text}");
    Ok(())
}
