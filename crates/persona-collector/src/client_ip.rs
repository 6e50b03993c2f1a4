//! The customer's address for `context.ip`: the connection's peer, or, when the peer is a
//! trusted proxy, the nearest address in `X-Forwarded-For` that is not itself trusted.
//!
//! A proxy appends the address it was reached from to whatever `X-Forwarded-For` the
//! client sent, so only the entries the trusted proxies added are known to be true. Read
//! from the right, past the trusted ones, the first other address is the customer's; the
//! entries left of it are whatever the client chose to write. (nginx's `real_ip` with
//! `real_ip_recursive on` and Express's `trust proxy` read it the same way.) An entry in
//! that walk that is no address (Squid writes `unknown`), or a header that is not text,
//! leaves the address unknown rather than guessed.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use ipnet::IpNet;

/// The proxies trusted when the configuration names none: this machine and the private,
/// link-local and unique-local networks, where load balancers and reverse proxies live.
/// A client connecting from the internet is not believed, so it cannot choose its
/// `context.ip` by sending `X-Forwarded-For` itself. (One whose connection arrives from a
/// private address without its own address appended, through a NAT such as Docker's port
/// proxy, is believed: name the real proxies in the configuration there.)
pub fn default_trusted_proxies() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .map(|n| n.parse().expect("valid network"))
    .collect()
}

/// Reads `text` as a network (`10.0.0.0/8`) or a single address (`203.0.113.9`). An
/// IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) becomes the IPv4 one, as the addresses
/// it is matched against do.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    let net = text
        .parse()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))?;
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .ok()
                .map(IpNet::V4),
            None => Some(net),
        },
        _ => Some(net),
    }
}

/// The client's address as text, or none when it is unknown: no peer address, or a
/// trusted proxy that wrote something other than an address (Squid writes `unknown`) in
/// the place of the client's.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    trusted: &[IpNet],
) -> Option<String> {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    // An IPv4 client over an IPv6 socket (`::ffff:203.0.113.5`) is stored as IPv4, so that
    // IPv4 networks (here and in `processor.internal_networks`) match it.
    let trusts = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut nearest = peer.to_canonical();
    if !trusts(&nearest) {
        return Some(nearest.to_string());
    }
    // Several headers count as one list, in order.
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let hop = value.to_str().ok()?;
        hops.extend(hop.split(',').map(str::trim).filter(|hop| !hop.is_empty()));
    }
    while let Some(hop) = hops.pop() {
        nearest = address(hop)?.to_canonical();
        if !trusts(&nearest) {
            break;
        }
    }
    // Every hop trusted: the client itself is on an internal network.
    Some(nearest.to_string())
}

/// One `X-Forwarded-For` entry, with or without a port (`1.2.3.4:5`, `[2001:db8::1]:443`)
/// or brackets.
fn address(hop: &str) -> Option<IpAddr> {
    hop.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    /// The address for a request from `peer` with these `X-Forwarded-For` headers, given
    /// as bytes so that one need not be text.
    fn ip(forwarded: &[&str], peer: &str, trusted: &[IpNet]) -> Option<String> {
        let forwarded: Vec<&[u8]> = forwarded.iter().map(|f| f.as_bytes()).collect();
        ip_of_bytes(&forwarded, peer, trusted)
    }

    fn ip_of_bytes(forwarded: &[&[u8]], peer: &str, trusted: &[IpNet]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for f in forwarded {
            headers.append("x-forwarded-for", HeaderValue::from_bytes(f).unwrap());
        }
        let mut extensions = axum::http::Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 40000)));
        client_ip(&headers, &extensions, trusted)
    }

    #[test]
    fn only_the_hops_trusted_proxies_added_are_believed() {
        let default = default_trusted_proxies();
        let cases: &[(&[&str], &str, Option<&str>)] = &[
            // A client on the internet, straight to the server: its header is ignored.
            (&["10.0.0.1"], "198.51.100.20", Some("198.51.100.20")),
            // Through the proxy, which appended the real address to a forged one.
            (&["1.2.3.4, 203.0.113.5"], "10.0.0.9", Some("203.0.113.5")),
            // Two proxies, and the list split over two headers.
            (
                &["203.0.113.5", "10.0.0.1"],
                "127.0.0.1",
                Some("203.0.113.5"),
            ),
            // The customer is on the office network, behind the internal proxy.
            (&["10.1.2.3, 10.0.0.1"], "10.0.0.9", Some("10.1.2.3")),
            // A trusted proxy that could not tell, or whose header is no text.
            (&["unknown"], "10.0.0.9", None),
            (&["192.0.2.1, unknown, 10.0.0.1"], "10.0.0.9", None),
            (
                &["::ffff:10.0.0.1", "[::ffff:203.0.113.6]:443"],
                "::ffff:10.0.0.9",
                Some("203.0.113.6"),
            ),
            (&[], "::ffff:10.0.0.9", Some("10.0.0.9")),
        ];
        for (forwarded, peer, want) in cases {
            assert_eq!(
                ip(forwarded, peer, &default).as_deref(),
                *want,
                "{forwarded:?} from {peer}"
            );
        }
        assert_eq!(
            ip_of_bytes(&[b"x\x80, 203.0.113.5"], "10.0.0.9", &default),
            None,
            "not the proxy's own"
        );
        // With no proxy trusted, the peer is the customer.
        assert_eq!(
            ip(&["203.0.113.5"], "10.0.0.9", &[]).as_deref(),
            Some("10.0.0.9")
        );
        // A proxy with a public address, named in the configuration.
        let cdn = [parse_network("198.51.100.0/24").unwrap()];
        assert_eq!(
            ip(&["203.0.113.5"], "198.51.100.20", &cdn).as_deref(),
            Some("203.0.113.5")
        );
    }

    #[test]
    fn networks_and_single_addresses_parse() {
        for (text, want) in [
            (" 10.0.0.0/8 ", "10.0.0.0/8"),
            ("203.0.113.9", "203.0.113.9/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("::ffff:203.0.113.9", "203.0.113.9/32"),
        ] {
            assert_eq!(parse_network(text).unwrap().to_string(), want, "{text}");
        }
        assert!(parse_network("10.0.0.0/33").is_none() && parse_network("proxy").is_none());
    }
}
