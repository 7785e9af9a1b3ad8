//! One SMTP client connection (RFC 5321) with ESMTP PIPELINING (RFC 2920),
//! STARTTLS (RFC 3207) or implicit TLS, AUTH PLAIN and LOGIN (RFC 4954),
//! and a timeout on every step.
//!
//! Written here rather than taken from lettre or mail-send because the
//! worker needs the server's reply per recipient (a 550 for one RCPT must
//! not fail the others), pipelined transactions on reused connections, and
//! exact control of dot-stuffing. Both crates hide one of those.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// How a relay connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain text (local relays only).
    None,
    /// Connect in plain text, then upgrade with STARTTLS; refuse to go on
    /// if the server does not offer it.
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// STARTTLS when the server offers it, plain text otherwise: how mail
    /// between MX hosts is protected (RFC 3207 §4; Postfix's `may`).
    Opportunistic,
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "off" | "plain" | "false" => Ok(Self::None),
            "starttls" | "true" => Ok(Self::StartTls),
            "tls" | "ssl" | "implicit" => Ok(Self::Tls),
            "opportunistic" | "may" => Ok(Self::Opportunistic),
            _ => Err(format!("unknown TLS mode `{s}`; use none, starttls, tls or opportunistic")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    /// Greeting, EHLO, AUTH, MAIL, RCPT, DATA and their replies.
    pub command: Duration,
    /// Sending the body and waiting for the final reply.
    pub data: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(10), command: Duration::from_secs(30), data: Duration::from_secs(60) }
    }
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The name we give in EHLO.
    pub helo_name: String,
    pub timeouts: Timeouts,
    pub connector: Option<TlsConnector>,
    /// Connect here instead of resolving `host` (direct MX delivery, which
    /// resolves through its own DNS); `host` is still the TLS server name.
    pub connect_addr: Option<std::net::SocketAddr>,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A server reply: code and the text of all its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("timed out during {0}")]
    Timeout(&'static str),
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("server refused the session: {0}")]
    Refused(Reply),
    #[error("authentication failed: {0}")]
    Auth(Reply),
    #[error("server does not offer STARTTLS, and this transport requires it")]
    NoStartTls,
    #[error("server does not offer AUTH PLAIN or LOGIN")]
    NoAuthMechanism,
    #[error("protocol error: {0}")]
    Protocol(String),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Debug, Default, Clone)]
struct Capabilities {
    pipelining: bool,
    starttls: bool,
    auth_plain: bool,
    auth_login: bool,
    size: Option<u64>,
}

/// The replies of one mail transaction.
#[derive(Debug, Clone)]
pub struct TransactionReplies {
    pub mail: Reply,
    /// One per recipient, in order.
    pub rcpt: Vec<Reply>,
    /// The final reply after the body; `None` when no recipient was
    /// accepted (or MAIL was refused), so no body was sent.
    pub data: Option<Reply>,
}

pub struct SmtpConnection {
    io: BufReader<Box<dyn Io>>,
    caps: Capabilities,
    timeouts: Timeouts,
    /// Set when the connection must not be reused.
    pub broken: bool,
    /// Whether the session runs over TLS.
    pub encrypted: bool,
    pub transactions: u32,
}

const MAX_LINE: usize = 8192;

