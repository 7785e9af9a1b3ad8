//! The built-in library: every template renders its sample data into a
//! subject, responsive HTML and a text part, compared with the reviewed
//! snapshots in `tests/snapshots/` (`UPDATE_SNAPSHOTS=1` rewrites them after
//! a deliberate change; review the diff before committing).

use std::collections::HashMap;
use std::path::PathBuf;

use epistle_render::Library;
use epistle_render::builtin::{builtins, with_builtins};
use serde_json::json;

fn brand() -> serde_json::Value {
    json!({"company_name": "Acme & Co", "primary_color": "#1f6feb", "postal_address": "1 Market St, Springfield",
           "support_email": "help@acme.example", "logo_url": "https://acme.example/logo.png"})
}

fn snapshot(name: &str, got: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_SNAPSHOTS=1 and review it", path.display()));
    assert!(
        want == got,
        "{name} differs from its snapshot; if the change is meant, run with UPDATE_SNAPSHOTS=1 and review the diff"
    );
}

#[test]
fn every_builtin_renders_its_sample_data_as_snapshotted() {
    let lib = Library::new(with_builtins(HashMap::new()));
    let names: Vec<&str> = builtins().iter().map(|b| b.name).filter(|n| *n != "layout").collect();
    assert_eq!(names.len(), 12);
    for b in builtins().iter().filter(|b| b.name != "layout") {
        let mut data = b.sample_data.clone();
        assert!(data.is_object(), "{} has sample data", b.name);
        data["brand"] = brand();
        let r = lib.render(b.name, &data).unwrap_or_else(|e| panic!("{}: {e}", b.name));
        let html = r.html.clone().unwrap();
        let text = r.text.clone().unwrap();
        // Responsive, branded, no template syntax left, a real text part.
        assert!(html.contains("@media"), "{}: responsive CSS", b.name);
        assert!(html.contains("prefers-color-scheme: dark"), "{}: dark-mode rule", b.name);
        assert!(html.contains("name=\"viewport\""), "{}: viewport meta", b.name);
        assert!(html.contains("#1f6feb"), "{}: brand colour", b.name);
        assert!(html.contains("1 Market St, Springfield"), "{}: postal address in the footer", b.name);
        assert!(!html.contains("{{") && !html.contains("{%") && !r.subject.contains("{{"), "{}", b.name);
        assert!(!r.subject.is_empty() && !r.subject.contains('\n'), "{}", b.name);
        assert!(text.len() > 80 && !text.contains('<'), "{}: text part\n{text}", b.name);
        snapshot(&format!("{}.subject.txt", b.name), &r.subject);
        snapshot(&format!("{}.text.txt", b.name), &text);
        snapshot(&format!("{}.html", b.name), &html);
    }
}

#[test]
fn details_that_matter_per_template() {
    let lib = Library::new(with_builtins(HashMap::new()));
    let render = |name: &str, data: serde_json::Value| {
        let mut d = data;
        d["brand"] = brand();
        lib.render(name, &d).unwrap()
    };
    let b = |name: &str| epistle_render::builtin::builtin(name).unwrap().sample_data.clone();
    let order = render("order-confirmation", b("order-confirmation"));
    assert_eq!(order.subject, "Order #1042 confirmed");
    let t = order.text.unwrap();
    assert!(t.contains("$29.00") && t.contains("$82.90") && t.contains("Ceramic mug"), "{t}");
    assert!(order.html.unwrap().contains("https://shop.example/orders/1042"));

    // The team variant of the conversation summary.
    let mut conv = b("conversation-summary");
    conv["audience"] = json!("team");
    let team = render("conversation-summary", conv);
    assert_eq!(team.subject, "Call summary: Maria Garcia");
    assert!(team.html.unwrap().contains("https://crm.example/conversations/55"));
    let customer = render("conversation-summary", b("conversation-summary"));
    assert_eq!(customer.subject, "Our conversation on 20 November 2026");
    assert!(!customer.html.unwrap().contains("crm.example"), "the customer never sees the CRM link");

    // Escaping holds inside MJML too.
    let mut lead = b("lead-alert");
    lead["lead"]["name"] = json!("<script>x</script>");
    assert!(!render("lead-alert", lead).html.unwrap().contains("<script>x"));

    // Without any brand (no tenant brand set), the layout still renders.
    let plain = lib.render("password-reset", &b("password-reset")).unwrap();
    assert!(plain.html.unwrap().contains("#2563eb"), "the default colour");

    // Without a logo, the company name heads the mail.
    let mut d = b("welcome");
    d["brand"] = json!({"company_name": "Plain Co"});
    let r = lib.render("welcome", &d).unwrap();
    assert!(r.html.unwrap().contains("Plain Co"));
    assert_eq!(r.subject, "Welcome to Plain Co");

    // A tenant's own template of the same name replaces the built-in.
    let mut own = HashMap::new();
    own.insert(
        "welcome".to_string(),
        epistle_render::Source { subject: "Hi".into(), text: Some("Mine".into()), ..Default::default() },
    );
    let mine = Library::new(with_builtins(own)).render("welcome", &json!({})).unwrap();
    assert_eq!((mine.subject.as_str(), mine.text.as_deref()), ("Hi", Some("Mine")));
}

