//! A small authoritative DNS server on a free port (UDP and TCP), serving
//! TXT, MX, A and AAAA records that a test sets, so domain verification and
//! MX delivery are tested against real DNS traffic. Names it does not know
//! get NXDOMAIN; names set to fail get SERVFAIL.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
enum Rec {
    Txt(Vec<String>),
    Mx(u16, String),
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    ServFail,
}

type Zone = Arc<Mutex<HashMap<String, Vec<Rec>>>>;

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Zone,
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
    /// The TTL of every answer (60 s unless set).
    ttl: Arc<AtomicU32>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    pub async fn start() -> Self {
        // UDP and TCP on the same port: bind UDP on a free port, then TCP on
        // it (retrying with another port in the rare case it is taken).
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let zone: Zone = Arc::default();
        let queries: Arc<Mutex<Vec<(String, RecordType)>>> = Arc::default();
        let ttl = Arc::new(AtomicU32::new(60));
        let udp = Arc::new(udp);
        let (z, q, t) = (zone.clone(), queries.clone(), ttl.clone());
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else { return };
                if let Some(reply) = answer(&z, &q, t.load(Ordering::Relaxed), &buf[..n], 512) {
                    let _ = udp.send_to(&reply, peer).await;
                }
            }
        });
        let (z, q, t) = (zone.clone(), queries.clone(), ttl.clone());
        let tcp_task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = tcp.accept().await else { return };
                let (z, q, t) = (z.clone(), q.clone(), t.clone());
                tokio::spawn(async move {
                    loop {
                        let Ok(len) = sock.read_u16().await else { return };
                        let mut buf = vec![0u8; len as usize];
                        if sock.read_exact(&mut buf).await.is_err() {
                            return;
                        }
                        let Some(reply) = answer(&z, &q, t.load(Ordering::Relaxed), &buf, u16::MAX as usize) else {
                            return;
                        };
                        let _ = sock.write_u16(reply.len() as u16).await;
                        if sock.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, zone, queries, ttl, tasks: vec![udp_task, tcp_task] }
    }

    /// Answers from now on with this TTL (seconds).
    pub fn set_ttl(&self, seconds: u32) {
        self.ttl.store(seconds, Ordering::Relaxed);
    }

    fn add(&self, name: &str, rec: Rec) {
        self.zone.lock().unwrap().entry(key(name)).or_default().push(rec);
    }

    /// Adds a TXT record; values over 255 bytes are split into several
    /// strings, as DNS requires.
    pub fn txt(&self, name: &str, value: &str) {
        let parts = value.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        self.add(name, Rec::Txt(parts));
    }

    pub fn mx(&self, name: &str, preference: u16, host: &str) {
        self.add(name, Rec::Mx(preference, host.to_string()));
    }

    pub fn a(&self, name: &str, ip: Ipv4Addr) {
        self.add(name, Rec::A(ip));
    }

    pub fn aaaa(&self, name: &str, ip: Ipv6Addr) {
        self.add(name, Rec::Aaaa(ip));
    }

    /// Every query for `name` fails with SERVFAIL.
    pub fn servfail(&self, name: &str) {
        self.zone.lock().unwrap().insert(key(name), vec![Rec::ServFail]);
    }

    /// Forgets every record of `name`.
    pub fn remove(&self, name: &str) {
        self.zone.lock().unwrap().remove(&key(name));
    }

    /// The queries received so far: (name, type).
    pub fn queries(&self) -> Vec<(String, RecordType)> {
        self.queries.lock().unwrap().clone()
    }
}

fn answer(
    zone: &Zone,
    log: &Mutex<Vec<(String, RecordType)>>,
    ttl: u32,
    request: &[u8],
    limit: usize,
) -> Option<Vec<u8>> {
    let req = Message::from_vec(request).ok()?;
    let query = req.queries().first()?.clone();
    let qname = key(&query.name().to_ascii());
    let qtype = query.query_type();
    log.lock().unwrap().push((qname.clone(), qtype));
    let mut resp = Message::new(req.id(), MessageType::Response, OpCode::Query);
    resp.set_authoritative(true);
    resp.set_recursion_desired(req.recursion_desired());
    resp.add_query(query.clone());
    let records = zone.lock().unwrap().get(&qname).cloned();
    match records {
        None => {
            resp.set_response_code(ResponseCode::NXDomain);
        }
        Some(recs) if recs.iter().any(|r| matches!(r, Rec::ServFail)) => {
            resp.set_response_code(ResponseCode::ServFail);
        }
        Some(recs) => {
            let name = query.name().clone();
            for r in recs {
                let rdata = match (r, qtype) {
                    (Rec::Txt(parts), RecordType::TXT) => RData::TXT(TXT::new(parts)),
                    (Rec::Mx(pref, host), RecordType::MX) => {
                        RData::MX(MX::new(pref, Name::from_ascii(format!("{}.", key(&host))).ok()?))
                    }
                    (Rec::A(ip), RecordType::A) => RData::A(A(ip)),
                    (Rec::Aaaa(ip), RecordType::AAAA) => RData::AAAA(AAAA(ip)),
                    _ => continue,
                };
                resp.add_answer(Record::from_rdata(name.clone(), ttl, rdata));
            }
        }
    }
    let bytes = resp.to_vec().ok()?;
    if bytes.len() > limit {
        // The header (and its id) is kept; the client retries over TCP.
        return resp.truncate().to_vec().ok();
    }
    Some(bytes)
}
