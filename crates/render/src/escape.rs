//! How a value is written into the HTML part: Jinja2's escaping, not MiniJinja's.
//!
//! MiniJinja's HTML escaping also turns `/` into `&#x2f;`, so every link a
//! template prints becomes `https:&#x2f;&#x2f;shop.example&#x2f;…`. Browsers
//! decode that, but spam filters read heavily encoded URLs as obfuscation,
//! people reading the source cannot, and the same template renders
//! differently than under Jinja2. Here the five characters Jinja2
//! (markupsafe) escapes are escaped, the way it escapes them, so a template
//! brought over from Jinja2 renders byte for byte as it did there.

use minijinja::{AutoEscape, Error, Output, State, Value, value::ValueKind};

/// The environment's formatter (see `Environment::set_formatter`). Strings
/// and integers, nearly all that templates print, are written directly:
/// going through `Display` and `fmt::write` cost a tenth of a render.
pub(crate) fn format(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    let html = state.auto_escape() == AutoEscape::Html && !value.is_safe();
    if let Some(s) = value.as_str() {
        return if html { write_html(out, s) } else { out.write_str(s).map_err(Error::from) };
    }
    match value.kind() {
        ValueKind::Number if value.is_integer() => match value.as_i64() {
            Some(i) => out.write_str(itoa::Buffer::new().format(i)).map_err(Error::from),
            None => write!(out, "{value}").map_err(Error::from),
        },
        // Nothing to escape in what these print.
        ValueKind::Undefined | ValueKind::None | ValueKind::Bool | ValueKind::Number => {
            write!(out, "{value}").map_err(Error::from)
        }
        _ if html => write_html(out, &value.to_string()),
        _ => write!(out, "{value}").map_err(Error::from),
    }
}

/// `s` with `&`, `<`, `>`, `"` and `'` escaped as markupsafe does.
fn write_html(out: &mut Output, s: &str) -> Result<(), Error> {
    let bytes = s.as_bytes();
    let mut done = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&#34;",
            b'\'' => "&#39;",
            _ => continue,
        };
        // The escaped bytes are ASCII, so `done..i` is on char boundaries.
        out.write_str(&s[done..i])?;
        out.write_str(entity)?;
        done = i + 1;
    }
    out.write_str(&s[done..]).map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use minijinja::Environment;

    fn render(source: &str, ctx: Value) -> String {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_formatter(super::format);
        env.add_template("t.html", source).unwrap();
        env.get_template("t.html").unwrap().render(ctx).unwrap()
    }

    use super::*;

    #[test]
    fn escapes_what_jinja2_escapes_and_leaves_links_readable() {
        let out = render(
            "{{ s }}|{{ url }}|{{ n }}|{{ i }}|{{ big }}|{{ none }}|{{ b }}|{{ missing }}|{{ list }}|{{ s | safe }}",
            minijinja::context! {
                s => "Tom & \"Jerry\" <b>'s</b>",
                url => "https://shop.example/o/1?a=1&b=2",
                n => 12.5,
                i => -42,
                big => u64::MAX,
                none => (),
                b => true,
                list => vec!["<a>", "b"],
            },
        );
        assert_eq!(
            out,
            "Tom &amp; &#34;Jerry&#34; &lt;b&gt;&#39;s&lt;/b&gt;|https://shop.example/o/1?a=1&amp;b=2|12.5|-42|18446744073709551615|None|True||\
             [&#34;&lt;a&gt;&#34;, &#34;b&#34;]|Tom & \"Jerry\" <b>'s</b>"
        );
    }

    #[test]
    fn leaves_text_parts_alone_and_keeps_multibyte_text_whole() {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_formatter(format);
        env.add_template("t.txt", "{{ s }}").unwrap();
        let ctx = minijinja::context! { s => "<Zoë & Łukasz>" };
        assert_eq!(env.get_template("t.txt").unwrap().render(&ctx).unwrap(), "<Zoë & Łukasz>");
        assert_eq!(render("{{ s }}", ctx), "&lt;Zoë &amp; Łukasz&gt;");
    }
}
