//! Integration tests on real tokio + RocksDB: clusters on 127.0.0.1 with port 0
//! and temporary data dirs. One binary, a module per area.

mod addresses;
mod auth;
mod bad_input;
mod certs;
mod cluster;
mod ctl;
mod deploy;
mod etcdctl;
mod gateway;
mod health;
mod limits;
mod membership;
mod offsets;
mod peer_security;
mod placement;
mod quota;
mod replication;
mod tls;
mod topics;
mod upgrade;
mod watch;
