//! Amazon's APIs, faked by `moto_server` (PyPI `moto[server]`), on a free
//! port. Started with request authentication on: after the IAM user and
//! key that [`MotoServer::start`] makes, every request must carry a valid
//! SigV4 signature of that key.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct MotoServer {
    pub url: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    child: Child,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn tag(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = xml[start..].find('<')? + start;
    Some(xml[start..end].to_string())
}

impl MotoServer {
    pub async fn start() -> Self {
        // A free port: bind, read it, release it for moto to take.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // The first three requests (below) run unauthenticated; from
            // then on moto checks signatures and IAM permissions.
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server runs (pip install 'moto[server]'; scripts/test-services.sh does)");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        crate::wait_for("moto_server to answer", Duration::from_secs(60), || async {
            http.get(format!("{url}/moto-api/")).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        let iam = |form: Vec<(&'static str, String)>| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let mut form = form;
                form.push(("Version", "2010-05-08".into()));
                http.post(format!("{url}/"))
                    .header(
                        "authorization",
                        "AWS4-HMAC-SHA256 Credential=bootstrap/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
                    )
                    .form(&form)
                    .send()
                    .await
                    .expect("IAM request")
                    .text()
                    .await
                    .unwrap()
            }
        };
        iam(vec![("Action", "CreateUser".into()), ("UserName", "epistle".into())]).await;
        let key = iam(vec![("Action", "CreateAccessKey".into()), ("UserName", "epistle".into())]).await;
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ses:*","Resource":"*"}]}"#;
        iam(vec![
            ("Action", "PutUserPolicy".into()),
            ("UserName", "epistle".into()),
            ("PolicyName", "send".into()),
            ("PolicyDocument", policy.into()),
        ])
        .await;
        Self {
            access_key_id: tag(&key, "AccessKeyId").expect("an access key id"),
            secret_access_key: tag(&key, "SecretAccessKey").expect("a secret key"),
            url,
            child,
        }
    }

    /// What moto's SES holds: `ses.RawMessage` lists raw messages sent.
    pub async fn state(&self) -> serde_json::Value {
        reqwest::get(format!("{}/moto-api/data.json", self.url)).await.unwrap().json().await.unwrap()
    }
}
