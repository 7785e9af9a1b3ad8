//! Templates: versions, previews, sending with a template (the mail arrives
//! at the SMTP sink with the right parts), and bad templates refused.

use serde_json::{Value, json};

use crate::helpers::*;

fn order_template() -> Value {
    json!({
        "name": "order-confirmation",
        "subject": "Order #{{ order.number }} confirmed",
        "html": "<h1>Thanks, {{ customer.first_name | default(\"there\") }}!</h1>\n<ul>{% for i in order.items %}<li>{{ i.qty }} × {{ i.name }}: {{ i.price | money(order.currency) }}</li>{% endfor %}</ul>\n<p>Total {{ order.total | money(order.currency) }}</p>",
        "text": "Thanks, {{ customer.first_name | default(\"there\") }}!\n{% for i in order.items %}- {{ i.qty }} x {{ i.name }}\n{% endfor %}Total {{ order.total | money(order.currency) }}",
        "sample_data": {"customer": {"first_name": "Jane"}, "order": {"number": 1042, "currency": "USD", "total": 59.5, "items": [{"qty": 2, "name": "Mug", "price": 29.75}]}},
        "category": "transactional"
    })
}

fn data() -> Value {
    json!({"customer": {"first_name": "Ana <b>"}, "order": {"number": 7, "currency": "EUR", "total": 1234.5,
        "items": [{"qty": 1, "name": "Lamp & shade", "price": 1234.5}]}})
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn versions_preview_and_usage() {
    let t = spawn_app().await;
    let (s, v) = json_of(t.post("/v1/templates", &order_template()).await).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!((v["version"].as_i64(), v["active"].as_bool()), (Some(1), Some(true)));

    // Preview with the sample data, then with given data (HTML escaped, text not).
    let (s, p) = json_of(t.post("/v1/templates/order-confirmation/preview", &json!({})).await).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["subject"], "Order #1042 confirmed");
    assert!(p["html"].as_str().unwrap().contains("Thanks, Jane!"));
    let (_, p) = json_of(t.post("/v1/templates/order-confirmation/preview", &json!({"data": data()})).await).await;
    assert!(p["html"].as_str().unwrap().contains("Ana &lt;b&gt;"), "{p}");
    assert!(p["html"].as_str().unwrap().contains("Lamp &amp; shade"));
    assert!(p["text"].as_str().unwrap().contains("Thanks, Ana <b>!"));
    assert!(
        p["text"].as_str().unwrap().contains("Total 1.234,50 €") || p["text"].as_str().unwrap().contains("€1,234.50"),
        "{p}"
    );

    // PUT makes version 2 active; version 1 stays readable and usable.
    let mut v2 = order_template();
    v2["subject"] = json!("Your order {{ order.number }} is confirmed");
    let r = t.client.put(t.url("/v1/templates/order-confirmation")).bearer_auth(KEY).json(&v2).send().await.unwrap();
    let (s, v) = json_of(r).await;
    assert_eq!((s, v["version"].as_i64()), (200, Some(2)), "{v}");
    let old = t.get_json("/v1/templates/order-confirmation?version=1").await;
    assert_eq!(
        (old["subject"].as_str(), old["active"].as_bool()),
        (Some("Order #{{ order.number }} confirmed"), Some(false))
    );

    // Send with the active version and with version 1; uses are counted.
    let mut m = json!({"from": "Shop <orders@shop.example>", "to": "jane@customer.example", "template": "order-confirmation", "data": data()});
    let id = t.send(&m).await;
    m["template_version"] = json!(1);
    let id1 = t.send(&m).await;
    t.wait_status(&id, "sent").await;
    t.wait_status(&id1, "sent").await;
    let got = t.sink.received();
    let subjects: Vec<String> = got.iter().map(|r| r.header("Subject").unwrap_or_default()).collect();
    assert!(subjects.contains(&"Your order 7 is confirmed".to_string()), "{subjects:?}");
    assert!(subjects.contains(&"Order #7 confirmed".to_string()), "{subjects:?}");
    let parsed = mail_parser::MessageParser::default().parse(&got[0].data).unwrap();
    assert!(parsed.body_html(0).unwrap().contains("Lamp &amp; shade"));
    assert!(parsed.body_text(0).unwrap().contains("1 x Lamp & shade"));
    let list = t.get_json("/v1/templates").await;
    let mine = list["data"].as_array().unwrap().iter().find(|d| d["name"] == "order-confirmation").unwrap().clone();
    assert_eq!((mine["uses"].as_i64(), mine["builtin"].as_bool()), (Some(2), Some(false)), "{list}");
    let one = t.get_json("/v1/templates/order-confirmation").await;
    let uses: Vec<(i64, i64)> = one["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_i64().unwrap(), v["uses"].as_i64().unwrap()))
        .collect();
    assert_eq!(uses, vec![(2, 1), (1, 1)]);

    // A test send uses the sample data.
    let (s, v) =
        json_of(t.post("/v1/templates/order-confirmation/test", &json!({"to": "qa@shop.example"})).await).await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let msg = t.wait_status(&id, "sent").await;
    assert_eq!(msg["subject"], "Your order 1042 is confirmed");
    assert_eq!(msg["tags"], json!(["template-test"]));

    // Delete.
    assert_eq!(t.delete("/v1/templates/order-confirmation").await.status(), 204);
    // The tenant's own is gone; the built-in of that name shows again.
    assert_eq!(t.get_json("/v1/templates/order-confirmation").await["builtin"], true);
    assert_eq!(t.delete("/v1/templates/order-confirmation").await.status(), 409);
    t.stop().await;
}

#[tokio::test]
async fn a_shared_layout_and_batch_sends() {
    let t = spawn_app().await;
    let layout =
        json!({"name": "layout", "subject": "-", "html": "<div class=\"brand\">{% block body %}{% endblock %}</div>"});
    assert_eq!(t.post("/v1/templates", &layout).await.status(), 201);
    let welcome = json!({"name": "welcome", "subject": "Welcome {{ name }}",
        "html": "{% extends \"layout.html\" %}{% block body %}Hello {{ name }}{% endblock %}"});
    assert_eq!(t.post("/v1/templates", &welcome).await.status(), 201);
    let batch = json!({"messages": [
        {"from": "a@shop.example", "to": "x@customer.example", "template": "welcome", "data": {"name": "X"}},
        {"from": "a@shop.example", "to": "y@customer.example", "template": "welcome", "data": {}},
        {"from": "a@shop.example", "to": "z@customer.example", "template": "nope"}
    ]});
    let (s, v) = json_of(t.post("/v1/messages/batch", &batch).await).await;
    assert_eq!(s, 202, "{v}");
    let r = v["results"].as_array().unwrap();
    assert!(r[0]["id"].is_string(), "{v}");
    assert_eq!(r[1]["error"]["code"], "template_error", "{v}");
    assert!(r[1]["error"]["message"].as_str().unwrap().contains("welcome"), "{v}");
    assert_eq!(r[2]["error"]["field"], "template", "{v}");
    let id = r[0]["id"].as_str().unwrap();
    t.wait_status(id, "sent").await;
    assert!(
        t.sink.received()[0].text().contains("<div class=3D\"brand\">Hello X</div>")
            || t.sink.received()[0].text().contains("<div class=\"brand\">Hello X</div>")
    );

    // Changing the layout changes what is sent next (the compiled cache follows).
    let r = t
        .client
        .put(t.url("/v1/templates/layout"))
        .bearer_auth(KEY)
        .json(&json!({"subject": "-", "html": "<section>{% block body %}{% endblock %}</section>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, p) = json_of(t.post("/v1/templates/welcome/preview", &json!({"data": {"name": "Q"}})).await).await;
    assert_eq!(p["html"], "<section>Hello Q</section>");
    t.stop().await;
}

#[tokio::test]
async fn bad_templates_and_template_sends_are_refused_clearly() {
    let t = spawn_app().await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"name": "t", "subject": "x", "html": "<p>\n{% if a %}\n</p>"}), "html", "template_error"),
        (json!({"name": "t", "subject": "{{ x", "text": "b"}), "subject", "template_error"),
        (json!({"name": "t", "subject": "x"}), "html", "invalid_field"),
        (json!({"name": "T!", "subject": "x", "text": "b"}), "name", "invalid_field"),
        (json!({"subject": "x", "text": "b"}), "name", "invalid_field"),
        (json!({"name": "t", "subject": "x", "html": "<p>", "mjml": "<mjml/>"}), "mjml", "invalid_field"),
        (
            json!({"name": "t", "subject": "x", "text": "{{ a.b }}", "sample_data": {"a": 1}}),
            "sample_data",
            "template_error",
        ),
        (json!({"name": "t", "subject": "x", "text": "x".repeat(300 * 1024)}), "text", "template_error"),
        (json!({"name": "t", "subject": "x", "text": "b", "sample_data": [1]}), "sample_data", "invalid_request"),
    ];
    for (body, field, code) in cases {
        let (s, v) = json_of(t.post("/v1/templates", &body).await).await;
        assert_eq!(s, 422, "{v}");
        assert_eq!(v["error"]["field"], field, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    let (_, v) =
        json_of(t.post("/v1/templates", &json!({"name": "t", "subject": "x", "html": "<p>\n{% if a %}\n</p>"})).await)
            .await;
    assert!(v["error"]["message"].as_str().unwrap().contains("line"), "{v}");

    let runaway = json!({"name": "loop", "subject": "x", "text": "{% for i in range(n) %}{% for j in range(n) %}{{ i }}{% endfor %}{% endfor %}"});
    assert_eq!(t.post("/v1/templates", &runaway).await.status(), 201);
    let ok = json!({"name": "ok", "subject": "Hi {{ name }}", "text": "Hello {{ user.name }}"});
    assert_eq!(t.post("/v1/templates", &ok).await.status(), 201);
    assert_eq!(t.post("/v1/templates", &ok).await.status(), 409);

    let base = json!({"from": "a@shop.example", "to": "x@customer.example"});
    let with = |extra: Value| {
        let mut m = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let sends: Vec<(Value, &str)> = vec![
        (with(json!({"template": "ok", "data": {"name": "N"}})), "data"),
        (with(json!({"template": "ok", "subject": "x", "data": {}})), "template"),
        (with(json!({"template": "missing"})), "template"),
        (
            with(json!({"template": "ok", "template_version": 9, "data": {"name": "a", "user": {"name": "b"}}})),
            "template_version",
        ),
        (with(json!({"subject": "x", "text": "y", "data": {}})), "template"),
        (with(json!({"template": "loop", "data": {"n": 100000}})), "data"),
    ];
    for (m, field) in sends {
        let (s, v) = json_of(t.post("/v1/messages", &m).await).await;
        assert_eq!(s, 422, "{m}: {v}");
        assert_eq!(v["error"]["field"], field, "{m}: {v}");
    }
    let (_, v) = json_of(t.post("/v1/messages", &with(json!({"template": "ok", "data": {"name": "N"}}))).await).await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("`ok` (text), line 1") && msg.contains("default("), "{msg}");
    assert_eq!(t.sink.count(), 0, "nothing broken was sent");
    t.stop().await;
}

#[tokio::test]
async fn mjml_templates_with_brand_and_preheader_arrive_with_both_parts() {
    let t = spawn_app().await;
    let brand = json!({"company_name": "Shop & Co", "primary_color": "#1f6feb", "postal_address": "1 Market St, Springfield",
        "logo_url": "https://shop.example/logo.png", "support_email": "help@shop.example"});
    let r = t.client.put(t.url("/v1/brand")).bearer_auth(KEY).json(&brand).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mjml = r#"<mjml><mj-body><mj-section><mj-column>
        <mj-image src="{{ brand.logo_url }}" alt="{{ brand.company_name }}" width="120px" />
        <mj-text>Hi {{ name }}, your order shipped.</mj-text>
        <mj-button background-color="{{ brand.primary_color }}" href="{{ url }}">Track it</mj-button>
        <mj-text font-size="11px">{{ brand.company_name }} · {{ brand.postal_address }}</mj-text>
        </mj-column></mj-section></mj-body></mjml>"#;
    let tpl = json!({"name": "shipped", "subject": "Shipped, {{ name }}", "mjml": mjml, "preheader": "On its way to you",
        "sample_data": {"name": "Jane", "url": "https://track.example/1"}});
    let (s, v) = json_of(t.post("/v1/templates", &tpl).await).await;
    assert_eq!(s, 201, "{v}");
    let id = t
        .send(&json!({"from": "orders@shop.example", "to": "jane@customer.example", "template": "shipped",
        "data": {"name": "Jane", "url": "https://track.example/1Z"}}))
        .await;
    t.wait_status(&id, "sent").await;
    let got = &t.sink.received()[0];
    let parsed = mail_parser::MessageParser::default().parse(&got.data).unwrap();
    let html = parsed.body_html(0).unwrap().to_string();
    assert!(html.contains("@media"), "responsive HTML from MJML");
    assert!(html.contains("#1f6feb") && html.contains("Shop &amp; Co"), "brand values in the HTML");
    assert!(html.contains("On its way to you"), "preheader");
    let text = parsed.body_text(0).unwrap().to_string();
    assert!(text.contains("Hi Jane, your order shipped."), "{text}");
    assert!(text.contains("https://track.example/1Z"), "links kept in the generated text: {text}");
    assert!(text.contains("1 Market St"), "{text}");

    // Bad brand values are refused.
    for (body, field) in [
        (json!({"primary_color": "blue"}), "primary_color"),
        (json!({"logo_url": "javascript:alert(1)"}), "logo_url"),
        (json!({"support_email": "nope"}), "support_email"),
        (json!({"colour": "#000000"}), "colour"),
    ] {
        let r = t.client.put(t.url("/v1/brand")).bearer_auth(KEY).json(&body).send().await.unwrap();
        let (s, v) = json_of(r).await;
        assert_eq!(s, 422, "{v}");
        assert_eq!(v["error"]["field"], field, "{v}");
    }
    assert_eq!(t.get_json("/v1/brand").await["company_name"], "Shop & Co");
    t.stop().await;
}

#[tokio::test]
async fn the_builtin_library_is_there_and_can_be_replaced() {
    let t = spawn_app().await;
    let list = t.get_json("/v1/templates").await;
    let builtin: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["builtin"] == true)
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for name in [
        "order-confirmation",
        "shipping-notification",
        "user-invitation",
        "welcome",
        "password-reset",
        "appointment-confirmation",
        "appointment-reminder",
        "appointment-rescheduled",
        "appointment-cancelled",
        "lead-alert",
        "conversation-summary",
        "daily-digest",
    ] {
        assert!(builtin.contains(&name), "{name} missing from {builtin:?}");
    }
    let one = t.get_json("/v1/templates/password-reset").await;
    assert_eq!((one["builtin"].as_bool(), one["category"].as_str()), (Some(true), Some("account")));
    assert!(one["mjml"].as_str().unwrap().contains("<mj-button"));

    // Preview with its sample data, and send with the tenant's brand.
    let r = t
        .client
        .put(t.url("/v1/brand"))
        .bearer_auth(KEY)
        .json(&json!({"company_name": "Acme", "primary_color": "#0f766e"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, p) = json_of(t.post("/v1/templates/user-invitation/preview", &json!({})).await).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["subject"], "Sam Lee invited you to Acme Sales");
    assert!(p["html"].as_str().unwrap().contains("#0f766e"));
    let id = t.send(&json!({"from": "team@acme.example", "to": "new@customer.example", "template": "password-reset",
        "data": {"user": {"email": "new@customer.example"}, "reset_url": "https://app.example/r/1", "expires_in": "1 hour"}})).await;
    let v = t.wait_status(&id, "sent").await;
    assert_eq!(v["subject"], "Reset your password");
    let got = &t.sink.received()[0];
    let parsed = mail_parser::MessageParser::default().parse(&got.data).unwrap();
    assert!(parsed.body_html(0).unwrap().contains("https://app.example/r/1"));
    assert!(parsed.body_text(0).unwrap().contains("https://app.example/r/1"));

    // Built-ins cannot be deleted; PUT makes the tenant's own version.
    assert_eq!(t.delete("/v1/templates/welcome").await.status(), 409);
    let r = t
        .client
        .put(t.url("/v1/templates/welcome"))
        .bearer_auth(KEY)
        .json(&json!({"subject": "Hello from Acme", "text": "Welcome aboard."}))
        .send()
        .await
        .unwrap();
    let (s, v) = json_of(r).await;
    assert_eq!((s, v["version"].as_i64(), v["replaces_builtin"].as_bool()), (200, Some(1), Some(true)), "{v}");
    let (_, p) = json_of(t.post("/v1/templates/welcome/preview", &json!({"data": {}})).await).await;
    assert_eq!(p["subject"], "Hello from Acme");
    // Deleting the own version brings the built-in back.
    assert_eq!(t.delete("/v1/templates/welcome").await.status(), 204);
    assert_eq!(t.get_json("/v1/templates/welcome").await["builtin"], true);
    t.stop().await;
}
