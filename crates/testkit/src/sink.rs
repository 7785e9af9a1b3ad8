//! An SMTP sink on a free port that keeps what it receives and misbehaves
//! on request, by recipient local part:
//!
//! | local part starts with | the sink                                   |
//! |------------------------|--------------------------------------------|
//! | `tempfail`             | answers RCPT with `451 4.3.0`              |
//! | `permfail`             | answers RCPT with `550 5.1.1`              |
//! | `disconnect`           | drops the connection at RCPT               |
//! | `slow`                 | waits `slow_delay` before answering DATA   |
//!
//! It can also refuse every session (`greeting`), require AUTH, offer
//! STARTTLS or speak implicit TLS with a self-signed certificate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// One message as the sink received it (dot-stuffing undone).
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
    pub tls: bool,
    pub auth_user: Option<String>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
    /// The value of the first header with this name.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or_default().to_string();
        let prefix = format!("{}:", name.to_ascii_lowercase());
        head.split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }
}

#[derive(Debug, Clone, Default)]
pub struct SinkConfig {
    /// Offer STARTTLS (or speak implicit TLS) with a self-signed certificate.
    pub starttls: bool,
    pub implicit_tls: bool,
    /// Require AUTH (PLAIN or LOGIN) with these credentials before MAIL.
    pub auth: Option<(String, String)>,
    /// Offer only AUTH LOGIN (as some older relays do).
    pub login_only: bool,
    /// Replace the greeting, e.g. `554 5.3.2 not accepting mail` to refuse
    /// every session.
    pub greeting: Option<String>,
    pub slow_delay: Duration,
    /// Wait this long before answering every DATA (a busy server), so
    /// tests can catch messages in flight.
    pub delay: Duration,
    /// Offer STARTTLS but break the handshake (hang up after `220`), as
    /// MX hosts with broken TLS set-ups do.
    pub broken_starttls: bool,
}

