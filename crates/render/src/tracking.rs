//! Open and click tracking in HTML: links rewritten to the tracking
//! endpoint, and a 1×1 pixel at the end of the body.
//!
//! The HTML is rewritten with `lol_html`, a streaming HTML rewriter, so
//! links in comments, scripts or attribute values that merely look like
//! tags are never touched. Only `http`/`https` links of `<a>` and `<area>`
//! are tracked; `mailto:`, `tel:`, anchors, links with template syntax
//! left in them and links marked `data-epistle-notrack` stay as written.

use lol_html::html_content::ContentType;
use lol_html::{RewriteStrSettings, element, rewrite_str};

/// Rewrites `html`: each trackable link becomes `link(url)` (when that
/// gives `Some`), and `pixel` (an image URL) is placed before `</body>`, or
/// at the end. HTML the rewriter cannot read is returned unchanged.
pub fn rewrite(html: &str, mut link: impl FnMut(&str) -> Option<String>, pixel: Option<&str>) -> String {
    let img = pixel.map(|src| {
        format!(
            "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;width:1px;height:1px;border:0;\">",
            escape_attr(src)
        )
    });
    let mut placed = false;
    let result = {
        let link = &mut link;
        let placed = &mut placed;
        let img = img.clone();
        rewrite_str(
            html,
            RewriteStrSettings {
                element_content_handlers: vec![
                    element!("a[href], area[href]", move |el| {
                        if el.has_attribute("data-epistle-notrack") {
                            el.remove_attribute("data-epistle-notrack");
                            return Ok(());
                        }
                        let Some(raw) = el.get_attribute("href") else { return Ok(()) };
                        let href = decode_entities(raw.trim());
                        if trackable(&href)
                            && let Some(new) = link(&href)
                        {
                            el.set_attribute("href", &new)?;
                        }
                        Ok(())
                    }),
                    element!("body", move |el| {
                        if let Some(img) = &img {
                            el.append(img, ContentType::Html);
                            *placed = true;
                        }
                        Ok(())
                    }),
                ],
                ..RewriteStrSettings::new()
            },
        )
    };
    match result {
        Ok(mut out) => {
            if let (Some(img), false) = (img, placed) {
                out.push_str(&img);
            }
            out
        }
        Err(_) => html.to_string(),
    }
}

fn trackable(href: &str) -> bool {
    let lower = href.get(..8).unwrap_or(href).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://"))
        && !href.contains("{{")
        && !href.contains("{%")
        && !href.chars().any(char::is_whitespace)
}

/// Decodes character references in an attribute value (`&amp;`,
/// `&#38;`, `&#x26;`, …) so that the link kept in a token is the one a
/// browser would follow.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..].find(';').map(|e| e + 1).filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                n if n.starts_with("#x") || n.starts_with("#X") => {
                    u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32)
                }
                n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(url: &str) -> Option<String> {
        Some(format!("https://t.example/c/{}", url.len()))
    }

    #[test]
    fn rewrites_web_links_and_adds_the_pixel_in_the_body() {
        let html = r##"<html><body><p><a href="https://shop.example/o/1?a=1&amp;b=2">Order</a>
<a href="mailto:help@shop.example">mail</a> <a href="#top">top</a> <a href="tel:+1555">call</a>
<a href="http://x.example" data-epistle-notrack>keep</a><!-- <a href="https://hidden.example"> --></p></body></html>"##;
        let mut seen = Vec::new();
        let out = rewrite(
            html,
            |u| {
                seen.push(u.to_string());
                wrap(u)
            },
            Some("https://t.example/o/abc"),
        );
        // The link handed over is the decoded attribute value.
        assert_eq!(seen, vec!["https://shop.example/o/1?a=1&b=2"]);
        assert!(out.contains(r#"<a href="https://t.example/c/32">Order</a>"#), "{out}");
        assert!(out.contains("mailto:help@shop.example") && out.contains("#top") && out.contains("tel:+1555"));
        assert!(out.contains(r#"<a href="http://x.example">keep</a>"#), "{out}");
        assert!(out.contains("<!-- <a href=\"https://hidden.example\"> -->"));
        let pixel = out.find("https://t.example/o/abc").unwrap();
        assert!(pixel < out.find("</body>").unwrap(), "{out}");
    }

    #[test]
    fn character_references_in_links_are_decoded() {
        assert_eq!(
            decode_entities("https://a.example/?a=1&amp;b=2&#38;c=3&#x26;d=4&unknown;"),
            "https://a.example/?a=1&b=2&c=3&d=4&unknown;"
        );
        assert_eq!(decode_entities("no refs"), "no refs");
        assert_eq!(decode_entities("&"), "&");
    }

    #[test]
    fn a_fragment_without_body_gets_the_pixel_at_the_end() {
        let out = rewrite("<p>Hi <a href='https://a.example'>x</a></p>", wrap, Some("https://t.example/o/x"));
        assert!(out.starts_with("<p>Hi <a href=\"https://t.example/c/17\">x</a></p>"), "{out}");
        assert!(out.ends_with("alt=\"\" style=\"display:block;width:1px;height:1px;border:0;\">"), "{out}");
    }

    #[test]
    fn template_syntax_and_spaces_are_not_tracked_and_no_pixel_means_none() {
        let html = r#"<a href="https://x.example/{{ id }}">a</a><a href="https://x.example/a b">b</a>"#;
        assert_eq!(rewrite(html, wrap, None), html);
    }
}
