//! The resolver against a real (local) DNS server.

use std::net::Ipv4Addr;
use std::time::Duration;

use epistle_deliver::dns::{Dns, DnsError};
use epistle_testkit::DnsServer;

async fn setup() -> (DnsServer, Dns) {
    let server = DnsServer::start().await;
    let dns = Dns::new(&[server.addr], Duration::from_secs(2), false).unwrap();
    (server, dns)
}

#[tokio::test]
async fn txt_records_are_joined_and_long_ones_survive() {
    let (server, dns) = setup().await;
    server.txt("shop.example", "v=spf1 a mx ~all");
    let long = format!("v=DKIM1; k=rsa; p={}", "A".repeat(1200));
    server.txt("s1._domainkey.shop.example", &long);
    assert_eq!(dns.txt("shop.example").await.unwrap(), vec!["v=spf1 a mx ~all".to_string()]);
    // 1,200 bytes: several strings, and an answer over 512 bytes (TCP).
    assert_eq!(dns.txt("S1._domainkey.Shop.Example.").await.unwrap(), vec![long]);
}

#[tokio::test]
async fn missing_names_and_failures_are_told_apart() {
    let (server, dns) = setup().await;
    server.a("only-a.example", Ipv4Addr::new(127, 0, 0, 9));
    server.servfail("broken.example");
    assert_eq!(dns.txt("nowhere.example").await, Err(DnsError::NotFound("TXT")));
    assert_eq!(dns.txt("only-a.example").await, Err(DnsError::NotFound("TXT")));
    let r = dns.txt("broken.example").await;
    assert!(matches!(r, Err(DnsError::Failed(_))), "{r:?}");
}

#[tokio::test]
async fn mx_hosts_come_by_preference_and_addresses_resolve() {
    let (server, dns) = setup().await;
    server.mx("dest.example", 20, "mx2.dest.example");
    server.mx("dest.example", 10, "MX1.dest.example");
    server.a("mx1.dest.example", Ipv4Addr::new(127, 0, 0, 1));
    assert_eq!(
        dns.mx("dest.example").await.unwrap(),
        vec![(10, "mx1.dest.example".to_string()), (20, "mx2.dest.example".to_string())]
    );
    assert_eq!(dns.ips("mx1.dest.example").await.unwrap(), vec![Ipv4Addr::new(127, 0, 0, 1)]);
    assert_eq!(dns.ips("mx2.dest.example").await, Err(DnsError::NotFound("A/AAAA")));
    assert_eq!(dns.ips("10.0.0.1").await.unwrap(), vec![Ipv4Addr::new(10, 0, 0, 1)]);
}

#[tokio::test]
async fn without_cache_a_new_record_is_seen_at_once() {
    let (server, dns) = setup().await;
    assert!(dns.txt("_dmarc.shop.example").await.is_err());
    server.txt("_dmarc.shop.example", "v=DMARC1; p=none");
    assert_eq!(dns.txt("_dmarc.shop.example").await.unwrap(), vec!["v=DMARC1; p=none".to_string()]);
}

/// The delivery resolver caches (a burst to one domain asks once), and keeps even an answer
/// with a TTL of zero for a few seconds rather than asking again for every message.
#[tokio::test]
async fn delivery_lookups_are_cached_even_with_a_zero_ttl() {
    let server = DnsServer::start().await;
    server.set_ttl(0);
    server.mx("dest.example", 10, "mx.dest.example");
    let dns = Dns::new(&[server.addr], Duration::from_secs(2), true).unwrap();
    for _ in 0..5 {
        assert_eq!(dns.mx("dest.example").await.unwrap(), vec![(10, "mx.dest.example".to_string())]);
    }
    let asked = server.queries().iter().filter(|(name, _)| name == "dest.example").count();
    assert_eq!(asked, 1, "{:?}", server.queries());
    // Without the cache (domain verification), every lookup asks.
    let fresh = Dns::new(&[server.addr], Duration::from_secs(2), false).unwrap();
    fresh.mx("dest.example").await.unwrap();
    fresh.mx("dest.example").await.unwrap();
    assert_eq!(server.queries().iter().filter(|(name, _)| name == "dest.example").count(), 3);
}
