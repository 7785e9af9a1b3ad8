//! Templates: a message's subject, HTML and text rendered from a tenant's
//! templates with MiniJinja (Jinja2 syntax).
//!
//! - HTML is auto-escaped; subject and text are not.
//! - Templates of the same tenant can include and extend each other by
//!   name and part: `{% extends "layout.html" %}`, `{% include
//!   "footer.txt" %}`.
//! - Undefined values are *semi-strict*: printing or iterating one is an
//!   error (so a typo is a 422 at accept time, never a broken mail), while
//!   `{% if x %}` and `{{ x | default("there") }}` work on missing data.
//! - Sandboxed: MiniJinja has no file or network access; every render runs
//!   on fuel, so a loop over a huge range or deep recursion ends in an
//!   error, and output is capped.
//!
//! A compiled [`Library`] (one tenant's templates at one point in time) is
//! meant to be cached and shared: MiniJinja keeps the compiled form of each
//! template it has loaded.

pub mod builtin;
mod data;
mod escape;
pub mod expr;
mod filters;
pub mod tracking;

use std::collections::HashMap;
use std::sync::Arc;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

/// Largest template part accepted (422 above).
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;
/// Largest rendered part.
pub const MAX_OUTPUT_BYTES: usize = 2 * 1024 * 1024;
/// Instructions one render may run. An order confirmation with 20 items
/// takes a few thousand; a runaway loop hits this in well under a second.
pub const FUEL: u64 = 2_000_000;

/// The parts of one template version. The HTML body comes from `mjml`
/// when given (MJML rendered to responsive HTML after the Jinja pass), else
/// from `html`. Without `text`, the text part is made from the HTML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    pub mjml: Option<String>,
    /// The preview line mail clients show after the subject.
    pub preheader: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rendered {
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
}

/// What went wrong, and where: the template, the part (`subject`, `html`,
/// `text`) and the line, for a 422 the sender can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("template `{template}` ({part}){}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct RenderError {
    pub template: String,
    pub part: String,
    pub line: Option<usize>,
    pub message: String,
}

const PARTS: [(&str, &str); 5] =
    [("subject", "subject"), ("preheader", "preheader"), ("mjml", "mjml"), ("html", "html"), ("text", "txt")];

fn part_of(source: &Source, part: &str) -> Option<String> {
    match part {
        "subject" => Some(source.subject.clone()),
        "html" => source.html.clone(),
        "txt" => source.text.clone(),
        "mjml" => source.mjml.clone(),
        "preheader" => source.preheader.clone(),
        _ => None,
    }
}

/// Splits `order.html` into (`order`, `html`).
fn split_name(full: &str) -> Option<(&str, &str)> {
    let (name, ext) = full.rsplit_once('.')?;
    PARTS.iter().any(|(_, e)| *e == ext).then_some((name, ext))
}

fn error(template: &str, part: &str, e: &minijinja::Error) -> RenderError {
    // The error may come from an included template; name the one it is in.
    let (template, part) = match e.name().and_then(split_name) {
        Some((n, p)) => (n.to_string(), if p == "txt" { "text".to_string() } else { p.to_string() }),
        None => (template.to_string(), part.to_string()),
    };
    let message = match e.kind() {
        ErrorKind::OutOfFuel => "the template did too much work (a loop too long, or recursion); it was stopped".into(),
        ErrorKind::UndefinedError => format!(
            "{}: give it in `data`, or write `{{{{ name | default(\"…\") }}}}` for optional values",
            e.detail().unwrap_or("a value is undefined")
        ),
        ErrorKind::TemplateNotFound => {
            format!(
                "{}: include other templates as `name.html`, `name.txt` or `name.subject`",
                e.detail().unwrap_or("")
            )
        }
        _ => match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        },
    };
    RenderError { template, part, line: e.line(), message }
}

/// One tenant's templates, compiled on first use.
pub struct Library {
    env: Environment<'static>,
    sources: Arc<Sources>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Library")
    }
}

/// A template as it is looked up by name (the active version of each).
pub type Sources = HashMap<String, Source>;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(100);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") || name.ends_with(".mjml") { AutoEscape::Html } else { AutoEscape::None }
    });
    env.set_formatter(escape::format);
    filters::register(&mut env);
    env
}

