//! The command line: help, migrate, keys, send, and clear failures.

use std::process::Output;

use epistle_testkit::{Engine, SinkConfig, SmtpSink, TestDb, wait_for};
use tokio::process::Command;

use crate::server;

async fn epistle(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_epistle"));
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("run epistle")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["keys", "create", "--help"],
        vec!["send", "--help"],
    ] {
        let out = epistle(&args, &[]).await;
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Usage"), "{args:?}: {}", text(&out.stdout));
    }
}

#[tokio::test]
async fn migrate_keys_and_send() {
    let db = TestDb::new(Engine::Sqlite).await;
    let env = [("EPISTLE_DATABASE_URL", db.url.as_str())];
    let out = epistle(&["migrate"], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("up to date"));

    let out =
        epistle(&["keys", "create", "--tenant", "acme", "--scopes", "messages:send", "messages:read"], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout).trim().to_string();
    assert!(key.starts_with("ep_") && key.len() == 35, "{key}");

    let sink = SmtpSink::start(SinkConfig::default()).await;
    let mut srv = server::start(&db.url, sink.port(), &[]).await;
    let out = epistle(
        &[
            "send",
            "--to",
            "jane@example.com",
            "--subject",
            "From the CLI",
            "--text",
            "hello",
            "--from",
            "cli@shop.example",
            "--server",
            &srv.base,
        ],
        &[("EPISTLE_API_KEY", key.as_str())],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"id\":\"msg_"), "{}", text(&out.stdout));
    wait_for("the CLI's message at the sink", std::time::Duration::from_secs(20), || async {
        (sink.count() == 1).then_some(())
    })
    .await;

    let out = epistle(
        &[
            "send",
            "--to",
            "jane@example.com",
            "--subject",
            "x",
            "--text",
            "y",
            "--server",
            &srv.base,
            "--api-key",
            "ep_wrong",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: server refused the message (401"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(srv.terminate().await.success());
}

#[tokio::test]
async fn bad_configuration_stops_with_the_reason() {
    let out = epistle(&["serve"], &[("EPISTLE_DELIVERY__LEASE", "soon"), ("EPISTLE_HTTP_ADDR", "127.0.0.1:0")]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("soon") && err.to_lowercase().contains("lease"), "{err}");

    let out =
        epistle(&["serve"], &[("EPISTLE_DATABASE_URL", "mysql://nope"), ("EPISTLE_HTTP_ADDR", "127.0.0.1:0")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("sqlite://PATH or postgres://"), "{}", text(&out.stderr));

    let out = epistle(&["serve", "--config", "/nonexistent/epistle.toml"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not exist"));
}
