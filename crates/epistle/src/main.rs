//! `epistle`: parse the command line, start logging, hand over.

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: rendering, MIME building and JSON allocate many small,
/// short-lived objects, where it is faster than glibc's allocator (7 % on
/// the render benchmark, bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = epistle::cli::Cli::parse();
    let filter = std::env::var("EPISTLE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = epistle::cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
