//! Direct delivery (transport kind `mx`): each recipient's domain is looked
//! up (MX, else its A/AAAA as an implicit MX, RFC 5321 §5.1), hosts are
//! tried by preference and address until one takes the session, and the
//! message goes over a pooled, pipelined connection to that host.
//!
//! Shaping is per destination: each MX host has its own connection pool
//! (`connections`, default 10), and a destination domain may have a message
//! rate. TLS is opportunistic (STARTTLS when offered) unless the
//! destination requires it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::dns::{Dns, DnsError};
use crate::shaping::{Rate, RateLimiter};
use crate::smtp::client::{SmtpError, SmtpSettings, Timeouts, TlsMode};
use crate::smtp::pool::Pool;
use crate::smtp::relay::judge;
use crate::smtp::tls;
use crate::transport::{Delivery, Envelope, SessionError, Transport};

/// Settings for one destination domain (or the defaults for all).
#[derive(Debug, Clone)]
pub struct DestinationPolicy {
    /// Sessions at once to each MX host of the destination.
    pub connections: usize,
    /// Messages per time unit to the destination, per node.
    pub rate: Option<Rate>,
    /// Refuse to send without STARTTLS.
    pub require_tls: bool,
}

impl Default for DestinationPolicy {
    fn default() -> Self {
        Self { connections: 10, rate: None, require_tls: false }
    }
}

#[derive(Debug, Clone)]
pub struct MxSettings {
    /// Port on MX hosts (25; tests use a sink's port).
    pub port: u16,
    pub helo_name: String,
    pub timeouts: Timeouts,
    pub defaults: DestinationPolicy,
    /// Per destination domain (lower-case).
    pub destinations: HashMap<String, DestinationPolicy>,
    /// After no MX host of a domain could be reached, its mail is deferred
    /// without new connection attempts for this long (Postfix's "dead
    /// destination"), so a dead domain does not tie up sending slots in
    /// connect timeouts. Zero turns it off.
    pub dead_backoff: std::time::Duration,
    /// Deliver to MX hosts on loopback, private (RFC 1918, ULA), link-local
    /// or unspecified addresses. Off: a domain pointing its MX at such an
    /// address cannot make us talk to ourselves or to internal services.
    pub allow_private: bool,
}

/// Addresses direct delivery does not go to unless allowed.
pub fn is_internal(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 0
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64) // 100.64/10, shared address space
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(std::net::IpAddr::V4(v4)))
        }
    }
}

pub struct MxTransport {
    name: String,
    dns: Dns,
    settings: MxSettings,
    connector: tokio_rustls::TlsConnector,
    /// By (host, address, plain): `plain` pools skip STARTTLS, for hosts
    /// whose TLS handshake fails (opportunistic TLS falls back, as
    /// Postfix's `may` level does).
    pools: Mutex<HashMap<(String, SocketAddr, bool), Arc<Pool>>>,
    limiters: Mutex<HashMap<String, Arc<RateLimiter>>>,
    /// Domains none of whose hosts answered: until when, and why.
    dead: Mutex<HashMap<String, (tokio::time::Instant, String)>>,
}

/// Why a host could not take the session (for the reply kept on the
/// recipient when every host failed).
enum HostFailure {
    /// Try the next host.
    Next(String),
    /// The host refused the session with a 5xx greeting or EHLO: RFC 5321
    /// says try the next MX, but if all refuse, the reply is permanent.
    Refused(String),
}

impl MxTransport {
    pub fn new(name: impl Into<String>, dns: Dns, settings: MxSettings) -> Self {
        Self {
            name: name.into(),
            dns,
            settings,
            connector: tls::unverified_connector(),
            pools: Mutex::new(HashMap::new()),
            limiters: Mutex::new(HashMap::new()),
            dead: Mutex::new(HashMap::new()),
        }
    }

    fn policy(&self, domain: &str) -> &DestinationPolicy {
        self.settings.destinations.get(domain).unwrap_or(&self.settings.defaults)
    }

