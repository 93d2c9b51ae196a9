//! Listen addresses as supervisord writes them.

/// `HOST:PORT` with an IP address, `localhost:PORT`, or `*:PORT`, `:PORT` or `PORT` for every
/// IPv4 address, as supervisord's `[inet_http_server] port` is written. No name is looked up.
pub fn listen_address(text: &str) -> Option<std::net::SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    if let Ok(port) = text.parse::<u16>() {
        return Some(std::net::SocketAddr::new(
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            port,
        ));
    }
    let (host, port) = text.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip: std::net::IpAddr = match host {
        "" | "*" => std::net::Ipv4Addr::UNSPECIFIED.into(),
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        other => other.trim_matches(['[', ']']).parse().ok()?,
    };
    Some(std::net::SocketAddr::new(ip, port))
}
