//! Leases as state: grant and revoke. Expiry is not here: the leader decides
//! when a lease expired (by its clock) and proposes a revoke.

use super::{Change, KvState, Lease, StateError, Write};
use crate::proto::etcdserverpb::{LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse};

/// Largest TTL a lease may have, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

pub(super) fn validate_grant(req: &LeaseGrantRequest) -> Result<(), StateError> {
    if req.ttl > MAX_LEASE_TTL {
        return Err(StateError::LeaseTtlTooLarge);
    }
    // The proposer picks an id when the client did not: 0 never reaches here
    // from the API, and would be "no lease" on a key.
    if req.id == 0 {
        return Err(StateError::LeaseNotFound);
    }
    Ok(())
}

pub(super) fn grant(
    state: &mut KvState,
    write: &mut Write,
    req: &LeaseGrantRequest,
) -> Result<LeaseGrantResponse, StateError> {
    if state.leases.contains_key(&req.id) {
        return Err(StateError::LeaseExists);
    }
    state.leases.insert(req.id, Lease { ttl: req.ttl, keys: Default::default() });
    write.other.push(Change::LeaseGranted { id: req.id, ttl: req.ttl });
    Ok(LeaseGrantResponse { header: None, id: req.id, ttl: req.ttl, error: String::new() })
}

/// Deletes the lease's keys (all at one revision) and the lease.
pub(super) fn revoke(
    state: &mut KvState,
    write: &mut Write,
    req: &LeaseRevokeRequest,
) -> Result<LeaseRevokeResponse, StateError> {
    let Some(lease) = state.leases.get(&req.id) else {
        return Err(StateError::LeaseNotFound);
    };
    let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
    for key in keys {
        state.set(write, &key, None);
    }
    state.leases.remove(&req.id);
    write.other.push(Change::LeaseRevoked(req.id));
    Ok(LeaseRevokeResponse { header: None })
}
