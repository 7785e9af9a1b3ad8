//! Renders a template file (`{"subject", "html", "text", "data"}`) N times
//! and prints renders per second: the Rust side of bench/render.sh.
//!
//!     cargo run --release -p epistle-render --example render_bench -- FILE N [BUILTIN]
//!
//! With BUILTIN (e.g. `order-confirmation`), that built-in MJML template
//! renders the file's data instead of the file's own template: the cost of
//! the full MJML pipeline (Jinja, mrml, CSS inlining, text from HTML).
//!
//! With `RENDER_OUT=DIR`, the first render's parts are written to
//! `DIR/epistle.{subject,html,text}` so bench/render.sh can check that both
//! engines produced the same bytes.

use std::time::Instant;

use epistle_render::{Library, Source};

/// The allocator of the `epistle` binary, so this measures what the server does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: render_bench FILE N");
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read the file")).expect("JSON");
    let source = Source {
        subject: doc["subject"].as_str().unwrap_or_default().into(),
        html: doc["html"].as_str().map(Into::into),
        text: doc["text"].as_str().map(Into::into),
        ..Default::default()
    };
    let builtin = args.next();
    let lib = match &builtin {
        Some(_) => Library::new(epistle_render::builtin::with_builtins(Default::default())),
        None => Library::new([("order-confirmation".to_string(), source)].into_iter().collect()),
    };
    let name = builtin.as_deref().unwrap_or("order-confirmation");
    let data = &doc["data"];
    let first = lib.render(name, data).expect("renders");
    if let Some(dir) = std::env::var_os("RENDER_OUT") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::write(dir.join("epistle.subject"), &first.subject).expect("write the subject");
        std::fs::write(dir.join("epistle.html"), first.html.as_deref().unwrap_or_default()).expect("write the HTML");
        std::fs::write(dir.join("epistle.text"), first.text.as_deref().unwrap_or_default()).expect("write the text");
    }
    let mut bytes = 0;
    let t0 = Instant::now();
    for _ in 0..n {
        let r = lib.render(name, data).expect("renders");
        bytes += r.subject.len() + r.html.map_or(0, |h| h.len()) + r.text.map_or(0, |t| t.len());
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "epistle-render (MiniJinja{}): {n} renders in {dt:.2} s = {:.0} renders/s ({} bytes each; subject: {})",
        if builtin.is_some() { ", built-in MJML" } else { "" },
        n as f64 / dt,
        bytes / n,
        first.subject
    );
}
