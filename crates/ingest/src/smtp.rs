//! The SMTP submission listener (RFC 5321 with PIPELINING, 8BITMIME, SIZE,
//! ENHANCEDSTATUSCODES, STARTTLS and AUTH PLAIN/LOGIN).
//!
//! Who may send: a client that authenticates with an API key as the
//! password (any user name) sends into that key's tenant; without AUTH,
//! only clients in `smtp.trusted_networks` may, into tenant `default`.
//! AUTH is offered over TLS, or in clear text only to loopback clients
//! (unless `allow_plain_auth`), so keys do not cross a network in clear.
//!
//! `250` after DATA is sent only once the message is committed, through the
//! same group commit as the HTTP API.
//!
//! With a bounce domain configured, the listener also takes mail for it
//! from anyone, as that domain's MX: bounces, complaints, auto-replies and
//! `mailto:` unsubscribes ([`crate::inbound`]). Such mail goes in a
//! transaction of its own; `250` follows once what it says is stored.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use epistle_core::clock::SharedClock;
use epistle_core::{EmailAddress, apikey};
use epistle_deliver::Metrics;
use epistle_deliver::events::EventHub;
use epistle_store::{Committer, FeedbackUpdate, InsertResult, RecipientRef, Store};
use ipnet::IpNet;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::inbound::{self, Inbound, Target};
use crate::submission::{self, Received};

#[derive(Clone)]
pub struct SmtpListenerConfig {
    /// Our name in the greeting and `Received` headers.
    pub hostname: String,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    /// Clients that may send without AUTH (into tenant `default`).
    pub trusted_networks: Vec<IpNet>,
    /// Offers STARTTLS when set.
    pub tls: Option<TlsAcceptor>,
    /// Offer AUTH without TLS to non-loopback clients (not recommended).
    pub allow_plain_auth: bool,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// Take mail for the bounce domain (`feedback.bounce_domain`).
    pub inbound: Option<Inbound>,
}

impl Default for SmtpListenerConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            max_message_bytes: 25 * 1024 * 1024,
            max_recipients: 1000,
            trusted_networks: vec![],
            tls: None,
            allow_plain_auth: false,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            inbound: None,
        }
    }
}

