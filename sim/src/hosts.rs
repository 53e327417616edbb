//! The simulated network's address plan. Every simulated host sits at
//! 192.0.2.x (TEST-NET-1), x by its role, each role in a range of its own:
//!
//! | x | hosts |
//! |---|---|
//! | 1-99 | cluster members, by node id |
//! | 100-149 | KV clients (`--clients` at most 50) |
//! | 150-169 | watchers |
//! | 170-179 | lease clients |
//! | 181-199 | brokers, by id (from 1) |
//! | 200-201 | a regression scenario's own clients (scenarios start no consumers) |
//! | 201-244 | consumers, by id (from 1) |
//! | 245-254 | the harness's helpers, one address each |
//!
//! Two hosts at one address would get each other's packets, so
//! [`Host::ip`] refuses an index past its role's range (before, `ip(id as
//! u8)` wrapped, and `--clients 51` put the last client at watcher 0's
//! address).

use std::net::{IpAddr, Ipv4Addr};

/// A simulated host, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// A cluster member, by node id (from 1).
    Member(u64),
    /// KV client `i` (from 0).
    KvClient(u32),
    /// Watcher `i` (from 0).
    Watcher(u32),
    /// Lease client `i` (from 0).
    LeaseClient(u32),
    /// Broker `id` (from 1).
    Broker(u64),
    /// Consumer `id` (from 1).
    Consumer(u64),
    /// A regression scenario's client `i` (0 or 1): scenarios start no
    /// consumers, whose range they share.
    ScenarioClient(u32),
    /// One of the harness's helpers.
    Helper(Helper),
}

/// The harness's helper hosts, each with one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helper {
    /// Creates the workload's topic.
    Topic = 245,
    /// The auth prober (a user whose role is revoked and granted).
    Prober = 246,
    /// Turns auth on before the workload.
    AuthSetup = 247,
    /// Checks what every member serves after the run.
    ServeChecker = 248,
    /// Lists the brokers after the run.
    BrokerChecker = 249,
    /// Reads the members' state for the checkers.
    Checker = 250,
    /// Waits for the members to converge.
    Convergence = 251,
    /// Checks leases after the run.
    LeaseChecker = 252,
    /// Sets the cluster's broker configuration.
    Configure = 253,
    /// Watches the brokers' registrations.
    NodeWatcher = 254,
}

impl Helper {
    /// Every helper.
    pub const ALL: [Helper; 10] = [
        Helper::Topic,
        Helper::Prober,
        Helper::AuthSetup,
        Helper::ServeChecker,
        Helper::BrokerChecker,
        Helper::Checker,
        Helper::Convergence,
        Helper::LeaseChecker,
        Helper::Configure,
        Helper::NodeWatcher,
    ];

    /// Its host's name in madsim's logs.
    fn name(self) -> &'static str {
        match self {
            Helper::Topic => "topic",
            Helper::Prober => "prober",
            Helper::AuthSetup => "auth-setup",
            Helper::ServeChecker => "serve-checker",
            Helper::BrokerChecker => "broker-checker",
            Helper::Checker => "checker",
            Helper::Convergence => "convergence",
            Helper::LeaseChecker => "lease-checker",
            Helper::Configure => "configure",
            Helper::NodeWatcher => "node-watcher",
        }
    }

    /// A new simulated host for this helper, named and at its address.
    pub fn node(self) -> madsim::runtime::NodeHandle {
        Host::Helper(self).node(self.name())
    }
}

/// The most KV clients the plan has room for.
pub const MAX_KV_CLIENTS: u32 = 50;

impl Host {
    /// Its role's range of addresses (x in 192.0.2.x) and its index in it.
    fn place(self) -> (std::ops::RangeInclusive<u64>, u64) {
        match self {
            Host::Member(id) => (1..=99, id.wrapping_sub(1)),
            Host::KvClient(i) => (100..=100 + u64::from(MAX_KV_CLIENTS) - 1, i.into()),
            Host::Watcher(i) => (150..=169, i.into()),
            Host::LeaseClient(i) => (170..=179, i.into()),
            Host::Broker(id) => (181..=199, id.wrapping_sub(1)),
            Host::Consumer(id) => (201..=244, id.wrapping_sub(1)),
            Host::ScenarioClient(i) => (200..=201, i.into()),
            Host::Helper(helper) => (helper as u64..=helper as u64, 0),
        }
    }

    /// A new simulated host at this host's address, called `name` in
    /// madsim's logs.
    pub fn node(self, name: impl Into<String>) -> madsim::runtime::NodeHandle {
        madsim::runtime::Handle::current().create_node().name(name).ip(self.ip()).build()
    }

    /// The host's address. Panics when its index does not fit its role's
    /// range: a harness that would put two hosts at one address.
    pub fn ip(self) -> IpAddr {
        let (range, index) = self.place();
        let x = range.start().saturating_add(index);
        assert!(
            range.contains(&x),
            "{self:?} has no simulated address: its role's range is 192.0.2.{}-{} (sim/src/hosts.rs)",
            range.start(),
            range.end()
        );
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, x as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every host a seed's world starts: all roles at their full ranges.
    fn a_seeds_hosts() -> Vec<Host> {
        (1..=99)
            .map(Host::Member)
            .chain((0..MAX_KV_CLIENTS).map(Host::KvClient))
            .chain((0..20).map(Host::Watcher))
            .chain((0..10).map(Host::LeaseClient))
            .chain((1..=19).map(Host::Broker))
            .chain((1..=44).map(Host::Consumer))
            .chain(Helper::ALL.map(Host::Helper))
            .collect()
    }

    #[test]
    fn no_two_hosts_of_a_seed_share_an_address() {
        let hosts = a_seeds_hosts();
        let mut seen = std::collections::BTreeMap::new();
        for host in hosts {
            if let Some(other) = seen.insert(host.ip(), host) {
                panic!("{host:?} and {other:?} share {}", host.ip());
            }
        }
        assert_eq!(seen.len(), 252, "192.0.2.1-254 less 180 (no broker 0) and 200 (a scenario's)");
    }

    #[test]
    fn a_scenarios_clients_share_no_address_with_the_cluster() {
        let clients = [Host::ScenarioClient(0).ip(), Host::ScenarioClient(1).ip()];
        for member in (1..=99).map(Host::Member) {
            assert!(!clients.contains(&member.ip()));
        }
        assert_ne!(clients[0], clients[1]);
    }

    #[test]
    #[should_panic(expected = "has no simulated address")]
    fn a_kv_client_past_the_plan_is_refused_rather_than_given_a_watchers_address() {
        let _ = Host::KvClient(MAX_KV_CLIENTS).ip();
    }

    #[test]
    #[should_panic(expected = "has no simulated address")]
    fn a_member_id_past_99_is_refused_rather_than_wrapped() {
        let _ = Host::Member(356).ip();
    }
}
