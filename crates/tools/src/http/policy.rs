//! Where `builtin:http` may connect: the host allowlist, and the addresses a host resolves to.
//!
//! Every hop of a request (the first URL and each redirect) goes through [`Policy::check`],
//! which resolves the host itself so that the connection can be pinned to the addresses that
//! were checked; a second lookup by the HTTP client could answer differently (DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

/// Says why an address is not public (e.g. "a loopback address"), or `None` if it is.
pub(crate) type Classify = fn(IpAddr) -> Option<&'static str>;

/// The hosts and addresses one `builtin:http` entry may reach.
pub(crate) struct Policy {
    /// Lowercase, without a trailing dot; `*.example.com` matches subdomains of example.com.
    allow_hosts: Vec<String>,
    allow_private: bool,
    classify: Classify,
}

/// A checked hop: the host as written in the URL and the addresses to connect to.
pub(crate) struct Target {
    /// The URL's host, for messages and for pinning (`[::1]` for an IPv6 literal).
    pub(crate) host: String,
    /// Set for a domain name: the checked addresses the connection is pinned to.
    pub(crate) pinned: Option<Vec<SocketAddr>>,
}

impl Policy {
    /// A policy that refuses non-public addresses (per `classify`) unless `allow_private`.
    pub(crate) fn new(allow_hosts: &[String], allow_private: bool, classify: Classify) -> Policy {
        Policy {
            allow_hosts: allow_hosts.iter().map(|h| normalize(h)).collect(),
            allow_private,
            classify,
        }
    }