/// Escapes HTML for a `srcdoc` attribute.
fn attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Loads each page in frames `widths` wide in headless Chromium and
/// returns, per page and width, how wide its content is.
fn content_widths(pages: &[(String, String)], widths: &[u32]) -> Vec<(String, u32, u32)> {
    let mut doc = String::from("<!doctype html><html><head><title>pending</title></head><body>");
    for (name, html) in pages {
        for w in widths {
            doc.push_str(&format!(
                "<iframe data-name=\"{name}\" style=\"width:{w}px;height:600px;border:0\" srcdoc=\"{}\"></iframe>",
                attr(html)
            ));
        }
    }
    doc.push_str(
        "<script>window.addEventListener('load', () => { document.title = 'W' + [...document.querySelectorAll('iframe')]\
         .map(f => f.dataset.name + ':' + f.clientWidth + ':' + f.contentDocument.documentElement.scrollWidth).join(','); });</script>\
         </body></html>",
    );
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("preview.html");
    std::fs::write(&page, doc).unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1300,1000",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (apt-get install chromium; scripts/test-services.sh does)");
    let dom = String::from_utf8_lossy(&out.stdout);
    let title = dom.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).unwrap_or("");
    let list = title.strip_prefix('W').unwrap_or_else(|| panic!("the preview did not load: {title}"));
    list.split(',')
        .map(|e| {
            let mut p = e.rsplitn(3, ':');
            let content: u32 = p.next().unwrap().parse().unwrap();
            let frame: u32 = p.next().unwrap().parse().unwrap();
            (p.next().unwrap().to_string(), frame, content)
        })
        .collect()
}

#[test]
fn builtins_fit_phone_and_desktop_widths() {
    let lib = Library::new(with_builtins(HashMap::new()));
    let mut pages: Vec<(String, String)> = builtins()
        .iter()
        .filter(|b| b.name != "layout")
        .map(|b| {
            let mut d = b.sample_data.clone();
            d["brand"] = brand();
            // A logo that needs no network (a 1×1 PNG).
            d["brand"]["logo_url"] = json!(
                "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
            );
            (b.name.to_string(), lib.render(b.name, &d).unwrap().html.unwrap())
        })
        .collect();
    // A control that must fail the check: a fixed 700 px table.
    pages.push(("control".into(), "<table width=\"700\"><tr><td>too wide</td></tr></table>".into()));
    let measured = content_widths(&pages, &[375, 600]);
    assert_eq!(measured.len(), pages.len() * 2, "{measured:?}");
    for (name, frame, content) in &measured {
        if name == "control" {
            assert!(content > frame, "the check must see overflow: {name} {frame}px shows {content}px");
        } else {
            assert!(content <= frame, "{name} overflows a {frame}px screen: {content}px wide");
        }
    }
}