pub struct SmtpSink {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
    sessions: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    ca_pem: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Shared {
    cfg: SinkConfig,
    received: Arc<Mutex<Vec<Received>>>,
    acceptor: Option<TlsAcceptor>,
}

impl SmtpSink {
    pub async fn start(cfg: SinkConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let (acceptor, ca_pem) = if cfg.starttls || cfg.implicit_tls {
            let (a, pem) = tls_acceptor();
            (Some(a), Some(pem))
        } else {
            (None, None)
        };
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared { cfg, received: received.clone(), acceptor });
        let conns = connections.clone();
        let stop = stopped.clone();
        let sessions: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let live = sessions.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                if stop.load(Ordering::SeqCst) {
                    continue;
                }
                conns.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                let handle = tokio::spawn(async move {
                    let _ = sock.set_nodelay(true);
                    if shared.cfg.implicit_tls {
                        let Some(acc) = shared.acceptor.clone() else { return };
                        if let Ok(tls) = acc.accept(sock).await {
                            let _ = session(Box::new(tls), shared, true).await;
                        }
                    } else {
                        let _ = session(Box::new(sock), shared, false).await;
                    }
                });
                live.lock().unwrap().push(handle.abort_handle());
            }
        });
        Self { addr, received, connections, stopped, sessions, ca_pem, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    /// PEM of the self-signed certificate, for the client to trust.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` messages have arrived.
    pub async fn wait_count(&self, n: usize, timeout: Duration) -> Vec<Received> {
        crate::wait_for(&format!("{n} messages at the sink"), timeout, || async {
            let r = self.received();
            (r.len() >= n).then_some(r)
        })
        .await
    }

    /// Stops like a crashed server: the port closes and open sessions are
    /// cut.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.task.abort();
        for s in self.sessions.lock().unwrap().drain(..) {
            s.abort();
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tls_acceptor() -> (TlsAcceptor, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("self-signed cert");
    let pem = ck.cert.pem();
    let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server cert");
    (TlsAcceptor::from(Arc::new(config)), pem)
}

async fn write(io: &mut BufReader<Box<dyn Io>>, s: &str) -> std::io::Result<()> {
    io.get_mut().write_all(s.as_bytes()).await?;
    io.get_mut().flush().await
}

fn decode_b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

async fn session(io: Box<dyn Io>, shared: Arc<Shared>, tls: bool) -> std::io::Result<()> {
    let mut io = BufReader::new(io);
    if !tls || shared.cfg.implicit_tls {
        let greeting = shared.cfg.greeting.clone().unwrap_or_else(|| "220 sink.test ESMTP test sink".into());
        write(&mut io, &format!("{greeting}\r\n")).await?;
        if !greeting.starts_with("220") {
            return Ok(());
        }
    }
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    let mut auth_user: Option<String> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let mut caps = vec!["250-sink.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE 52428800"];
            if (shared.acceptor.is_some() || shared.cfg.broken_starttls) && !tls {
                caps.push("250-STARTTLS");
            }
            if shared.cfg.auth.is_some() {
                caps.push(if shared.cfg.login_only { "250-AUTH LOGIN" } else { "250-AUTH PLAIN LOGIN" });
            }
            caps.push("250 ENHANCEDSTATUSCODES");
            write(&mut io, &(caps.join("\r\n") + "\r\n")).await?;
        } else if upper == "STARTTLS" && shared.cfg.broken_starttls {
            // Agree, then hang up instead of a TLS server hello.
            write(&mut io, "220 2.0.0 go ahead\r\n").await?;
            return Ok(());
        } else if upper == "STARTTLS" {
            let Some(acc) = shared.acceptor.clone().filter(|_| !tls) else {
                write(&mut io, "502 5.5.1 no STARTTLS here\r\n").await?;
                continue;
            };
            write(&mut io, "220 2.0.0 go ahead\r\n").await?;
            let inner = io.into_inner();
            let stream = acc.accept(inner).await?;
            return Box::pin(session(Box::new(stream), shared, true)).await;
        } else if upper.starts_with("AUTH PLAIN") {
            let arg = cmd[10..].trim().to_string();
            let arg = if arg.is_empty() {
                write(&mut io, "334 \r\n").await?;
                let mut l = String::new();
                io.read_line(&mut l).await?;
                l
            } else {
                arg
            };
            let decoded = decode_b64(&arg);
            let parts: Vec<&str> = decoded.split('\0').collect();
            let ok = parts.len() == 3 && shared.cfg.auth.as_ref().is_some_and(|(u, p)| parts[1] == u && parts[2] == p);
            if ok {
                auth_user = Some(parts[1].to_string());
                write(&mut io, "235 2.7.0 authenticated\r\n").await?;
            } else {
                write(&mut io, "535 5.7.8 bad credentials\r\n").await?;
            }
        } else if upper.starts_with("AUTH LOGIN") {
            write(&mut io, "334 VXNlcm5hbWU6\r\n").await?;
            let mut u = String::new();
            io.read_line(&mut u).await?;
            write(&mut io, "334 UGFzc3dvcmQ6\r\n").await?;
            let mut p = String::new();
            io.read_line(&mut p).await?;
            let (u, p) = (decode_b64(&u), decode_b64(&p));
            if shared.cfg.auth.as_ref().is_some_and(|(eu, ep)| *eu == u && *ep == p) {
                auth_user = Some(u);
                write(&mut io, "235 2.7.0 authenticated\r\n").await?;
            } else {
                write(&mut io, "535 5.7.8 bad credentials\r\n").await?;
            }
        } else if upper.starts_with("MAIL FROM:") {
            if shared.cfg.auth.is_some() && auth_user.is_none() {
                write(&mut io, "530 5.7.0 authentication required\r\n").await?;
                continue;
            }
            from = Some(addr_of(&cmd[10..]));
            rcpts.clear();
            write(&mut io, "250 2.1.0 ok\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = addr_of(&cmd[8..]);
            let local = rcpt.split('@').next().unwrap_or_default().to_ascii_lowercase();
            if local.starts_with("tempfail") {
                write(&mut io, "451 4.3.0 try again later\r\n").await?;
            } else if local.starts_with("permfail") {
                write(&mut io, "550 5.1.1 no such user here\r\n").await?;
            } else if local.starts_with("disconnect") {
                return Ok(());
            } else {
                rcpts.push(rcpt);
                write(&mut io, "250 2.1.5 ok\r\n").await?;
            }
        } else if upper == "DATA" {
            if from.is_none() || rcpts.is_empty() {
                write(&mut io, "554 5.5.1 no valid recipients\r\n").await?;
                continue;
            }
            write(&mut io, "354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = Vec::new();
            let mut l = Vec::new();
            loop {
                l.clear();
                if io.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                if l.starts_with(b"..") {
                    data.extend_from_slice(&l[1..]);
                } else {
                    data.extend_from_slice(&l);
                }
            }
            if rcpts.iter().any(|r| r.to_ascii_lowercase().starts_with("slow")) {
                tokio::time::sleep(shared.cfg.slow_delay).await;
            }
            if !shared.cfg.delay.is_zero() {
                tokio::time::sleep(shared.cfg.delay).await;
            }
            let n = {
                let mut rec = shared.received.lock().unwrap();
                rec.push(Received {
                    from: from.take().unwrap_or_default(),
                    rcpts: std::mem::take(&mut rcpts),
                    data,
                    tls,
                    auth_user: auth_user.clone(),
                });
                rec.len()
            };
            write(&mut io, &format!("250 2.0.0 Ok: queued as SINK{n}\r\n")).await?;
        } else if upper == "RSET" {
            from = None;
            rcpts.clear();
            write(&mut io, "250 2.0.0 ok\r\n").await?;
        } else if upper == "NOOP" {
            write(&mut io, "250 2.0.0 ok\r\n").await?;
        } else if upper == "QUIT" {
            write(&mut io, "221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            write(&mut io, "500 5.5.2 what?\r\n").await?;
        }
    }
}

fn addr_of(arg: &str) -> String {
    let a = arg.trim();
    let a = a.split_whitespace().next().unwrap_or_default();
    a.trim_start_matches('<').trim_end_matches('>').to_string()
}
