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
        vec!["domains", "add", "--help"],
        vec!["domains", "verify", "--help"],
        vec!["domains", "list", "--help"],
        vec!["domains", "rotate", "--help"],
        vec!["bounce", "classify", "--help"],
    ] {
        let out = epistle(&args, &[]).await;
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Usage"), "{args:?}: {}", text(&out.stdout));
    }
}

#[tokio::test]
async fn bounce_classify_reads_files_without_a_database() {
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpora/bounces/eml");
    let dsn = format!("{corpus}/rfc3464-26.eml");
    let arf = format!("{corpus}/arf-14.eml");
    let missing = format!("{corpus}/no-such-file.eml");
    // No database URL, no configuration file: the command must not need them.
    let dir = tempfile::tempdir().unwrap();
    let out = epistle(&["bounce", "classify", &dsn, &arf, &missing], &[("HOME", dir.path().to_str().unwrap())]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0]["file"], dsn.as_str());
    let r = &lines[0]["recipients"][0];
    assert_eq!(r["reason"], "userunknown", "{stdout}");
    assert_eq!(r["hard_bounce"], true);
    assert_eq!(r["status"], "5.1.1");
    assert!(r["email"].as_str().unwrap().contains('@'));
    let r = &lines[1]["recipients"][0];
    assert_eq!(r["reason"], "feedback", "{stdout}");
    assert_eq!(r["feedback_type"], "abuse");
    assert_eq!(r["hard_bounce"], false);
    assert_eq!(lines[2]["file"], missing.as_str());
    assert!(lines[2]["error"].as_str().is_some_and(|e| !e.is_empty()), "{stdout}");
    assert!(text(&out.stderr).contains("could not be read"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn the_configuration_files_log_filter_is_the_one_used() {
    let db = TestDb::new(Engine::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("epistle.toml");
    let config = |log: &str| format!("database_url = \"{}\"\nlog = \"{log}\"\n", db.url);
    // The migrations log at info: a file that asks for warnings only hides them …
    std::fs::write(&file, config("warn")).unwrap();
    let out = epistle(&["--config", file.to_str().unwrap(), "migrate"], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("INFO"), "{}", text(&out.stderr));
    // … while the default shows them, without colour codes when stderr is not a terminal.
    let fresh = TestDb::new(Engine::Sqlite).await;
    let out = epistle(&["migrate"], &[("EPISTLE_DATABASE_URL", fresh.url.as_str())]).await;
    assert!(text(&out.stderr).contains("INFO"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("applied migration"), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains('\u{1b}'), "{}", text(&out.stderr));
    // A filter that does not parse stops the program and says how to write one.
    std::fs::write(&file, config("epistle=loud")).unwrap();
    let out = epistle(&["--config", file.to_str().unwrap(), "migrate"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("invalid log filter `epistle=loud`"), "{}", text(&out.stderr));
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

    let out = epistle(&["serve"], &[("EPISTLE_WEBHOOKS__TIMEOUT", "soon"), ("EPISTLE_HTTP_ADDR", "127.0.0.1:0")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("soon"), "{}", text(&out.stderr));

    let db = TestDb::new(Engine::Sqlite).await;
    let env = [
        ("EPISTLE_DATABASE_URL", db.url.as_str()),
        ("EPISTLE_HTTP_ADDR", "127.0.0.1:0"),
        ("EPISTLE_SMTP_ADDR", ""),
        ("EPISTLE_FEEDBACK__BOUNCE_DOMAIN", "not a domain"),
    ];
    let out = epistle(&["serve"], &env).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("feedback.bounce_domain `not a domain`"), "{}", text(&out.stderr));

    // Consumers: a NATS one without its stream, and an unknown kind.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("epistle.toml");
    std::fs::write(&file, "[[consumers]]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"orders.>\"\n")
        .unwrap();
    let env =
        [("EPISTLE_DATABASE_URL", db.url.as_str()), ("EPISTLE_HTTP_ADDR", "127.0.0.1:0"), ("EPISTLE_SMTP_ADDR", "")];
    let out = epistle(&["serve", "--config", file.to_str().unwrap()], &env).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("needs `stream`"), "{}", text(&out.stderr));
    std::fs::write(&file, "[[consumers]]\nkind = \"kafka\"\nurl = \"x\"\n").unwrap();
    let out = epistle(&["serve", "--config", file.to_str().unwrap()], &env).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("kafka"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn domains_add_list_verify_from_the_command_line() {
    let db = TestDb::new(Engine::Sqlite).await;
    let dns = epistle_testkit::DnsServer::start().await;
    let ns = dns.addr.to_string();
    // No master key given: one is made beside the database, mode 0600.
    let env = [("EPISTLE_DATABASE_URL", db.url.as_str()), ("EPISTLE_DNS__NAMESERVERS", ns.as_str())];
    let out = epistle(&["domains", "add", "shop.example", "--algorithm", "ed25519", "--json"], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["dkim"]["algorithm"], "ed25519");
    let dkim = d["records"].as_array().unwrap().iter().find(|r| r["purpose"] == "dkim").unwrap().clone();
    let key_file = std::path::Path::new(db.url.trim_start_matches("sqlite://")).parent().unwrap().join("master.key");
    assert!(key_file.exists(), "{}", key_file.display());

    let out = epistle(&["domains", "list"], &env).await;
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("shop.example") && text(&out.stdout).contains("unverified"));

    // Not published: verify says what is missing and exits non-zero.
    let out = epistle(&["domains", "verify", "shop.example"], &env).await;
    assert!(!out.status.success());
    assert!(text(&out.stdout).contains("(missing)"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("not verified yet"), "{}", text(&out.stderr));

    dns.txt(dkim["name"].as_str().unwrap(), dkim["value"].as_str().unwrap());
    dns.txt("shop.example", "v=spf1 a mx ~all");
    let out = epistle(&["domains", "verify", "shop.example"], &env).await;
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("shop.example  (verified)"), "{}", text(&out.stdout));

    // Another master key does not open this database's keys: a clear refusal.
    let wrong = [
        ("EPISTLE_DATABASE_URL", db.url.as_str()),
        ("EPISTLE_MASTER_KEY", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
    ];
    let out = epistle(&["domains", "list"], &wrong).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not the one this database's secrets were sealed with"),
        "{}",
        text(&out.stderr)
    );

    let out = epistle(&["domains", "add", "not a domain"], &env).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("is not a domain name"), "{}", text(&out.stderr));
}
