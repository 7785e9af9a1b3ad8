//! Every kind of bad input gets the JSON error of the API contract, with a
//! useful message, and never a 500.

use serde_json::{Value, json};

use crate::helpers::*;

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    idempotency_key: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
}

fn with(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut m = message("jane@example.com");
    f(&mut m);
    serde_json::to_vec(&m).unwrap()
}

fn case(name: &'static str, body: Vec<u8>, status: u16, code: &'static str, field: Option<&'static str>) -> Case {
    Case {
        name,
        method: "POST",
        path: "/v1/messages",
        content_type: Some("application/json"),
        idempotency_key: None,
        body,
        status,
        code,
        field,
    }
}

fn get(name: &'static str, path: &'static str, status: u16, code: &'static str, field: Option<&'static str>) -> Case {
    Case { name, method: "GET", path, content_type: None, idempotency_key: None, body: vec![], status, code, field }
}

#[tokio::test]
async fn bad_input_table() {
    let app = spawn(Options { tweak: |c| c.limits.max_request_bytes = 256 * 1024, ..Default::default() }).await;
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}@example.com")).collect();
    let cases = vec![
        case("malformed json", b"{\"from\": ".to_vec(), 400, "malformed_json", None),
        case("trailing garbage", b"{} x".to_vec(), 400, "malformed_json", None),
        case("not utf-8", vec![0xff, 0xfe, b'{'], 400, "malformed_json", None),
        case("array instead of object", b"[1,2]".to_vec(), 422, "invalid_request", None),
        case("wrong type", with(|m| m["subject"] = json!(5)), 422, "invalid_request", Some("subject")),
        case("unknown field", with(|m| m["suject"] = json!("typo")), 422, "invalid_request", None),
        case(
            "missing from",
            with(|m| {
                m.as_object_mut().unwrap().remove("from");
            }),
            422,
            "invalid_request",
            None,
        ),
        case("invalid from", with(|m| m["from"] = json!("orders at shop")), 422, "invalid_field", Some("from")),
        case(
            "invalid to item",
            with(|m| m["to"] = json!(["ok@example.com", "bad@"])),
            422,
            "invalid_field",
            Some("to[1]"),
        ),
        case("to of wrong type", with(|m| m["to"] = json!(42)), 422, "invalid_field", Some("to")),
        case(
            "no recipients",
            with(|m| {
                m.as_object_mut().unwrap().remove("to");
            }),
            422,
            "invalid_field",
            Some("to"),
        ),
        case(
            "missing body",
            with(|m| {
                m["text"] = json!(null);
                m["html"] = json!(null);
            }),
            422,
            "invalid_field",
            Some("text"),
        ),
        case(
            "missing subject",
            with(|m| {
                m.as_object_mut().unwrap().remove("subject");
            }),
            422,
            "invalid_field",
            Some("subject"),
        ),
        case(
            "CRLF in subject",
            with(|m| m["subject"] = json!("Hi\r\nBcc: victim@example.com")),
            422,
            "invalid_field",
            Some("subject"),
        ),
        case(
            "LF in header value",
            with(|m| m["headers"] = json!({"X-Order": "1\nBcc: v@example.com"})),
            422,
            "invalid_field",
            Some("headers.X-Order"),
        ),
        case(
            "CRLF in header name",
            with(|m| m["headers"] = json!({"X-A\r\nBcc": "v@example.com"})),
            422,
            "invalid_field",
            None,
        ),
        case(
            "reserved header",
            with(|m| m["headers"] = json!({"Bcc": "v@example.com"})),
            422,
            "invalid_field",
            Some("headers.Bcc"),
        ),
        case(
            "CRLF in display name",
            with(|m| m["from"] = json!("Shop\r\nBcc: v@example.com <orders@shop.example>")),
            422,
            "invalid_field",
            Some("from"),
        ),
        case(
            "CR in reply_to",
            with(|m| m["reply_to"] = json!("a@example.com\r")),
            422,
            "invalid_field",
            Some("reply_to"),
        ),
        case(
            "CRLF in attachment name",
            with(|m| m["attachments"] = json!([{"filename": "a\r\n.pdf", "content": "AA=="}])),
            422,
            "invalid_field",
            Some("attachments[0].filename"),
        ),
        case(
            "invalid send_at",
            with(|m| m["send_at"] = json!("tomorrow at noon")),
            422,
            "invalid_field",
            Some("send_at"),
        ),
        case(
            "invalid base64",
            with(|m| m["attachments"] = json!([{"filename": "a.pdf", "content": "%%%not base64%%%"}])),
            422,
            "invalid_field",
            Some("attachments[0].content"),
        ),
        case(
            "bad content type",
            with(|m| m["attachments"] = json!([{"filename": "a.pdf", "content_type": "pdf", "content": "AA=="}])),
            422,
            "invalid_field",
            Some("attachments[0].content_type"),
        ),
        case("unknown stream", with(|m| m["stream"] = json!("marketing")), 422, "invalid_field", Some("stream")),
        case("too many recipients", with(|m| m["to"] = json!(many)), 422, "too_many_recipients", None),
        case("oversized request", with(|m| m["text"] = json!("x".repeat(300 * 1024))), 413, "payload_too_large", None),
        Case {
            content_type: Some("text/plain"),
            ..case("wrong content type", with(|_| {}), 415, "unsupported_media_type", None)
        },
        Case {
            idempotency_key: Some("has spaces in it"),
            ..case("bad idempotency key", with(|_| {}), 400, "invalid_idempotency_key", None)
        },
        Case {
            path: "/v1/messages/batch",
            ..case("batch of nothing", b"{\"messages\": []}".to_vec(), 422, "invalid_field", Some("messages"))
        },
        Case {
            path: "/v1/messages/batch",
            ..case("batch not a list", b"{\"messages\": 3}".to_vec(), 422, "invalid_request", Some("messages"))
        },
        get("unknown message", "/v1/messages/msg_01jzzzzzzzzzzzzzzzzzzzzzzz", 404, "not_found", None),
        get("garbage message id", "/v1/messages/..%2F..%2Fetc", 404, "not_found", None),
        get("unknown raw", "/v1/messages/msg_nope/raw", 404, "not_found", None),
        get("bad status filter", "/v1/messages?status=lost", 422, "invalid_field", Some("status")),
        get("bad limit", "/v1/messages?limit=0", 422, "invalid_field", Some("limit")),
        get("bad since", "/v1/messages?since=yesterday", 422, "invalid_field", Some("since")),
        get("bad recipient filter", "/v1/messages?recipient=nobody", 422, "invalid_field", Some("recipient")),
        get("unknown parameter", "/v1/messages?stauts=sent", 422, "invalid_field", Some("stauts")),
        get("forged cursor", "/v1/messages?cursor=bm90LWEtY3Vyc29y", 400, "invalid_cursor", Some("cursor")),
        get("unknown endpoint", "/v1/nothing-here", 404, "not_found", None),
        Case { method: "DELETE", ..get("wrong method", "/v1/messages", 405, "method_not_allowed", None) },
    ];

    let mut failures = Vec::new();
    for c in cases {
        let mut req = match c.method {
            "GET" => app.client.get(app.url(c.path)),
            "DELETE" => app.client.delete(app.url(c.path)),
            _ => app.client.post(app.url(c.path)).body(c.body.clone()),
        }
        .bearer_auth(KEY);
        if let Some(ct) = c.content_type {
            req = req.header("content-type", ct);
        }
        if let Some(k) = c.idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        let ok = status == c.status
            && v["error"]["code"] == c.code
            && msg.len() > 10
            && c.field.is_none_or(|f| v["error"]["field"] == f);
        if !ok {
            failures.push(format!("{}: got {status} {text}", c.name));
        }
    }
    assert!(failures.is_empty(), "cases that failed:\n{}", failures.join("\n"));
    assert_eq!(app.sink.count(), 0, "no bad request sent anything");
    let list = app.get_json("/v1/messages").await;
    assert_eq!(list["data"], json!([]), "and none was stored");
    app.stop().await;
}