impl SmtpConnection {
    /// Connects, reads the greeting, says EHLO, secures and authenticates.
    pub async fn connect(s: &SmtpSettings) -> Result<Self, SmtpError> {
        let addr = match s.connect_addr {
            Some(a) => a.to_string(),
            None => format!("{}:{}", s.host, s.port),
        };
        let tcp = timeout(s.timeouts.connect, TcpStream::connect(&addr))
            .await
            .map_err(|_| SmtpError::Timeout("connect"))?
            .map_err(|source| SmtpError::Connect { addr: addr.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if s.tls == TlsMode::Tls { Box::new(tls_wrap(s, tcp).await?) } else { Box::new(tcp) };
        let mut conn = Self {
            io: BufReader::new(io),
            caps: Capabilities::default(),
            timeouts: s.timeouts.clone(),
            broken: false,
            encrypted: s.tls == TlsMode::Tls,
            transactions: 0,
        };
        let greeting = conn.read_reply("greeting").await?;
        if greeting.code != 220 {
            return Err(SmtpError::Refused(greeting));
        }
        conn.ehlo(&s.helo_name).await?;
        if s.tls == TlsMode::StartTls || (s.tls == TlsMode::Opportunistic && conn.caps.starttls) {
            if !conn.caps.starttls {
                return Err(SmtpError::NoStartTls);
            }
            conn.encrypted = true;
            let r = conn.command("STARTTLS\r\n", "STARTTLS").await?;
            if r.code != 220 {
                return Err(SmtpError::Tls(format!("STARTTLS refused: {r}")));
            }
            let plain = std::mem::replace(
                &mut conn.io,
                BufReader::new(Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink()))),
            );
            if !plain.buffer().is_empty() {
                return Err(SmtpError::Protocol("server sent data before the TLS handshake".into()));
            }
            let tls = tls_wrap(s, plain.into_inner()).await?;
            conn.io = BufReader::new(Box::new(tls));
            conn.ehlo(&s.helo_name).await?;
        }
        if let (Some(user), Some(pass)) = (&s.username, &s.password) {
            conn.auth(user, pass).await?;
        }
        Ok(conn)
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), SmtpError> {
        let r = self.command(&format!("EHLO {name}\r\n"), "EHLO").await?;
        if r.code != 250 {
            return Err(SmtpError::Refused(r));
        }
        let mut caps = Capabilities::default();
        for line in r.text.lines().skip(1) {
            let upper = line.trim().to_ascii_uppercase();
            let mut words = upper.split_whitespace();
            match words.next() {
                Some("PIPELINING") => caps.pipelining = true,
                Some("STARTTLS") => caps.starttls = true,
                Some("SIZE") => caps.size = words.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0),
                Some("AUTH") => {
                    for m in words {
                        match m {
                            "PLAIN" => caps.auth_plain = true,
                            "LOGIN" => caps.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        self.caps = caps;
        Ok(())
    }

    async fn auth(&mut self, user: &str, pass: &str) -> Result<(), SmtpError> {
        let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        if self.caps.auth_plain {
            let token = b64(format!("\0{user}\0{pass}").as_bytes());
            let r = self.command(&format!("AUTH PLAIN {token}\r\n"), "AUTH").await?;
            return if r.code == 235 { Ok(()) } else { Err(SmtpError::Auth(r)) };
        }
        if self.caps.auth_login {
            let r = self.command("AUTH LOGIN\r\n", "AUTH").await?;
            if r.code != 334 {
                return Err(SmtpError::Auth(r));
            }
            let r = self.command(&format!("{}\r\n", b64(user.as_bytes())), "AUTH").await?;
            if r.code != 334 {
                return Err(SmtpError::Auth(r));
            }
            let r = self.command(&format!("{}\r\n", b64(pass.as_bytes())), "AUTH").await?;
            return if r.code == 235 { Ok(()) } else { Err(SmtpError::Auth(r)) };
        }
        Err(SmtpError::NoAuthMechanism)
    }

    /// Runs one mail transaction. Session-level trouble (I/O, timeouts) is
    /// an error; replies, good or bad, are returned per step.
    pub async fn send(&mut self, from: &str, rcpts: &[String], data: &[u8]) -> Result<TransactionReplies, SmtpError> {
        let result = self.send_inner(from, rcpts, data).await;
        match &result {
            Err(_) => self.broken = true,
            Ok(r) => {
                self.transactions += 1;
                let completed = r.data.as_ref().is_some_and(|d| d.code == 250);
                if !completed && !self.broken {
                    // Leave the connection clean for the next transaction.
                    match self.command("RSET\r\n", "RSET").await {
                        Ok(r) if r.code == 250 => {}
                        _ => self.broken = true,
                    }
                }
            }
        }
        result
    }

    async fn send_inner(&mut self, from: &str, rcpts: &[String], data: &[u8]) -> Result<TransactionReplies, SmtpError> {
        let size = match self.caps.size {
            Some(_) => format!(" SIZE={}", data.len()),
            None => String::new(),
        };
        let mail_cmd = format!("MAIL FROM:<{from}>{size}\r\n");
        let rcpt_cmds: Vec<String> = rcpts.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();
        let (mail, rcpt, data_go) = if self.caps.pipelining {
            let mut batch = mail_cmd;
            for c in &rcpt_cmds {
                batch.push_str(c);
            }
            batch.push_str("DATA\r\n");
            self.write(batch.as_bytes(), "MAIL").await?;
            let mail = self.read_reply("MAIL").await?;
            let mut rcpt = Vec::with_capacity(rcpts.len());
            for _ in rcpts {
                rcpt.push(self.read_reply("RCPT").await?);
            }
            let data_go = self.read_reply("DATA").await?;
            (mail, rcpt, data_go)
        } else {
            let mail = self.command(&mail_cmd, "MAIL").await?;
            if !mail.is_positive() {
                let rcpt = rcpts.iter().map(|_| mail.clone()).collect();
                return Ok(TransactionReplies { mail, rcpt, data: None });
            }
            let mut rcpt = Vec::with_capacity(rcpts.len());
            for c in &rcpt_cmds {
                rcpt.push(self.command(c, "RCPT").await?);
            }
            if !rcpt.iter().any(Reply::is_positive) {
                return Ok(TransactionReplies { mail, rcpt, data: None });
            }
            let data_go = self.command("DATA\r\n", "DATA").await?;
            (mail, rcpt, data_go)
        };
        let accepted = mail.is_positive() && rcpt.iter().any(Reply::is_positive);
        if data_go.code != 354 {
            return Ok(TransactionReplies { mail, rcpt, data: accepted.then_some(data_go) });
        }
        if !accepted {
            // A server that said 354 with no valid recipient: end the empty
            // message at once (RFC 2920 section 3.1).
            self.write(b".\r\n", "DATA").await?;
            let _ = self.read_reply("DATA").await?;
            return Ok(TransactionReplies { mail, rcpt, data: None });
        }
        let body = dot_stuff(data);
        timeout(self.timeouts.data, async {
            self.io.get_mut().write_all(&body).await?;
            self.io.get_mut().flush().await
        })
        .await
        .map_err(|_| SmtpError::Timeout("message body"))??;
        let done = self.read_reply_within("end of DATA", self.timeouts.data).await?;
        Ok(TransactionReplies { mail, rcpt, data: Some(done) })
    }

    /// Says QUIT politely; errors do not matter any more.
    pub async fn quit(mut self) {
        let _ = timeout(Duration::from_secs(2), async {
            let _ = self.io.get_mut().write_all(b"QUIT\r\n").await;
            let _ = self.io.get_mut().flush().await;
        })
        .await;
    }

    async fn command(&mut self, cmd: &str, step: &'static str) -> Result<Reply, SmtpError> {
        self.write(cmd.as_bytes(), step).await?;
        self.read_reply(step).await
    }

    async fn write(&mut self, bytes: &[u8], step: &'static str) -> Result<(), SmtpError> {
        timeout(self.timeouts.command, async {
            self.io.get_mut().write_all(bytes).await?;
            self.io.get_mut().flush().await
        })
        .await
        .map_err(|_| SmtpError::Timeout(step))??;
        Ok(())
    }

    async fn read_reply(&mut self, step: &'static str) -> Result<Reply, SmtpError> {
        let t = self.timeouts.command;
        self.read_reply_within(step, t).await
    }

    async fn read_reply_within(&mut self, step: &'static str, limit: Duration) -> Result<Reply, SmtpError> {
        timeout(limit, read_reply(&mut self.io)).await.map_err(|_| SmtpError::Timeout(step))?
    }
}

async fn read_reply(io: &mut BufReader<Box<dyn Io>>) -> Result<Reply, SmtpError> {
    let mut text = String::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::io::AsyncReadExt::take(&mut *io, MAX_LINE as u64).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(SmtpError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            )));
        }
        let l = String::from_utf8_lossy(&line);
        let l = l.trim_end_matches(['\r', '\n']);
        if l.len() < 3 || !l.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
            return Err(SmtpError::Protocol(format!("unreadable reply line `{}`", l.escape_debug())));
        }
        let code: u16 = l[..3].parse().unwrap_or(0);
        let more = l.as_bytes().get(3) == Some(&b'-');
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(l.get(4..).unwrap_or("").trim());
        if !more {
            return Ok(Reply { code, text });
        }
        if text.len() > 64 * 1024 {
            return Err(SmtpError::Protocol("reply too long".into()));
        }
    }
}