    fn pool(&self, host: &str, addr: SocketAddr, policy: &DestinationPolicy, plain: bool) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry((host.to_string(), addr, plain))
            .or_insert_with(|| {
                let tls = match (policy.require_tls, plain) {
                    (true, _) => TlsMode::StartTls,
                    (false, false) => TlsMode::Opportunistic,
                    (false, true) => TlsMode::None,
                };
                let settings = SmtpSettings {
                    host: host.to_string(),
                    port: addr.port(),
                    tls,
                    username: None,
                    password: None,
                    helo_name: self.settings.helo_name.clone(),
                    timeouts: self.settings.timeouts.clone(),
                    connector: Some(self.connector.clone()),
                    connect_addr: Some(addr),
                };
                Arc::new(Pool::new(settings, policy.connections))
            })
            .clone()
    }

    fn still_dead(&self, domain: &str) -> Option<String> {
        let mut dead = self.dead.lock().unwrap_or_else(|p| p.into_inner());
        match dead.get(domain) {
            Some((until, why)) if *until > tokio::time::Instant::now() => Some(why.clone()),
            Some(_) => {
                dead.remove(domain);
                None
            }
            None => None,
        }
    }

    fn mark_dead(&self, domain: &str, why: &str) {
        if self.settings.dead_backoff.is_zero() {
            return;
        }
        let until = tokio::time::Instant::now() + self.settings.dead_backoff;
        let short: String = why.chars().take(200).collect();
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).insert(domain.to_string(), (until, short));
    }

    fn limiter(&self, domain: &str, rate: Rate) -> Arc<RateLimiter> {
        let mut limiters = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
        limiters.entry(domain.to_string()).or_insert_with(|| Arc::new(RateLimiter::new(rate))).clone()
    }

    /// The hosts to try, best first: MX hosts by preference, or the domain
    /// itself when it has no MX. `Err` carries the deliveries to report.
    async fn hosts(&self, domain: &str, n: usize) -> Result<Vec<String>, Vec<Delivery>> {
        let all = |d: Delivery| std::iter::repeat_n(d, n).collect::<Vec<_>>();
        match self.dns.mx(domain).await {
            Ok(hosts) if hosts.is_empty() => {
                Err(all(Delivery::Permanent(format!("556 5.1.10 {domain} accepts no mail (null MX, RFC 7505)"))))
            }
            Ok(hosts) => Ok(shuffle_equal_preferences(hosts)),
            Err(DnsError::NotFound(_)) => match self.dns.ips(domain).await {
                Ok(_) => Ok(vec![domain.to_string()]),
                Err(DnsError::NotFound(_)) => Err(all(Delivery::Permanent(format!(
                    "550 5.1.2 {domain} has no MX and no address: the domain does not receive mail"
                )))),
                Err(DnsError::Failed(e)) => {
                    Err(all(Delivery::Transient(format!("451 4.4.3 looking up {domain}: {e}"))))
                }
            },
            Err(DnsError::Failed(e)) => Err(all(Delivery::Transient(format!("451 4.4.3 looking up {domain}: {e}")))),
        }
    }

    /// Sends to one destination domain: the first host and address that
    /// takes the session gets the transaction.
    async fn send_domain(&self, domain: &str, from: &str, rcpts: &[String], raw: &[u8]) -> Vec<Delivery> {
        if let Some(why) = self.still_dead(domain) {
            let d =
                Delivery::Transient(format!("451 4.4.1 {domain} was unreachable moments ago ({why}); not retried yet"));
            return rcpts.iter().map(|_| d.clone()).collect();
        }
        let policy = self.policy(domain).clone();
        if let Some(rate) = policy.rate {
            self.limiter(domain, rate).acquire(1).await;
        }
        let hosts = match self.hosts(domain, rcpts.len()).await {
            Ok(h) => h,
            Err(deliveries) => return deliveries,
        };
        let mut failures = Vec::new();
        let mut all_refused = true;
        for host in &hosts {
            let ips = match self.dns.ips(host).await {
                Ok(ips) => ips,
                Err(e) => {
                    failures.push(format!("{host}: {e}"));
                    all_refused = false;
                    continue;
                }
            };
            for ip in ips {
                if !self.settings.allow_private && is_internal(ip) {
                    all_refused = false;
                    failures.push(format!(
                        "{host} [{ip}]: an internal address, not delivered to (delivery.mx_allow_private_addresses)"
                    ));
                    continue;
                }
                let addr = SocketAddr::new(ip, self.settings.port);
                match self.try_host(host, addr, &policy, from, rcpts, raw).await {
                    Ok(deliveries) => return deliveries,
                    Err(HostFailure::Next(why)) => {
                        all_refused = false;
                        failures.push(why);
                    }
                    Err(HostFailure::Refused(why)) => failures.push(why),
                }
            }
        }
        let summary = failures.join("; ");
        let d = if all_refused && !failures.is_empty() {
            Delivery::Permanent(summary)
        } else {
            self.mark_dead(domain, &summary);
            Delivery::Transient(format!("no MX host of {domain} took the message: {summary}"))
        };
        rcpts.iter().map(|_| d.clone()).collect()
    }

    async fn try_host(
        &self,
        host: &str,
        addr: SocketAddr,
        policy: &DestinationPolicy,
        from: &str,
        rcpts: &[String],
        raw: &[u8],
    ) -> Result<Vec<Delivery>, HostFailure> {
        let describe = |e: &SmtpError| format!("{host} [{addr}]: {e}");
        let classify = |e: &SmtpError| match e {
            SmtpError::Refused(r) if r.is_permanent() => HostFailure::Refused(describe(e)),
            _ => HostFailure::Next(describe(e)),
        };
        let mut pool = self.pool(host, addr, policy, false);
        let mut lease = match pool.get().await {
            Ok(l) => l,
            // Opportunistic TLS: a handshake that fails is retried in plain
            // text rather than leaving the mail undelivered.
            Err(e @ SmtpError::Tls(_)) if !policy.require_tls => {
                tracing::info!(%host, %addr, error = %e, "STARTTLS failed; delivering without TLS");
                pool = self.pool(host, addr, policy, true);
                pool.get().await.map_err(|e| classify(&e))?
            }
            Err(e) => return Err(classify(&e)),
        };
        let mut result = lease.conn.send(from, rcpts, raw).await;
        if result.is_err() && lease.reused {
            lease = pool.reconnect(lease).await.map_err(|e| classify(&e))?;
            result = lease.conn.send(from, rcpts, raw).await;
        }
        let out = match result {
            Ok(replies) => Ok(judge(&replies)),
            // Trouble mid-transaction: the message may have arrived; retry
            // later rather than sending to another host now.
            Err(e) => Ok(rcpts.iter().map(|_| Delivery::Transient(describe(&e))).collect()),
        };
        pool.put(lease).await;
        out
    }
}

