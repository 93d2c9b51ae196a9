//! Who sent a request: the peer's address, or, when the peer is a trusted proxy (nginx in the
//! compose file), the client it names in `X-Forwarded-For`; and whether that address may
//! deliver webhooks at all (`HOOKD_ALLOW_FROM`).

use std::net::IpAddr;

use ipnet::IpNet;

/// `HOOKD_ALLOW_FROM` and `HOOKD_TRUSTED_PROXIES`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// Networks allowed to deliver; empty: any.
    pub allow: Vec<IpNet>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

/// A comma-separated list of networks (`10.0.0.0/8, 192.0.2.7`, a bare address is one host).
pub fn parse_networks(name: &str, text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{name}: {s:?} is not an address or network (CIDR)"))
        })
        .collect()
}

impl Sources {
    /// The client's address: the peer's, or, walking `X-Forwarded-For` from the right past
    /// trusted proxies, the first address that is not one. A forwarded list from an untrusted
    /// peer is ignored (anyone can write that header).
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let Some(list) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in list.rsplit(',').map(str::trim) {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !trusted(&ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }

    /// Whether `client` may deliver webhooks.
    pub fn allows(&self, client: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let s = Sources {
            allow: parse_networks("A", "192.0.2.0/24").unwrap(),
            trusted_proxies: parse_networks("T", "172.16.0.0/12, 127.0.0.1").unwrap(),
        };
        // From nginx: the client it names.
        assert_eq!(
            s.client(ip("172.18.0.5"), Some("192.0.2.9")),
            ip("192.0.2.9")
        );
        // A client that forged the header before nginx appended the real one.
        assert_eq!(
            s.client(ip("172.18.0.5"), Some("192.0.2.9, 203.0.113.4")),
            ip("203.0.113.4")
        );
        // Straight from outside: the header is ignored.
        assert_eq!(
            s.client(ip("203.0.113.4"), Some("192.0.2.9")),
            ip("203.0.113.4")
        );
        assert!(s.allows(ip("192.0.2.9")));
        assert!(!s.allows(ip("203.0.113.4")));
        assert!(
            Sources::default().allows(ip("203.0.113.4")),
            "no list: anyone"
        );
    }

    #[test]
    fn networks_are_checked() {
        assert_eq!(parse_networks("X", "").unwrap(), vec![]);
        assert!(parse_networks("X", "::1, 10.0.0.0/8").is_ok());
        let e = parse_networks("HOOKD_ALLOW_FROM", "10.0.0.0/33").unwrap_err();
        assert_eq!(
            e,
            "HOOKD_ALLOW_FROM: \"10.0.0.0/33\" is not an address or network (CIDR)"
        );
    }
}