async fn tls_wrap(s: &SmtpSettings, tcp: impl Io + 'static) -> Result<impl Io + 'static, SmtpError> {
    let connector = match &s.connector {
        Some(c) => c.clone(),
        None => super::tls::connector(None).map_err(SmtpError::Tls)?,
    };
    let name =
        ServerName::try_from(s.host.clone()).map_err(|e| SmtpError::Tls(format!("bad server name {}: {e}", s.host)))?;
    timeout(s.timeouts.command, connector.connect(name, tcp))
        .await
        .map_err(|_| SmtpError::Timeout("TLS handshake"))?
        .map_err(|e| SmtpError::Tls(e.to_string()))
}

/// Prepares a message for DATA: every line that starts with `.` gets a
/// second one (RFC 5321 section 4.5.2), the message ends with CRLF, and the
/// terminating `.` line follows.
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 8);
    // Whole lines at a time: mail rarely has a line that starts with a dot,
    // and a byte-by-byte copy of every body cost more than its signature.
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', data).map(|i| i + 1).chain(std::iter::once(data.len())) {
        if start == end {
            continue;
        }
        if data[start] == b'.' {
            out.push(b'.');
        }
        out.extend_from_slice(&data[start..end]);
        start = end;
    }
    if !data.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::dot_stuff;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.\r\n..b\r\n"), b"a\r\n..\r\n...b\r\n.\r\n");
        assert_eq!(dot_stuff(b".first"), b"..first\r\n.\r\n");
        assert_eq!(dot_stuff(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(dot_stuff(b"x.y\r\n"), b"x.y\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n.\r\n");
        assert_eq!(dot_stuff(b"\n.\n"), b"\n..\n\r\n.\r\n");
    }

    /// The line-at-a-time copy stuffs exactly the dots a byte-by-byte scan does.
    #[test]
    fn dot_stuffing_agrees_with_a_byte_scan() {
        fn by_bytes(data: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut at_line_start = true;
            for &b in data {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = b == b'\n';
            }
            if !data.ends_with(b"\r\n") {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
            out
        }
        // Every string of up to six bytes over an alphabet that has what matters.
        let alphabet = [b'.', b'\r', b'\n', b'a'];
        let mut cases = vec![Vec::new()];
        for _ in 0..6 {
            let longer: Vec<Vec<u8>> = cases
                .iter()
                .filter(|c| c.len() == cases.last().map_or(0, Vec::len))
                .flat_map(|c| alphabet.iter().map(move |b| [c.as_slice(), &[*b]].concat()))
                .collect();
            cases.extend(longer);
        }
        assert_eq!(cases.len(), (0..=6).map(|n| 4usize.pow(n)).sum::<usize>());
        for c in cases {
            assert_eq!(dot_stuff(&c), by_bytes(&c), "{:?}", String::from_utf8_lossy(&c));
        }
    }
}
