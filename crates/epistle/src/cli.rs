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
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
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
    wait_for_signal().await?;
    tracing::info!("shutting down: finishing messages in flight");
    app.shutdown();
    app.wait().await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("signal handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("signal handler")?,
        _ = term.recv() => {}
    }
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