/// Reads a PEM certificate chain and key into a TLS acceptor.
pub fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read the certificate: {e}"))?;
    if certs.is_empty() {
        return Err("the certificate file holds no PEM certificate".into());
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| format!("cannot read the private key: {e}"))?
        .ok_or("the key file holds no PEM private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What a session needs from the rest of Epistle.
pub struct SmtpListener {
    pub store: Store,
    /// Commits accepted mail and hands it to the delivery worker (or wakes it).
    pub committer: Committer,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub default_tenant_id: String,
    pub cfg: SmtpListenerConfig,
    /// Told when returned mail wrote events, so streams and webhooks see
    /// them at once.
    pub events: Option<Arc<EventHub>>,
}

impl SmtpListener {
    /// Accepts connections until `shutdown` turns true.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => return,
            };
            let (sock, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "SMTP accept failed");
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                let mut s = Session::new(peer, me.trusted(peer.ip()));
                if let Err(e) = me.session(Box::new(sock), &mut s, true).await {
                    tracing::debug!(%peer, error = %e, "SMTP session ended");
                }
            });
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.cfg.trusted_networks.iter().any(|n| n.contains(&ip))
    }

    fn offers_auth(&self, s: &Session) -> bool {
        s.tls || self.cfg.allow_plain_auth || s.peer.ip().is_loopback()
    }

    fn session<'a>(
        &'a self,
        io: Box<dyn Io>,
        s: &'a mut Session,
        greet: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let mut c =
                Conn { io: BufReader::new(io), out: Vec::with_capacity(512), timeout: self.cfg.command_timeout };
            if greet {
                c.reply(&format!("220 {} ESMTP Epistle ready", self.cfg.hostname));
            }
            loop {
                let Some(line) = c.read_command().await? else { return Ok(()) };
                let line = match String::from_utf8(line) {
                    Ok(l) => l,
                    Err(_) => {
                        c.reply("500 5.5.2 commands must be ASCII");
                        continue;
                    }
                };
                let (verb, arg) = match line.split_once(' ') {
                    Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
                    None => (line.to_ascii_uppercase(), String::new()),
                };
                match verb.as_str() {
                    "EHLO" | "HELO" => {
                        if arg.is_empty() {
                            c.reply("501 5.5.4 give your host name: EHLO name");
                            continue;
                        }
                        s.reset();
                        s.helo = Some(arg.clone());
                        if verb == "HELO" {
                            c.reply(&format!("250 {}", self.cfg.hostname));
                            continue;
                        }
                        let mut lines = vec![
                            self.cfg.hostname.clone(),
                            "PIPELINING".into(),
                            "8BITMIME".into(),
                            format!("SIZE {}", self.cfg.max_message_bytes),
                            "ENHANCEDSTATUSCODES".into(),
                        ];
                        if self.cfg.tls.is_some() && !s.tls {
                            lines.push("STARTTLS".into());
                        }
                        if self.offers_auth(s) {
                            lines.push("AUTH PLAIN LOGIN".into());
                        }
                        c.multi(250, &lines);
                    }
                    "STARTTLS" => {
                        let Some(acceptor) = self.cfg.tls.clone().filter(|_| !s.tls) else {
                            c.reply("502 5.5.1 STARTTLS is not available");
                            continue;
                        };
                        if !c.io.buffer().is_empty() {
                            c.reply("503 5.5.1 no commands may follow STARTTLS in the same packet");
                            continue;
                        }
                        c.reply("220 2.0.0 ready to start TLS");
                        c.flush().await?;
                        let tls = acceptor.accept(c.io.into_inner()).await?;
                        s.tls = true;
                        s.reset();
                        s.helo = None;
                        s.tenant = None;
                        return self.session(Box::new(tls), s, false).await;
                    }
                    "AUTH" => self.auth(&mut c, s, &arg).await?,
                    "MAIL" => self.mail(&mut c, s, &arg),
                    "RCPT" => self.rcpt(&mut c, s, &arg),
                    "DATA" => self.data(&mut c, s).await?,
                    "BDAT" => c.reply("502 5.5.1 CHUNKING is not supported; use DATA"),
                    "RSET" => {
                        s.reset();
                        c.reply("250 2.0.0 reset");
                    }
                    "NOOP" => c.reply("250 2.0.0 ok"),
                    "VRFY" => c.reply("252 2.5.0 cannot verify, but will accept and try"),
                    "HELP" => c.reply("214 2.0.0 see https://www.rfc-editor.org/rfc/rfc5321 and docs/smtp.md"),
                    "QUIT" => {
                        c.reply("221 2.0.0 bye");
                        c.flush().await?;
                        return Ok(());
                    }
                    _ => c.reply("500 5.5.2 unknown command"),
                }
            }
        })
    }

    async fn auth(&self, c: &mut Conn, s: &mut Session, arg: &str) -> std::io::Result<()> {
        if !self.offers_auth(s) {
            c.reply("538 5.7.11 encryption required: use STARTTLS before AUTH");
            return Ok(());
        }
        if s.tenant.is_some() {
            c.reply("503 5.5.1 already authenticated");
            return Ok(());
        }
        if s.from.is_some() {
            c.reply("503 5.5.1 AUTH is not allowed during a mail transaction");
            return Ok(());
        }
        let mut parts = arg.splitn(2, ' ');
        let mech = parts.next().unwrap_or_default().to_ascii_uppercase();
        let initial = parts.next().map(str::to_string);
        let b64 = base64::engine::general_purpose::STANDARD;
        let password = match mech.as_str() {
            "PLAIN" => {
                let token = match initial {
                    Some(t) => t,
                    None => {
                        c.reply("334 ");
                        String::from_utf8_lossy(&c.read_command().await?.unwrap_or_default()).into_owned()
                    }
                };
                if token == "*" {
                    c.reply("501 5.7.0 authentication cancelled");
                    return Ok(());
                }
                match b64.decode(token.trim()) {
                    Ok(bytes) => {
                        let parts: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
                        if parts.len() != 3 {
                            c.reply("501 5.5.2 AUTH PLAIN wants base64 of \\0user\\0password");
                            return Ok(());
                        }
                        String::from_utf8_lossy(parts[2]).into_owned()
                    }
                    Err(_) => {
                        c.reply("501 5.5.2 AUTH PLAIN data is not base64");
                        return Ok(());
                    }
                }
            }
            "LOGIN" => {
                c.reply("334 VXNlcm5hbWU6");
                let _user = c.read_command().await?.unwrap_or_default();
                c.reply("334 UGFzc3dvcmQ6");
                let pass = c.read_command().await?.unwrap_or_default();
                match b64.decode(String::from_utf8_lossy(&pass).trim()) {
                    Ok(p) => String::from_utf8_lossy(&p).into_owned(),
                    Err(_) => {
                        c.reply("501 5.5.2 AUTH LOGIN data is not base64");
                        return Ok(());
                    }
                }
            }
            _ => {
                c.reply("504 5.5.4 use AUTH PLAIN or AUTH LOGIN");
                return Ok(());
            }
        };
        match self.store.find_api_key(&apikey::hash_api_key(password.trim())).await {
            Ok(Some(k)) if apikey::scope_allows(&k.scopes, "messages:send") => {
                s.tenant = Some(k.tenant_id);
                c.reply("235 2.7.0 authenticated");
            }
            Ok(_) => {
                tracing::info!(peer = %s.peer, "SMTP AUTH refused");
                c.reply(
                    "535 5.7.8 authentication failed: the password must be an API key with the messages:send scope",
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "SMTP AUTH lookup failed");
                c.reply("454 4.7.0 temporary authentication failure, try again");
            }
        }
        Ok(())
    }

    fn mail(&self, c: &mut Conn, s: &mut Session, arg: &str) {
        if s.helo.is_none() {
            c.reply("503 5.5.1 say EHLO first");
            return;
        }
        if s.from.is_some() {
            c.reply("503 5.5.1 a transaction is already open; RSET first");
            return;
        }
        let Some(rest) = strip_prefix_ci(arg, "FROM:") else {
            c.reply("501 5.5.4 syntax: MAIL FROM:<address>");
            return;
        };
        let Some((path, params)) = angle_path(rest) else {
            c.reply("501 5.5.4 syntax: MAIL FROM:<address>");
            return;
        };
        for p in params.split_whitespace() {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.to_ascii_uppercase().as_str() {
                "SIZE" => match v.parse::<usize>() {
                    Ok(n) if n > self.cfg.max_message_bytes => {
                        c.reply(&format!("552 5.3.4 message too big: at most {} bytes", self.cfg.max_message_bytes));
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        c.reply("501 5.5.4 SIZE wants a number");
                        return;
                    }
                },
                "BODY" if v.eq_ignore_ascii_case("8BITMIME") || v.eq_ignore_ascii_case("7BIT") => {}
                _ => {
                    c.reply(&format!("555 5.5.4 unsupported parameter {k}"));
                    return;
                }
            }
        }
        if !path.is_empty()
            && let Err(e) = EmailAddress::parse(path)
        {
            c.reply(&format!("501 5.1.7 bad sender address: {e}"));
            return;
        }
        s.from = Some(path.to_string());
        c.reply("250 2.1.0 sender ok");
    }

    fn rcpt(&self, c: &mut Conn, s: &mut Session, arg: &str) {
        if s.from.is_none() {
            c.reply("503 5.5.1 MAIL FROM first");
            return;
        }
        let Some(rest) = strip_prefix_ci(arg, "TO:") else {
            c.reply("501 5.5.4 syntax: RCPT TO:<address>");
            return;
        };
        let Some((path, _params)) = angle_path(rest) else {
            c.reply("501 5.5.4 syntax: RCPT TO:<address>");
            return;
        };
        let parsed = EmailAddress::parse(path);
        if let (Some(ib), Ok(a)) = (&self.cfg.inbound, &parsed)
            && ib.is_ours(a)
        {
            if !s.rcpts.is_empty() {
                c.reply(
                    "452 4.5.3 mail for the bounce domain goes in a transaction of its own; send it after this one",
                );
                return;
            }
            if s.inbound.len() >= self.cfg.max_recipients {
                c.reply(&format!("452 4.5.3 too many recipients: at most {} per message", self.cfg.max_recipients));
                return;
            }
            match ib.target(a) {
                Some(t) => {
                    if !s.inbound.contains(&t) {
                        s.inbound.push(t);
                    }
                    c.reply("250 2.1.5 recipient ok");
                }
                None => c.reply("550 5.1.1 no such recipient here"),
            }
            return;
        }
        if !s.inbound.is_empty() {
            c.reply(
                "452 4.5.3 mail for the bounce domain goes in a transaction of its own; send this recipient after it",
            );
            return;
        }
        if s.tenant.is_none() && !s.trusted {
            c.reply(
                "554 5.7.1 relay access denied: authenticate (AUTH, with an API key as the password) \
                 or send from smtp.trusted_networks",
            );
            return;
        }
        if s.rcpts.len() >= self.cfg.max_recipients {
            c.reply(&format!("452 4.5.3 too many recipients: at most {} per message", self.cfg.max_recipients));
            return;
        }
        match parsed {
            Ok(a) => {
                if !s.rcpts.contains(&a) {
                    s.rcpts.push(a);
                }
                c.reply("250 2.1.5 recipient ok");
            }
            Err(e) => c.reply(&format!("501 5.1.3 bad recipient address: {e}")),
        }
    }

    async fn data(&self, c: &mut Conn, s: &mut Session) -> std::io::Result<()> {
        if s.from.is_none() {
            c.reply("503 5.5.1 MAIL FROM first");
            return Ok(());
        }
        if s.rcpts.is_empty() && s.inbound.is_empty() {
            c.reply("554 5.5.1 no valid recipients");
            return Ok(());
        }
        c.reply("354 end data with <CR><LF>.<CR><LF>");
        c.flush().await?;
        let data = timeout(self.cfg.data_timeout, read_data(&mut c.io, self.cfg.max_message_bytes))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "DATA timed out"))??;
        let Some(data) = data else {
            s.reset();
            c.reply(&format!("552 5.3.4 message too big: at most {} bytes", self.cfg.max_message_bytes));
            return Ok(());
        };
        if !s.inbound.is_empty() {
            let targets = std::mem::take(&mut s.inbound);
            s.reset();
            let reply = self.returned(&targets, &data).await;
            c.reply(&reply);
            return Ok(());
        }
        let tenant_id = s.tenant.clone().unwrap_or_else(|| self.default_tenant_id.clone());
        let now = self.clock.now_ms();
        let trace = format!(
            "Received: from {} ({}) by {} with {} id {}; {}",
            s.helo.as_deref().unwrap_or("unknown"),
            s.peer.ip(),
            self.cfg.hostname,
            match (s.tls, s.tenant.is_some()) {
                (true, true) => "ESMTPSA",
                (true, false) => "ESMTPS",
                (false, true) => "ESMTPA",
                (false, false) => "ESMTP",
            },
            now,
            submission::rfc5322_date(now)
        );
        let from = s.from.clone().unwrap_or_default();
        let msg = submission::new_message(Received {
            tenant_id: &tenant_id,
            envelope_from: &from,
            rcpts: &s.rcpts,
            data: &data,
            trace,
            now_ms: now,
        });
        let id = msg.id.clone();
        let n = msg.recipients.len() as u64;
        s.reset();
        match self.committer.insert(vec![msg], now).await {
            Ok(r) if r.first() == Some(&InsertResult::Inserted) => {
                self.metrics.messages_accepted.inc();
                self.metrics.recipients_accepted.inc_by(n);
                tracing::info!(message = %id, tenant = %tenant_id, recipients = n, "accepted over SMTP");
                c.reply(&format!("250 2.0.0 Ok: queued as {id}"));
            }
            Ok(_) => c.reply("451 4.3.0 not stored, try again"),
            Err(e) => {
                tracing::error!(error = %e, "cannot commit SMTP message");
                c.reply("451 4.3.0 storage unavailable, nothing was accepted; try again");
            }
        }
        Ok(())
    }
}