/// Hosts of equal preference in random order (RFC 5321 §5.1), so load
/// spreads over them; lower preference values first.
fn shuffle_equal_preferences(mut hosts: Vec<(u16, String)>) -> Vec<String> {
    use rand::seq::SliceRandom;
    let mut rng = rand::thread_rng();
    hosts.sort_by_key(|(p, _)| *p);
    let mut out = Vec::with_capacity(hosts.len());
    for group in hosts.chunk_by(|a, b| a.0 == b.0) {
        let mut names: Vec<String> = group.iter().map(|(_, h)| h.clone()).collect();
        names.shuffle(&mut rng);
        out.extend(names);
    }
    out
}

#[async_trait]
impl Transport for MxTransport {
    fn name(&self) -> &str {
        &self.name
    }

    /// Never a session error: a destination that cannot be reached defers
    /// its own recipients and must not open the circuit for every other
    /// destination.
    async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<Vec<Delivery>, SessionError> {
        // Group recipients by domain, keeping their positions.
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, rcpt) in envelope.rcpts.iter().enumerate() {
            let domain = rcpt.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
            match groups.iter_mut().find(|(d, _)| *d == domain) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((domain, vec![i])),
            }
        }
        let mut out: Vec<Option<Delivery>> = vec![None; envelope.rcpts.len()];
        for (domain, idx) in groups {
            let rcpts: Vec<String> = idx.iter().map(|&i| envelope.rcpts[i].clone()).collect();
            let deliveries = if domain.is_empty() {
                rcpts.iter().map(|r| Delivery::Permanent(format!("553 5.1.3 `{r}` has no domain"))).collect()
            } else {
                self.send_domain(&domain, &envelope.from, &rcpts, raw).await
            };
            for (i, d) in idx.into_iter().zip(deliveries) {
                out[i] = Some(d);
            }
        }
        Ok(out.into_iter().map(|d| d.unwrap_or_else(|| Delivery::Transient("not attempted".into()))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.5",
            "172.16.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.5", "8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn equal_preferences_are_shuffled_lower_first() {
        let hosts = vec![(20, "c".to_string()), (10, "a".to_string()), (10, "b".to_string())];
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..64 {
            let order = shuffle_equal_preferences(hosts.clone());
            assert_eq!(order[2], "c");
            seen_first.insert(order[0].clone());
        }
        assert_eq!(seen_first.len(), 2, "both preference-10 hosts come first sometimes");
    }
}
