//! DNS lookups for domain verification and direct MX delivery, through
//! hickory-resolver. The name servers are configurable
//! (`dns.nameservers = ["127.0.0.1:5353"]`) so tests run against a local
//! server; with none configured, `/etc/resolv.conf` is used.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, ProtocolConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::{ProtoError, ProtoErrorKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist, or has no record of the type asked.
    #[error("no {0} record")]
    NotFound(&'static str),
    /// The lookup itself failed (timeout, SERVFAIL, refused): try later.
    #[error("DNS lookup failed: {0}")]
    Failed(String),
}

#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

impl Dns {
    /// A resolver asking `nameservers` (UDP, then TCP for truncated
    /// answers), or the system's when the list is empty. Without `cache`,
    /// every lookup asks the server: what domain verification wants, since
    /// a record just published must be seen at once.
    pub fn new(nameservers: &[SocketAddr], timeout: Duration, cache: bool) -> Result<Self, String> {
        let builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's DNS configuration (/etc/resolv.conf): {e}"))?
        } else {
            let mut group = NameServerConfigGroup::with_capacity(nameservers.len() * 2);
            for addr in nameservers {
                for protocol in [ProtocolConfig::Udp, ProtocolConfig::Tcp] {
                    group.push(NameServerConfig {
                        socket_addr: *addr,
                        protocol,
                        trust_negative_responses: true,
                        bind_addr: None,
                    });
                }
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                TokioConnectionProvider::default(),
            )
        };
        let mut builder = builder;
        let opts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        // Delivery asks again on every retry; a short cache keeps a burst to
        // one destination from asking for each message.
        opts.positive_max_ttl = Some(Duration::from_secs(300));
        // And an answer with a TTL of zero (some servers' local records) is
        // kept a few seconds, not asked for again for every message.
        opts.positive_min_ttl = Some(Duration::from_secs(5));
        opts.negative_max_ttl = Some(Duration::from_secs(60));
        opts.edns0 = true;
        opts.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
        if !cache {
            opts.cache_size = 0;
        }
        Ok(Self { resolver: builder.build() })
    }

    /// The strings of each TXT record at `name`, each record's strings
    /// joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let lookup = self.resolver.txt_lookup(fqdn(name)).await.map_err(|e| classify(e, "TXT"))?;
        Ok(lookup
            .iter()
            .map(|txt| txt.txt_data().iter().map(|part| String::from_utf8_lossy(part).into_owned()).collect())
            .collect())
    }

    /// MX hosts of `domain` by preference (lowest first), without the
    /// trailing dot. An empty list means the domain has a "null MX"
    /// (RFC 7505: it accepts no mail).
    pub async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, DnsError> {
        let lookup = self.resolver.mx_lookup(fqdn(domain)).await.map_err(|e| classify(e, "MX"))?;
        let mut hosts: Vec<(u16, String)> = lookup
            .iter()
            .map(|mx| (mx.preference(), mx.exchange().to_ascii().trim_end_matches('.').to_ascii_lowercase()))
            .filter(|(_, host)| !host.is_empty())
            .collect();
        hosts.sort();
        Ok(hosts)
    }

    /// IPv4 and IPv6 addresses of `host`.
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let lookup = self.resolver.lookup_ip(fqdn(host)).await.map_err(|e| classify(e, "A/AAAA"))?;
        let ips: Vec<IpAddr> = lookup.iter().collect();
        if ips.is_empty() { Err(DnsError::NotFound("A/AAAA")) } else { Ok(ips) }
    }
}

/// Names are always absolute: no search domains appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

/// NXDOMAIN and an empty answer mean "not there"; SERVFAIL, REFUSED and
/// timeouts mean "could not tell" (hickory reports both as no records).
fn classify(e: ProtoError, kind: &'static str) -> DnsError {
    match e.kind() {
        ProtoErrorKind::NoRecordsFound(no)
            if matches!(no.response_code, ResponseCode::NoError | ResponseCode::NXDomain) =>
        {
            DnsError::NotFound(kind)
        }
        ProtoErrorKind::NoRecordsFound(no) => {
            DnsError::Failed(format!("the name server answered {}", no.response_code))
        }
        _ => DnsError::Failed(e.to_string()),
    }
}
