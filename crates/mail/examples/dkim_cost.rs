//! CPU cost of one DKIM signature of a 10 KB message, per algorithm, and of
//! RSA through ring (what Epistle used before) beside OpenSSL (what it uses).
//!
//!     cargo run --release -p epistle-mail --example dkim_cost [N]
//!
//! Prints microseconds per signature (median of five rounds of N signatures).

use std::time::Instant;

use epistle_mail::dkim::{Algorithm, SIGNED_HEADERS, Signer, generate};
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};

fn message() -> Vec<u8> {
    let mut m = b"From: Shop <orders@shop.example>\r\nTo: someone@dest.example\r\nSubject: Your order\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@shop.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\n"
        .to_vec();
    while m.len() < 10_240 {
        m.extend_from_slice(b"Thank you for your order. It ships within two days from our warehouse.\r\n");
    }
    m
}

fn per_signature(n: u32, mut f: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[2]
}

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let msg = message();
    for algorithm in [Algorithm::Rsa, Algorithm::Ed25519] {
        let key = generate(algorithm, 2048).expect("key");
        let signer = Signer::new(algorithm, "shop.example", "s1", &key.private_der).expect("signer");
        let us = per_signature(n, || {
            signer.header(&msg).expect("sign");
        });
        println!("{:<28} {us:>8.1} µs per signature", format!("{algorithm} (Epistle's signer)"));
        if algorithm == Algorithm::Rsa {
            let ring_key = RsaKey::<Sha256>::from_der(&key.private_der).expect("ring reads the key");
            let ring = DkimSigner::from_key(ring_key)
                .domain("shop.example")
                .selector("s1")
                .headers(SIGNED_HEADERS.iter().copied())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed);
            let us = per_signature(n, || {
                ring.sign(&msg).expect("sign").to_header();
            });
            println!("{:<28} {us:>8.1} µs per signature", "rsa (ring, for comparison)");
        }
    }
}