impl Library {
    /// A library over `sources`; templates are compiled when first used.
    pub fn new(sources: Sources) -> Self {
        let sources = Arc::new(sources);
        let mut env = environment();
        let loaded = sources.clone();
        env.set_loader(move |full| {
            let Some((name, ext)) = split_name(full) else { return Ok(None) };
            Ok(loaded.get(name).and_then(|s| part_of(s, ext)))
        });
        Self { env, sources }
    }

    /// Whether a template of this name exists (the tenant's or built in).
    pub fn contains(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// Renders template `name` (its active version) with `data`.
    pub fn render(&self, name: &str, data: &serde_json::Value) -> Result<Rendered, RenderError> {
        self.render_with(&self.env, name, data, None)
    }

    /// Renders `source` as if it were template `name` (an older version, or
    /// one not saved yet), with includes resolved in this library.
    pub fn render_source(
        &self,
        name: &str,
        source: &Source,
        data: &serde_json::Value,
    ) -> Result<Rendered, RenderError> {
        let mut env = self.env.clone();
        for (part, ext) in PARTS {
            if let Some(src) = part_of(source, ext) {
                env.add_template_owned(format!("{name}.{ext}"), src).map_err(|e| error(name, part, &e))?;
            }
        }
        // Only the parts `source` has: not those of a saved or built-in
        // template of the same name.
        self.render_with(&env, name, data, Some(source))
    }

    fn render_with(
        &self,
        env: &Environment<'static>,
        name: &str,
        data: &serde_json::Value,
        only: Option<&Source>,
    ) -> Result<Rendered, RenderError> {
        // `brand` is always there (empty when the tenant has none).
        let ctx = data::to_value(data);
        let mut parts: HashMap<&str, String> = HashMap::new();
        for (part, ext) in PARTS {
            if only.is_some_and(|o| part_of(o, ext).is_none()) {
                continue;
            }
            // An MJML body wins over an HTML one.
            if part == "html" && parts.contains_key("mjml") {
                continue;
            }
            let full = format!("{name}.{ext}");
            let tmpl = match env.get_template(&full) {
                Ok(t) => t,
                Err(e) if e.kind() == ErrorKind::TemplateNotFound && part != "subject" => continue,
                Err(e) => return Err(error(name, part, &e)),
            };
            // Written through a cap, so a template cannot build a huge
            // string before the size is checked.
            // Sized from the template's own length: a part's output is
            // usually a few times its source, so it rarely grows twice.
            let mut out =
                Capped { buf: Vec::with_capacity((tmpl.source().len() * 4).clamp(64, 64 * 1024)), over: false };
            let result = tmpl.render_captured_to(&ctx, &mut out).map(|_| ());
            if out.over {
                return Err(fail(name, part, format!("the output is larger than {MAX_OUTPUT_BYTES} bytes")));
            }
            result.map_err(|e| error(name, part, &e))?;
            // MiniJinja writes `str`s, so this is UTF-8; the lossy copy is
            // only a fallback.
            let text =
                String::from_utf8(out.buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            parts.insert(part, text);
        }
        let subject = parts.remove("subject").unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
        let mut html = match parts.remove("mjml") {
            Some(mjml) => Some(capped(name, "mjml", mjml_to_html(name, &mjml)?)?),
            None => parts.remove("html"),
        };
        if let Some(h) = html.take() {
            let inlined = capped(name, "html", inline_css(name, h)?)?;
            let preheader = parts.get("preheader").map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "));
            html = Some(match preheader.filter(|p| !p.is_empty()) {
                Some(p) => with_preheader(&inlined, &p),
                None => inlined,
            });
        }
        let text = match parts.remove("text") {
            Some(t) => Some(t),
            None => html.as_deref().map(html_to_text),
        };
        Ok(Rendered { subject, html, text })
    }
}

/// A buffer that refuses to grow past [`MAX_OUTPUT_BYTES`].
struct Capped {
    buf: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }
    // MiniJinja writes through `write_all`; std's default loops over
    // `write`, which showed in profiles for the many small pieces of a
    // template.
    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.buf.len() + buf.len() > MAX_OUTPUT_BYTES {
            self.over = true;
            return Err(std::io::Error::other("output too large"));
        }
        self.buf.extend_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capped(name: &str, part: &str, s: String) -> Result<String, RenderError> {
    if s.len() > MAX_OUTPUT_BYTES {
        return Err(fail(name, part, format!("the output is larger than {MAX_OUTPUT_BYTES} bytes")));
    }
    Ok(s)
}

fn fail(template: &str, part: &str, message: String) -> RenderError {
    RenderError { template: template.into(), part: part.into(), line: None, message }
}

/// MJML (already through Jinja) to responsive HTML, with mrml.
fn mjml_to_html(name: &str, mjml: &str) -> Result<String, RenderError> {
    let parsed = mrml::parse(mjml).map_err(|e| fail(name, "mjml", format!("not valid MJML: {e}")))?;
    // No web-font links: system fonts only, so mail loads nothing from third
    // parties (and renders the same offline).
    let opts = mrml::prelude::render::RenderOptions {
        disable_comments: true,
        fonts: Default::default(),
        ..Default::default()
    };
    parsed.element.render(&opts).map_err(|e| fail(name, "mjml", format!("cannot render the MJML: {e}")))
}

/// Copies the rules of `<style>` blocks onto the elements they match, for
/// clients that drop `<style>`; the blocks stay for media queries (dark
/// mode, narrow screens). HTML without `<style>` is left as it is.
fn inline_css(name: &str, html: String) -> Result<String, RenderError> {
    if !html.contains("<style") {
        return Ok(html);
    }
    let inliner = css_inline::CSSInliner::options().keep_style_tags(true).load_remote_stylesheets(false).build();
    inliner.inline(&html).map_err(|e| fail(name, "html", format!("cannot inline the CSS: {e}")))
}

/// The preheader as the first, hidden, text of the body.
fn with_preheader(html: &str, preheader: &str) -> String {
    let escaped = preheader.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let block = format!(
        "<div style=\"display:none;max-height:0;max-width:0;overflow:hidden;opacity:0;mso-hide:all\">{escaped}</div>"
    );
    let lower = html.to_ascii_lowercase();
    match lower.find("<body").and_then(|i| lower[i..].find('>').map(|j| i + j + 1)) {
        Some(at) => format!("{}{block}{}", &html[..at], &html[at..]),
        None => format!("{block}{html}"),
    }
}

/// A plain-text part from HTML: layout tables flattened (mail HTML is
/// tables all the way down), paragraphs and lists kept, links written out as
/// numbered references, hidden preview text left out, lines wrapped at 78.
pub fn html_to_text(html: &str) -> String {
    let visible = strip_hidden(html);
    let raw = html2text::config::plain()
        .raw_mode(true)
        .no_table_borders()
        .no_link_wrapping()
        .string_from_read(visible.as_bytes(), 78)
        .unwrap_or_default();
    // Trailing spaces off, runs of blank lines down to one.
    let mut out = String::with_capacity(raw.len());
    let mut blank = 0;
    for line in raw.lines().map(str::trim_end) {
        let decorative = !line.is_empty() && line.chars().all(|c| matches!(c, '─' | '━' | '-' | '═' | '│' | '┼' | ' '));
        if line.is_empty() || decorative {
            blank += 1;
            continue;
        }
        if blank > 0 && !out.is_empty() {
            out.push('\n');
        }
        blank = 0;
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// Removes elements hidden with `display:none` (preheaders, MJML's preview
/// text): they are for the inbox list, not for the text part. One pass,
/// whatever the number of hidden elements.
fn strip_hidden(html: &str) -> std::borrow::Cow<'_, str> {
    let lower = html.to_ascii_lowercase();
    if !lower.contains("display:none") {
        return std::borrow::Cow::Borrowed(html);
    }
    let mut out = String::with_capacity(html.len());
    let mut pos = 0;
    while let Some(rel) = lower[pos..].find("display:none") {
        let style_at = pos + rel;
        // The element whose style holds it: from the last `<div` before it
        // (not before what was already copied) to the next `</div>`.
        let open = lower[pos..style_at].rfind("<div").map(|o| pos + o);
        let close = lower[style_at..].find("</div>").map(|c| style_at + c + "</div>".len());
        match (open, close) {
            (Some(open), Some(close)) => {
                out.push_str(&html[pos..open]);
                pos = close;
            }
            _ => {
                let next = style_at + "display:none".len();
                out.push_str(&html[pos..next]);
                pos = next;
            }
        }
    }
    out.push_str(&html[pos..]);
    std::borrow::Cow::Owned(out)
}

/// Checks a template before it is saved: sizes and syntax of each part.
pub fn check(name: &str, source: &Source) -> Result<(), RenderError> {
    let env = environment();
    for (part, ext) in PARTS {
        let Some(src) = part_of(source, ext) else { continue };
        if src.len() > MAX_SOURCE_BYTES {
            return Err(RenderError {
                template: name.into(),
                part: part.into(),
                line: None,
                message: format!(
                    "larger than {MAX_SOURCE_BYTES} bytes; split it into templates that include each other"
                ),
            });
        }
        env.template_from_named_str(&format!("{name}.{ext}"), &src).map_err(|e| error(name, part, &e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lib(entries: &[(&str, Source)]) -> Library {
        Library::new(entries.iter().map(|(n, s)| (n.to_string(), s.clone())).collect())
    }

    fn src(subject: &str, html: Option<&str>, text: Option<&str>) -> Source {
        Source { subject: subject.into(), html: html.map(Into::into), text: text.map(Into::into), ..Default::default() }
    }

    #[test]
    fn mjml_becomes_responsive_html_with_a_text_part() {
        let mjml = r#"<mjml><mj-body><mj-section><mj-column>
            <mj-text font-size="16px">Hello {{ name }} &amp; co</mj-text>
            <mj-button href="https://shop.example/orders/{{ order }}">View order</mj-button>
            </mj-column></mj-section></mj-body></mjml>"#;
        let s = Source {
            subject: "Hi".into(),
            mjml: Some(mjml.into()),
            preheader: Some("Your order {{ order }} shipped".into()),
            ..Default::default()
        };
        let l = lib(&[("m", s)]);
        let r = l.render("m", &json!({"name": "Ana <x>", "order": 42})).unwrap();
        let html = r.html.unwrap();
        assert!(html.contains("@media"), "responsive CSS kept for clients that read <style>");
        assert!(html.contains("Hello Ana &lt;x&gt; &amp; co"), "{html}");
        assert!(html.contains("https://shop.example/orders/42"));
        // The preheader is the first, hidden, thing in the body.
        let body = &html[html.find("<body").unwrap()..];
        assert!(body.find("Your order 42 shipped").unwrap() < body.find("Hello").unwrap());
        let text = r.text.unwrap();
        assert!(text.contains("Hello Ana <x> & co"), "{text}");
        assert!(text.contains("https://shop.example/orders/42"), "links are kept in the text part: {text}");
        let bad = lib(&[(
            "b",
            Source { subject: "x".into(), mjml: Some("<mjml><mj-body><mj-text>".into()), ..Default::default() },
        )]);
        assert_eq!(bad.render("b", &json!({})).unwrap_err().part, "mjml");
    }

    #[test]
    fn css_in_style_blocks_is_inlined() {
        let html = "<html><head><style>.btn { color: #ffffff; } @media (max-width: 600px) { .btn { width: 100% } }</style></head>\
                    <body><a class=\"btn\" href=\"https://x.example\">Go</a></body></html>";
        let l = lib(&[("c", src("x", Some(html), None))]);
        let out = l.render("c", &json!({})).unwrap().html.unwrap();
        assert!(out.contains("style=\"color: #ffffff;\""), "{out}");
        assert!(out.contains("@media (max-width: 600px)"), "media queries stay: {out}");
    }

    #[test]
    fn html_is_escaped_subject_and_text_are_not() {
        let l = lib(&[("hi", src("Hi {{ name }}", Some("<p>{{ name }}</p>"), Some("Hi {{ name }}")))]);
        let r = l.render("hi", &json!({"name": "Tom & <Jerry>"})).unwrap();
        assert_eq!(r.subject, "Hi Tom & <Jerry>");
        assert_eq!(r.html.unwrap(), "<p>Tom &amp; &lt;Jerry&gt;</p>");
        assert_eq!(r.text.unwrap(), "Hi Tom & <Jerry>");
    }

    #[test]
    fn defaults_and_optional_values() {
        let l = lib(&[(
            "w",
            src(
                "Welcome {{ first_name | default(\"there\") }}",
                None,
                Some("{% if plan %}Plan {{ plan }}{% endif %}."),
            ),
        )]);
        let r = l.render("w", &json!({})).unwrap();
        assert_eq!(r.subject, "Welcome there");
        assert_eq!(r.text.unwrap(), ".");
        assert_eq!(r.html, None);
    }

    #[test]
    fn a_missing_value_names_template_part_and_line() {
        let l = lib(&[("o", src("Order", Some("<p>\n{{ order.totl }}\n</p>"), None))]);
        let e = l.render("o", &json!({"order": {"total": 3}})).unwrap_err();
        assert_eq!((e.template.as_str(), e.part.as_str(), e.line), ("o", "html", Some(2)));
        assert!(e.message.contains("default("), "{e}");
    }

    #[test]
    fn layouts_and_includes_between_templates() {
        let l = lib(&[
            ("layout", src("", Some("<main>{% block body %}{% endblock %}</main>{% include \"footer.html\" %}"), None)),
            ("footer", src("", Some("<small>{{ company }}</small>"), None)),
            ("page", src("S", Some("{% extends \"layout.html\" %}{% block body %}Hello{% endblock %}"), None)),
        ]);
        let r = l.render("page", &json!({"company": "Shop"})).unwrap();
        assert_eq!(r.html.unwrap(), "<main>Hello</main><small>Shop</small>");
        let e = l.render("o", &json!({})).unwrap_err();
        assert_eq!(e.part, "subject");
        let bad = lib(&[("p", src("S", Some("{% include \"nope.html\" %}"), None))]);
        assert!(bad.render("p", &json!({})).unwrap_err().message.contains("name.html"));
    }

    #[test]
    fn huge_output_and_many_hidden_elements_are_bounded() {
        let l = lib(&[
            ("big", src("x", None, Some("{% for i in range(30) %}{{ \"x\" * 100000 }}{% endfor %}"))),
            (
                "hidden",
                src(
                    "x",
                    Some("{% for i in range(20000) %}<div style=\"display:none\">h</div>{% endfor %}<p>shown</p>"),
                    None,
                ),
            ),
        ]);
        let e = l.render("big", &json!({})).unwrap_err();
        assert!(e.message.contains("larger than"), "{e}");
        let r = l.render("hidden", &json!({})).unwrap();
        assert_eq!(r.text.unwrap(), "shown");
    }

    #[test]
    fn runaway_templates_are_stopped() {
        let l = lib(&[
            ("loop", src("x", None, Some("{% for i in range(100000000) %}{{ i }}{% endfor %}"))),
            ("rec", src("x", None, Some("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"))),
        ]);
        let e = l.render("loop", &json!({})).unwrap_err();
        assert!(e.message.contains("too much work") || e.message.contains("range"), "{e}");
        assert!(l.render("rec", &json!({})).is_err());
    }

    #[test]
    fn syntax_errors_and_sizes_are_checked_before_saving() {
        let e = check("t", &src("ok", Some("<p>\n{% if x %}\n</p>"), None)).unwrap_err();
        assert_eq!((e.part.as_str(), e.template.as_str()), ("html", "t"));
        assert!(e.line.is_some(), "{e}");
        let big = "x".repeat(MAX_SOURCE_BYTES + 1);
        assert!(check("t", &src("ok", None, Some(&big))).unwrap_err().message.contains("larger than"));
        assert!(check("t", &src("Hi {{ name }}", Some("<p>{{ name }}</p>"), None)).is_ok());
    }

    #[test]
    fn an_unsaved_version_renders_against_the_library() {
        let l = lib(&[("footer", src("", None, Some("-- {{ company }}")))]);
        let draft = src("Draft", None, Some("Body\n{% include \"footer.txt\" %}"));
        let r = l.render_source("draft", &draft, &json!({"company": "Shop"})).unwrap();
        assert_eq!(r.text.unwrap(), "Body\n-- Shop");
    }
}
