//! `deny_private = true` on an `http` destination: forebay refuses to send to loopback,
//! private, link-local and other non-public addresses, checked after name resolution, so
//! a URL (or a redirect, or a DNS answer) cannot point a delivery at the machine itself
//! or the network behind it (server-side request forgery).
//!
//! Names are resolved here and only public addresses are handed to the HTTP client; an
//! address written in the URL is checked when the configuration loads, and one in a
//! redirect's `Location` before it is followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// True for an address a delivery must not reach under `deny_private`.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private_v4(v4),
            None => is_private_v6(v6),
        },
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let [first, second, ..] = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside some networks)
        || (first == 0x2001 && second == 0x0db8) // documentation
        || (first == 0x0100 && ip.segments()[1..4] == [0; 3]) // discard-only
        || (first == 0x0064 && second == 0xff9b && ip.segments()[2] == 1) // local-use NAT64
        || embedded_v4(ip).is_some_and(is_private_v4)
}

/// The IPv4 address an IPv6 address carries to its destination, for the forms that
/// reach an IPv4 host through a translator or tunnel: without this, `[64:ff9b::7f00:1]`
/// would be a way to write 127.0.0.1.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // IPv4-compatible (deprecated): ::a.b.c.d
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        // Well-known NAT64 prefix: 64:ff9b::a.b.c.d
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        // 6to4: 2002:aabb:ccdd::/48 tunnels to a.b.c.d
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        // Teredo: 2001:0::/32, the client's address inverted in the last 32 bits
        [0x2001, 0, _, _, _, _, hi, lo] => Some(Ipv4Addr::from(!u32::from(low(hi, lo)))),
        _ => None,
    }
}

/// The message for a refused address (no URL: it may hold credentials).
pub fn refusal(what: &str) -> String {
    format!(
        "{what} is not a public address, and the destination has deny_private = true; point it at a public address or set deny_private = false"
    )
}

/// Name resolution that keeps only public addresses.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| !is_private(a.ip()))
                .collect();
            if public.is_empty() && !all.is_empty() {
                return Err(refusal(&format!("{host} resolves to {}", all[0].ip())).into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// The address written in `url` as its host, if it is one.
pub fn literal_host(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused_public_ones_not() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::808:808",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "fec0::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(is_private(refused.parse().unwrap()), "{refused}");
        }
        for allowed in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ] {
            assert!(!is_private(allowed.parse().unwrap()), "{allowed}");
        }
    }

    #[test]
    fn an_address_in_the_url_is_found() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert_eq!(
            literal_host(&url("http://127.0.0.1:8080/x")),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            literal_host(&url("http://[::1]/")),
            Some("::1".parse().unwrap())
        );
        assert_eq!(literal_host(&url("https://hooks.example.com/")), None);
    }
}