    /// Checks the scheme, the allowlist and every address the host resolves to.
    ///
    /// The error is the message for the model, naming the host and why it was refused.
    pub(crate) async fn check(&self, url: &Url) -> Result<Target, String> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "only http and https URLs are allowed, not `{scheme}:`"
            ));
        }
        let shown = match url.host_str() {
            Some(host) if !host.is_empty() => host.to_string(),
            _ => return Err("the URL has no host".to_string()),
        };
        if !self.allows_host(&shown) {
            return Err(format!("host `{shown}` is not in allow_hosts"));
        }
        // The URL parser has normalized IP literals (`0x7f.1` is `127.0.0.1`), and IPv6 ones
        // are bracketed.
        let literal = match shown.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            None => shown.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        };
        if let Some(ip) = literal {
            self.check_ip(ip, &shown, false)?;
            return Ok(Target {
                host: shown,
                pinned: None,
            });
        }
        let port = url.port_or_known_default().unwrap_or(0);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((shown.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve `{shown}`: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("`{shown}` resolves to no address"));
        }
        for addr in &addrs {
            self.check_ip(addr.ip(), &shown, true)?;
        }
        Ok(Target {
            host: shown,
            pinned: Some(addrs),
        })
    }

    fn check_ip(&self, ip: IpAddr, shown: &str, resolved: bool) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        match (self.classify)(ip) {
            None => Ok(()),
            Some(kind) if resolved => Err(format!(
                "`{shown}` resolves to {ip}, {kind}; set allow_private = true to allow it"
            )),
            Some(kind) => Err(format!(
                "`{shown}` is {kind}; set allow_private = true to allow it"
            )),
        }
    }

    /// Whether `host` (as in a URL) is allowlisted; IP literals must be listed as written.
    fn allows_host(&self, host: &str) -> bool {
        let host = normalize(host);
        self.allow_hosts.iter().any(|allowed| {
            match allowed.strip_prefix("*.") {
                // A strict subdomain: `a.example.com` but neither `example.com` nor
                // `badexample.com`.
                Some(parent) => host
                    .strip_suffix(parent)
                    .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
                None => *allowed == host,
            }
        })
    }
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Why `ip` is not a public unicast address, or `None` if it is.
///
/// IPv6 addresses that embed an IPv4 address (mapped, NAT64, 6to4) are judged by that address,
/// so `::ffff:127.0.0.1` counts as loopback.
pub(crate) fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => Some("an unspecified address"),
        (127, _, _) => Some("a loopback address"),
        (10, _, _) | (192, 168, _) => Some("a private address"),
        (172, 16..=31, _) => Some("a private address"),
        (100, 64..=127, _) => Some("a shared (carrier-grade NAT) address"),
        (169, 254, _) => Some("a link-local address"),
        (192, 0, 0) | (198, 18..=19, _) => Some("a reserved address"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Some("a documentation address"),
        (224..=239, _, _) => Some("a multicast address"),
        (240..=255, _, _) => Some("a reserved address"),
        _ => None,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => classify_v4(embedded(hi, lo)),
        // IPv4-compatible (::/96, deprecated).
        [0, 0, 0, 0, 0, 0, _, _] => Some("a reserved address"),
        [0x64, 0xff9b, 1, ..] => Some("a private address"),
        // 6to4 (2002::/16) routes to the IPv4 address in bits 16 to 48.
        [0x2002, hi, lo, ..] => classify_v4(embedded(hi, lo)),
        [0x2001, 0xdb8, ..] => Some("a documentation address"),
        [0x100, 0, 0, 0, ..] => Some("a reserved address"),
        [first, ..] if first & 0xfe00 == 0xfc00 => Some("a unique local (private) address"),
        [first, ..] if first & 0xffc0 == 0xfe80 => Some("a link-local address"),
        [first, ..] if first & 0xffc0 == 0xfec0 => Some("a site-local (private) address"),
        [first, ..] if first & 0xff00 == 0xff00 => Some("a multicast address"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ip: &str) -> Option<&'static str> {
        classify(ip.parse().unwrap())
    }

    #[test]
    fn non_public_addresses_are_named() {
        for (ip, expected) in [
            ("127.0.0.1", "a loopback address"),
            ("127.255.0.9", "a loopback address"),
            ("10.1.2.3", "a private address"),
            ("172.16.0.1", "a private address"),
            ("172.31.255.255", "a private address"),
            ("192.168.1.1", "a private address"),
            ("169.254.169.254", "a link-local address"),
            ("0.0.0.0", "an unspecified address"),
            ("100.64.0.1", "a shared (carrier-grade NAT) address"),
            ("224.0.0.1", "a multicast address"),
            ("255.255.255.255", "a reserved address"),
            ("::1", "a loopback address"),
            ("::", "an unspecified address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("::ffff:169.254.169.254", "a link-local address"),
            ("64:ff9b::a00:1", "a private address"),
            ("2002:7f00:1::", "a loopback address"),
            ("fd00::1", "a unique local (private) address"),
            ("fe80::1", "a link-local address"),
            ("ff02::1", "a multicast address"),
            ("::127.0.0.1", "a reserved address"),
        ] {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn allowlist_matches_exact_names_and_strict_subdomains() {
        let policy = Policy::new(
            &["API.example.com".to_string(), "*.example.org".to_string()],
            false,
            classify,
        );
        assert!(policy.allows_host("api.example.com"));
        assert!(policy.allows_host("api.example.com."));
        assert!(!policy.allows_host("example.com"));
        assert!(!policy.allows_host("x.api.example.com"));
        assert!(policy.allows_host("a.example.org"));
        assert!(policy.allows_host("a.b.example.org"));
        assert!(!policy.allows_host("example.org"));
        assert!(!policy.allows_host("badexample.org"));
        assert!(!policy.allows_host(".example.org"));
    }

    #[tokio::test]
    async fn check_refuses_schemes_hosts_and_private_addresses() {
        let policy = Policy::new(
            &["localhost".to_string(), "127.0.0.1".to_string()],
            false,
            classify,
        );
        let policy = &policy;
        let check = |url: &str| {
            let url = Url::parse(url).unwrap();
            async move { policy.check(&url).await.map(|t| t.host) }
        };
        assert_eq!(
            check("ftp://localhost/x").await.unwrap_err(),
            "only http and https URLs are allowed, not `ftp:`"
        );
        assert_eq!(
            check("http://evil.com/").await.unwrap_err(),
            "host `evil.com` is not in allow_hosts"
        );
        assert_eq!(
            check("http://127.0.0.1:8080/").await.unwrap_err(),
            "`127.0.0.1` is a loopback address; set allow_private = true to allow it"
        );
        let e = check("http://localhost/").await.unwrap_err();
        assert!(
            e.starts_with("`localhost` resolves to ")
                && e.ends_with(", a loopback address; set allow_private = true to allow it"),
            "{e}"
        );
    }
}
