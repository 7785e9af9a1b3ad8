use crate::helpers::*;

#[tokio::test]
async fn web_page_lists_and_shows_captured_mail() {
    let app = spawn(Options { relay: false, ..Default::default() }).await;
    let mut m = message("jane@example.com");
    m["subject"] = serde_json::json!("Welcome <aboard>");
    m["html"] = serde_json::json!("<h1>Hello</h1><script>alert(1)</script>");
    let id = app.send(&m).await;
    app.wait_status(&id, "sent").await;

    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sign in"), "asks for a key first");

    let r =
        client.post(app.url("/ui/login")).form(&[("key", "ep_wrongwrongwrongwrongwrongwrong00")]).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("not known"));
    let r = client.post(app.url("/ui/login")).form(&[("key", KEY)]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly"));

    let list = client.get(app.url("/")).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
    assert!(list.contains("Welcome &lt;aboard&gt;"), "subjects are escaped: {list}");
    assert!(list.contains(&id));

    let show = client.get(app.url(&format!("/ui/messages/{id}"))).header("cookie", &cookie).send().await.unwrap();
    assert!(show.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let show = show.text().await.unwrap();
    assert!(show.contains("sandbox=\"\""), "mail HTML is shown in a sandboxed frame");
    assert!(!show.contains("<script>"), "and never inline");
    assert!(show.contains("Thanks for your order."), "text part shown");
    assert!(show.contains("Message-ID"), "headers shown");
    app.stop().await;
}
