//! Addresses as people write them: `HOST:PORT`, where HOST is a DNS name, an
//! IPv4 address or a bracketed IPv6 one (`[::1]:2379`), or etcd's URL form
//! of the same (`http://pc-0.pc:2380`). Names are kept as names: they are
//! resolved when a listener binds or a connection is made (again on every
//! reconnect, since a pod's address changes when it is rescheduled), never
//! once at startup.

use std::net::IpAddr;

/// An address that parsed: its host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// The name or IP address, without brackets.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl HostPort {
    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// Whether the host is the wildcard `0.0.0.0` or `::`: fine to bind,
    /// never to advertise (nobody can dial it).
    pub fn is_wildcard(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// Parses `HOST:PORT` (or `[V6]:PORT`). The error says what is wrong.
pub fn parse(s: &str) -> Result<HostPort, String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, port) = rest.split_once("]:").ok_or_else(|| format!("{s:?} is not [IPV6]:PORT"))?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{s:?}: {v6:?} is not an IPv6 address"));
        }
        (v6, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not HOST:PORT (the port is missing)"))?;
        if host.contains(':') {
            return Err(format!("{s:?}: write an IPv6 address in brackets, as [{host}]:{port}"));
        }
        (host, port)
    };
    let port: u16 = port.parse().map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has no host (write 0.0.0.0:{port} to listen on every address)"));
    }
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
    if !host.starts_with('[') && host.parse::<IpAddr>().is_err() && !host.chars().all(name_char) {
        return Err(format!("{s:?}: {host:?} is neither an IP address nor a host name"));
    }
    Ok(HostPort { host: host.to_string(), port })
}

/// Whether `s` is a valid `HOST:PORT`.
pub fn valid(s: &str) -> bool {
    parse(s).is_ok()
}

/// `HOST:PORT` from etcd's URL form (`http://HOST:PORT`, `https://…`, a
/// trailing `/` allowed) or from `HOST:PORT` itself; one address only. The
/// scheme is dropped: TLS is the certificate settings' business.
pub fn from_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.contains(',') {
        return Err(format!("{s:?}: give one address here, not a list"));
    }
    let bare = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://")).unwrap_or(s);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    if bare.contains('/') || bare.contains("://") {
        return Err(format!("{s:?} is not HOST:PORT or http://HOST:PORT"));
    }
    parse(bare)?;
    Ok(bare.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ipv4_and_bracketed_ipv6_parse() {
        assert_eq!(parse("pc-0.pc.default.svc:2380").unwrap().host, "pc-0.pc.default.svc");
        assert_eq!(parse("localhost:2379").unwrap().port, 2379);
        assert_eq!(parse("127.0.0.1:0").unwrap().ip(), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(parse("[::1]:2379").unwrap().host, "::1");
        assert!(parse("0.0.0.0:2379").unwrap().is_wildcard());
        assert!(parse("[::]:2379").unwrap().is_wildcard());
        assert!(!parse("pc-0:2379").unwrap().is_wildcard());
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let err = |s: &str| parse(s).unwrap_err();
        assert!(err("127.0.0.1").contains("the port is missing"));
        assert!(err("::1:2379").contains("[::1]:2379"));
        assert!(err(":2379").contains("write 0.0.0.0:2379"));
        assert!(err("host:http").contains("not a port number"));
        assert!(err("host:99999").contains("not a port number"));
        assert!(err("[fe80::zz]:1").contains("not an IPv6 address"));
        assert!(err("a b:1").contains("neither an IP address nor a host name"));
    }

    #[test]
    fn urls_become_host_port() {
        assert_eq!(from_url("http://pc-0.pc:2380").unwrap(), "pc-0.pc:2380");
        assert_eq!(from_url("https://[::1]:2379/").unwrap(), "[::1]:2379");
        assert_eq!(from_url("10.0.0.1:2379").unwrap(), "10.0.0.1:2379");
        assert!(from_url("http://a:1,http://b:1").unwrap_err().contains("one address"));
        assert!(from_url("http://a:1/path").is_err());
        assert!(from_url("unix://a:1").is_err());
    }
}
