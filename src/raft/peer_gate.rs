//! Who may talk Raft to this node. Every raft.v1 request must carry this
//! cluster's id and token; with peer mutual TLS the sender is the member its
//! certificate names, whatever the request says; replication (AppendEntries,
//! InstallSnapshot) is taken only from the node the request's vote names as
//! leader; everything else only from members.

use tonic::{Request, Status};

use super::network::{token_in, CLUSTER_ID_METADATA, FROM_METADATA, NOT_A_MEMBER};
use super::types::{Member, NodeId};
use crate::config::Config;

/// The certificate rules of peer mutual TLS.
#[derive(Debug, Clone, Default)]
struct CertRules {
    /// Common names a peer certificate may carry (empty: any).
    allowed_cn: Vec<String>,
    /// DNS or IP subject alternative names, one of which a peer certificate
    /// must carry (empty: any).
    allowed_hostnames: Vec<String>,
}

/// The admission rules of one node's raft.v1 service.
#[derive(Debug, Clone, Default)]
pub struct PeerGate {
    /// Set when peers must present certificates (peer mutual TLS).
    certs: Option<CertRules>,
}

/// What the gate needs to know of the node. Membership is looked up only
/// when a rule needs it: replication from the leader, the busiest traffic,
/// needs none without peer TLS.
pub struct NodeView<'a> {
    /// This cluster's id.
    pub cluster_id: u64,
    /// This cluster's token (empty: none is asked for).
    pub token: &'a [u8],
    /// The member of an id, if it is one.
    pub member: &'a dyn Fn(NodeId) -> Option<Member>,
    /// Whether this node knows a membership yet (a joining node does not).
    pub knows_members: &'a dyn Fn() -> bool,
}

/// Names found in a certificate.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CertNames {
    /// The subject's common name, if any.
    pub common_name: Option<String>,
    /// DNS names and IP addresses (as text) of the subject alternative names.
    pub hostnames: Vec<String>,
}

/// Reads the subject's common name and alternative names of a DER certificate.
pub fn cert_names(der: &[u8]) -> Option<CertNames> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
    let mut hostnames = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => hostnames.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => hostnames.push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).ok()?).to_string()),
                    16 => hostnames.push(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).ok()?).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Some(CertNames { common_name, hostnames })
}

/// Compares secrets in time independent of where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The host part of `host:port` (an IPv6 literal without its brackets).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether a certificate names `member`: by its common name equal to the
/// member's name, or, for a member that has not published a name yet (it
/// just joined), by an alternative name equal to its peer address's host.
fn names_member(names: &CertNames, member: &Member) -> bool {
    if member.name.is_empty() {
        let host = host_of(&member.peer_addr);
        names.hostnames.iter().any(|h| h == host)
    } else {
        names.common_name.as_deref() == Some(member.name.as_str())
    }
}

impl PeerGate {
    /// The rules `config` asks for.
    pub fn new(config: &Config) -> Self {
        let certs = config.peer_client_cert_auth.then(|| CertRules {
            allowed_cn: config.peer_cert_allowed_cn.clone(),
            allowed_hostnames: config.peer_cert_allowed_hostname.clone(),
        });
        Self { certs }
    }

    /// Admits `req` or says why not, logging refusals with the peer's
    /// address. `leader`: the node that the request's vote names as leader,
    /// for replication, which must come from it and is taken even from a
    /// leader this node does not know as a member yet (a follower that lagged
    /// while the leader was added learns of it from the leader's own entries).
    /// Returns the sender.
    pub fn admit<T>(&self, req: &Request<T>, node: &NodeView<'_>, leader: Option<NodeId>) -> Result<NodeId, Status> {
        let refused = |status: Status| {
            let peer = req.remote_addr().map_or_else(|| "unknown".to_string(), |a| a.to_string());
            tracing::warn!(%peer, cause = %status.message(), "raft message refused");
            Err(status)
        };
        let field =
            |key: &str| req.metadata().get(key).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let (cluster, from) = match (field(CLUSTER_ID_METADATA), field(FROM_METADATA)) {
            (Some(cluster), Some(from)) => (cluster, from),
            _ => return refused(Status::failed_precondition("raft message without cluster id and sender")),
        };
        if cluster != node.cluster_id {
            return refused(Status::failed_precondition(format!(
                "raft message from cluster {cluster:x}, this is cluster {:x}",
                node.cluster_id
            )));
        }
        if !node.token.is_empty() && !token_in(req.metadata()).is_some_and(|t| same_secret(&t, node.token)) {
            return refused(Status::permission_denied(format!(
                "raft message from node {from} without this cluster's token"
            )));
        }
        let member = || (node.member)(from);
        if let Some(rules) = &self.certs {
            let leaf = crate::runtime::peer_certificates(req).and_then(|chain| chain.into_iter().next());
            let Some(names) = leaf.as_deref().and_then(cert_names) else {
                return refused(Status::unauthenticated(format!(
                    "raft message from node {from} without a readable client certificate"
                )));
            };
            let cn = names.common_name.as_deref().unwrap_or("");
            if !rules.allowed_cn.is_empty() && !rules.allowed_cn.iter().any(|c| c == cn) {
                return refused(Status::permission_denied(format!("peer certificate CN {cn:?} is not allowed")));
            }
            if !rules.allowed_hostnames.is_empty()
                && !names.hostnames.iter().any(|h| rules.allowed_hostnames.contains(h))
            {
                return refused(Status::permission_denied(format!(
                    "peer certificate names none of the allowed hosts (it names {:?})",
                    names.hostnames
                )));
            }
            if let Some(member) = member() {
                if !names_member(&names, &member) {
                    return refused(Status::permission_denied(format!(
                        "raft message claims to be from node {from} ({:?}), but the certificate is of {cn:?}",
                        member.name
                    )));
                }
            }
        }
        match leader {
            Some(leader) if leader != from => {
                return refused(Status::permission_denied(format!(
                    "replication from node {from} for leader {leader}: only the leader replicates"
                )))
            }
            Some(_) => {}
            None if member().is_none() && (node.knows_members)() => {
                return refused(Status::failed_precondition(format!("raft message from node {from}, {NOT_A_MEMBER}")))
            }
            None => {}
        }
        Ok(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, peer_addr: &str) -> Member {
        Member { name: name.into(), peer_addr: peer_addr.into(), client_addr: String::new(), started: true }
    }

    #[test]
    fn a_certificate_names_a_member_by_name_or_before_it_has_one_by_host() {
        let names = CertNames { common_name: Some("node2".into()), hostnames: vec!["10.0.0.2".into(), "pc-2".into()] };
        assert!(names_member(&names, &member("node2", "10.0.0.9:2380")));
        assert!(!names_member(&names, &member("node1", "10.0.0.2:2380")));
        assert!(names_member(&names, &member("", "pc-2:2380")));
        assert!(names_member(&names, &member("", "10.0.0.2:2380")));
        assert!(!names_member(&names, &member("", "10.0.0.3:2380")));
        assert!(names_member(
            &CertNames { common_name: None, hostnames: vec!["::1".into()] },
            &member("", "[::1]:2380")
        ));
    }

    #[test]
    fn secrets_compare_by_every_byte_and_the_length() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(same_secret(b"", b""));
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert_eq!(cert_names(b"not a certificate"), None);
        assert_eq!(cert_names(&[]), None);
    }
}