impl SmtpListener {
    /// Stores what a mail for the bounce domain says; the reply to give.
    async fn returned(&self, targets: &[Target], data: &[u8]) -> String {
        let Some(ib) = &self.cfg.inbound else { return "554 5.5.1 no valid recipients".into() };
        let found = epistle_mail::bounce::classify_mail(data);
        let now = self.clock.now_ms();
        let auto_reply = found.iter().any(|r| r.reason == epistle_mail::bounce::Reason::Vacation);
        let mut updates: Vec<FeedbackUpdate> = vec![];
        let mut unsubscribes = vec![];
        for t in targets {
            match t {
                Target::Bounce(id) => updates.extend(inbound::update_of(RecipientRef::Id(id.clone()), &found, now)),
                Target::Role => updates.extend(inbound::role_updates(ib, data, &found, now)),
                // An out-of-office answer to the unsubscribe address is not
                // the person asking to leave.
                Target::Unsubscribe(id) if !auto_reply => unsubscribes.push(id.clone()),
                Target::Unsubscribe(_) => {}
            }
        }
        let stored: Result<u64, epistle_store::StoreError> = async {
            let mut n = if updates.is_empty() { 0 } else { self.store.apply_feedback(&updates, now).await? };
            for id in &unsubscribes {
                if let Some(subject) = self.store.unsubscribe_subject(id).await? {
                    self.store.unsubscribe(&subject, &subject.default_scope(), "mailto", now).await?;
                    n += 1;
                }
            }
            Ok(n)
        }
        .await;
        match stored {
            Ok(n) => {
                if let Some(hub) = &self.events {
                    hub.poke();
                }
                let mut kinds: Vec<&str> = updates.iter().map(|u| u.event.as_str()).collect();
                kinds.extend(unsubscribes.iter().map(|_| "unsubscribed"));
                if kinds.is_empty() {
                    kinds.push("unreadable");
                }
                for k in &kinds {
                    self.metrics
                        .returned_mail
                        .get_or_create(&epistle_deliver::metrics::OutcomeLabels { outcome: k.to_string() })
                        .inc();
                }
                tracing::info!(recipients = n, what = ?kinds, "returned mail");
                if n == 0 {
                    "250 2.0.0 Ok: received; it names no recipient of ours".into()
                } else {
                    format!("250 2.0.0 Ok: recorded for {n} recipient(s)")
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store what returned mail says");
                "451 4.3.0 storage unavailable, nothing was accepted; try again".into()
            }
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Session {
    peer: SocketAddr,
    trusted: bool,
    tls: bool,
    helo: Option<String>,
    tenant: Option<String>,
    from: Option<String>,
    rcpts: Vec<EmailAddress>,
    /// Recipients on the bounce domain (then `rcpts` stays empty).
    inbound: Vec<Target>,
}

impl Session {
    fn new(peer: SocketAddr, trusted: bool) -> Self {
        Self { peer, trusted, tls: false, helo: None, tenant: None, from: None, rcpts: vec![], inbound: vec![] }
    }
    fn reset(&mut self) {
        self.from = None;
        self.rcpts.clear();
        self.inbound.clear();
    }
}

/// A connection with replies buffered until the client waits for them, so
/// a pipelined batch of commands gets its replies in one write.
struct Conn {
    io: BufReader<Box<dyn Io>>,
    out: Vec<u8>,
    timeout: Duration,
}

const MAX_COMMAND: usize = 4096;

impl Conn {
    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn multi(&mut self, code: u16, lines: &[String]) {
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            self.reply(&format!("{code}{sep}{l}"));
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.io.get_mut().write_all(&self.out).await?;
            self.io.get_mut().flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// The next command line without CRLF, or `None` at end of stream. An
    /// overlong line is answered `500 5.5.6` and skipped, without holding
    /// more than `MAX_COMMAND` bytes of it.
    async fn read_command(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if self.io.buffer().is_empty() {
                self.flush().await?;
            }
            let mut line = Vec::new();
            let n = timeout(self.timeout, (&mut self.io).take(MAX_COMMAND as u64).read_until(b'\n', &mut line))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "command timed out"))??;
            if n == 0 {
                return Ok(None);
            }
            if line.ends_with(b"\n") {
                while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            // Too long: drop the rest of it, piece by piece.
            loop {
                line.clear();
                let n = timeout(self.timeout, (&mut self.io).take(MAX_COMMAND as u64).read_until(b'\n', &mut line))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "command timed out"))??;
                if n == 0 {
                    return Ok(None);
                }
                if line.ends_with(b"\n") {
                    break;
                }
            }
            self.reply("500 5.5.6 command line too long");
        }
    }
}

/// Reads a DATA body up to the lone dot, undoing dot-stuffing. `None` when
/// it exceeded `max` bytes (the rest is read and dropped).
async fn read_data(io: &mut BufReader<Box<dyn Io>>, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut data = Vec::with_capacity(16 * 1024);
    let mut line = Vec::with_capacity(1024);
    let mut too_big = false;
    loop {
        line.clear();
        if io.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed during DATA"));
        }
        if line == b".\r\n" || line == b".\n" {
            break;
        }
        if too_big {
            continue;
        }
        let content = if line.starts_with(b"..") { &line[1..] } else { &line[..] };
        if data.len() + content.len() > max {
            too_big = true;
            data.clear();
            continue;
        }
        if content.ends_with(b"\r\n") {
            data.extend_from_slice(content);
        } else if content.ends_with(b"\n") {
            // Bare LF: store CRLF, as SMTP requires.
            data.extend_from_slice(&content[..content.len() - 1]);
            data.extend_from_slice(b"\r\n");
        } else {
            data.extend_from_slice(content);
        }
    }
    Ok(if too_big { None } else { Some(data) })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| s[prefix.len()..].trim_start())
}

/// `<path> params` → (path, params). The null path `<>` is allowed.
fn angle_path(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    let rest = s.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(angle_path("<a@b.example> SIZE=10"), Some(("a@b.example", "SIZE=10")));
        assert_eq!(angle_path("<>"), Some(("", "")));
        assert_eq!(angle_path("a@b.example"), None);
        assert_eq!(strip_prefix_ci("from:<x>", "FROM:"), Some("<x>"));
    }
}
