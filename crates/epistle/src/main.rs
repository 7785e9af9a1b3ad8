//! `epistle`: parse the command line, start logging, hand over.

use clap::Parser;

/// mimalloc: rendering, MIME building and JSON allocate many small,
/// short-lived objects, where it is faster than glibc's allocator (7 % on
/// the render benchmark, bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = epistle::cli::Cli::parse();
    epistle::logging::init();
    if let Err(e) = epistle::cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
