//! The placement API's requests and records: any bytes decode to a request
//! or an error, and validation answers without panicking; a registration
//! that validates is stored and read back unchanged; any key-value under the
//! node prefix (etcdctl can write anything there) decodes to a node or an
//! error, never to a node of another key; cluster settings round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_center::placement::{self, ClusterConfig, NodeRecord};
use placement_center::proto::mvccpb::KeyValue;
use placement_center::proto::placement::v1::{
    HeartbeatRequest, ListNodesRequest, RegisterNodeRequest, SetClusterConfigRequest, UnregisterNodeRequest,
    WatchNodesRequest,
};
use placement_center::state::MAX_LEASE_TTL;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((tag, rest)) = data.split_first() else { return };
    match tag % 5 {
        0 => {
            let Ok(req) = RegisterNodeRequest::decode(rest) else { return };
            let record = NodeRecord::from(req);
            if record.validate().is_ok() {
                let kv = KeyValue { key: record.key(), value: record.encode(), mod_revision: 7, lease: 3, ..Default::default() };
                let node = NodeRecord::decode(&kv).expect("a valid record reads back");
                assert_eq!((node.cluster, node.node_id, node.epoch, node.lease_id), (record.cluster, record.node_id, 7, 3));
                assert_eq!((node.roles, node.addresses, node.labels), (record.roles, record.addresses, record.labels));
            }
        }
        1 => {
            let Ok(kv) = KeyValue::decode(rest) else { return };
            if let Ok(node) = NodeRecord::decode(&kv) {
                assert_eq!(placement::node_key(&node.cluster, node.node_id), kv.key);
                assert_eq!((node.epoch, node.lease_id), (kv.mod_revision, kv.lease));
            }
        }
        2 => {
            if let Ok(config) = ClusterConfig::decode(rest) {
                let _ = config.validate(1, MAX_LEASE_TTL);
                assert_eq!(ClusterConfig::decode(&config.encode()), Ok(config));
            }
            if let Ok(req) = SetClusterConfigRequest::decode(rest) {
                let _ = placement::check_cluster(&req.cluster);
                let config = ClusterConfig { heartbeat_interval_secs: req.heartbeat_interval_secs, expiry_secs: req.expiry_secs };
                let _ = config.validate(1, MAX_LEASE_TTL);
            }
        }
        3 => {
            if let Ok(req) = HeartbeatRequest::decode(rest) {
                let _ = placement::check_node(&req.cluster, req.node_id);
            }
            if let Ok(req) = UnregisterNodeRequest::decode(rest) {
                let _ = placement::check_node(&req.cluster, req.node_id);
            }
        }
        _ => {
            for cluster in [ListNodesRequest::decode(rest).map(|r| r.cluster), WatchNodesRequest::decode(rest).map(|r| r.cluster)]
                .into_iter()
                .flatten()
            {
                if placement::check_cluster(&cluster).is_ok() {
                    let (start, end) = placement::nodes_range(&cluster);
                    assert!(start < end);
                }
            }
        }
    }
});
