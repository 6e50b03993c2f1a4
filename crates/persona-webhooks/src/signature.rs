//! The `X-Persona-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256>` of
//! `"<t>.<raw body>"` under the webhook's secret, as Stripe signs its webhooks. The time
//! is inside the signed text, so a receiver that refuses old times cannot be replayed an
//! old delivery; it is taken afresh for every attempt.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's value for `body` sent at `unix_seconds`.
pub fn sign(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let t = unix_seconds.to_string();
    let mac = hmac_sha256(secret.as_bytes(), &[t.as_bytes(), b".", body]);
    format!("t={t},v1={}", hex(&mac))
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_is_hmac_sha256() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_header_signs_the_time_and_the_body() {
        let header = sign("Jefe", 1_700_000_000, b"{}");
        let expected = hex(&hmac_sha256(b"Jefe", &[b"1700000000.{}"]));
        assert_eq!(header, format!("t=1700000000,v1={expected}"));
        assert_ne!(header, sign("Jefe", 1_700_000_001, b"{}"));
    }
}
