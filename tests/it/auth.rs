//! etcd's auth, end to end: etcdctl 3.4 turns it on, adds users and roles
//! and grants a prefix; reads, writes and admin calls are then allowed or
//! denied with etcd's messages, on every member; placement-ctl and the
//! client library authenticate too; a broker's role covers its cluster only;
//! the auth store survives a restart; auth disable opens the cluster again.

use std::sync::Arc;

use futures::StreamExt;
use placement_center::client::{Client, ClientOptions, Credentials};
use placement_center::proto::etcdserverpb::auth_client::AuthClient;
use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::watch_request::RequestUnion;
use placement_center::proto::etcdserverpb::{
    AuthUserChangePasswordRequest, AuthenticateRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};
use placement_center::proto::placement::v1::RegisterNodeRequest;

use crate::cluster::Cluster;
use crate::etcdctl::{etcdctl, ok};

/// etcdctl, expected to fail; its stderr.
fn refused(endpoint: &str, args: &[&str]) -> String {
    let (success, out, err) = etcdctl(endpoint, args);
    assert!(!success, "etcdctl {args:?} was allowed: {out}");
    err
}

/// A channel to `endpoint` and a token for `user`.
async fn authenticate(endpoint: &str, user: &str, password: &str) -> (tonic::transport::Channel, String) {
    let channel = tonic::transport::Endpoint::new(format!("http://{endpoint}")).unwrap().connect().await.unwrap();
    let req = AuthenticateRequest { name: user.into(), password: password.into() };
    let token = AuthClient::new(channel.clone()).authenticate(req).await.unwrap().into_inner().token;
    (channel, token)
}

fn client(cluster: &Cluster, user: &str, password: &str) -> Arc<Client> {
    let endpoints: Vec<String> = (0..cluster.nodes.len()).map(|i| cluster.client_addr(i)).collect();
    let credentials = Some(Credentials { user: user.into(), password: password.into() });
    Client::new(&endpoints, ClientOptions { credentials, ..ClientOptions::default() }).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_turns_auth_on_and_permissions_hold_on_every_member_until_it_is_off() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower().await;
    let ep = cluster.client_addr(leader);
    let fep = cluster.client_addr(follower);

    ok(&ep, &["user", "add", "root:rootpw"]);
    ok(&ep, &["user", "grant-role", "root", "root"]);
    ok(&ep, &["role", "add", "app"]);
    ok(&ep, &["role", "grant-permission", "app", "--prefix=true", "readwrite", "/app/"]);
    ok(&ep, &["role", "add", "broker-c1"]);
    ok(&ep, &["role", "grant-permission", "broker-c1", "--prefix=true", "readwrite", "/placement/nodes/c1/"]);
    ok(&ep, &["user", "add", "alice:alicepw"]);
    ok(&ep, &["user", "grant-role", "alice", "app"]);
    ok(&ep, &["user", "add", "broker:brokerpw"]);
    ok(&ep, &["user", "grant-role", "broker", "broker-c1"]);
    assert!(ok(&ep, &["auth", "enable"]).contains("Authentication Enabled"));

    // No credentials, wrong password: etcd's messages.
    assert!(refused(&fep, &["put", "/app/x", "1"]).contains("etcdserver: user name is empty"));
    let wrong = refused(&fep, &["--user=alice:nope", "get", "/app/x"]);
    assert!(wrong.contains("etcdserver: authentication failed, invalid user ID or password"), "{wrong}");

    // alice may use /app/ through any member, and nothing else.
    let alice = "--user=alice:alicepw";
    assert_eq!(ok(&fep, &[alice, "put", "/app/x", "1"]), "OK\n");
    assert_eq!(ok(&ep, &[alice, "get", "/app/x"]), "/app/x\n1\n");
    assert!(refused(&fep, &[alice, "put", "/other", "1"]).contains("etcdserver: permission denied"));
    assert!(refused(&fep, &[alice, "get", "", "--from-key"]).contains("etcdserver: permission denied"));
    assert!(refused(&fep, &[alice, "del", "/app/x", "/b"]).contains("etcdserver: permission denied"));
    // Root-only: auth administration, membership, snapshots.
    assert!(refused(&fep, &[alice, "user", "list"]).contains("etcdserver: permission denied"));
    assert!(refused(&fep, &[alice, "member", "remove", "1"]).contains("etcdserver: permission denied"));
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("b.db");
    let backup = backup.to_str().unwrap();
    assert!(refused(&ep, &[alice, "snapshot", "save", backup]).contains("permission denied"));
    let root = "--user=root:rootpw";
    ok(&ep, &[root, "snapshot", "save", backup]);
    assert!(ok(&fep, &[root, "user", "list"]).contains("alice"));
    assert!(ok(&fep, &[root, "get", "/app/x"]).contains('1'));

    // placement-ctl: --user, the password from the environment.
    let ctl = |user: &str, password: &str, args: &[&str]| {
        let out = std::process::Command::new(crate::ctl::ctl_binary())
            .env("PLACEMENT_PASSWORD", password)
            .env_remove("PLACEMENT_ENDPOINTS")
            .args(["--endpoints", &fep, "--user", user])
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(ctl("alice", "alicepw", &["kv", "put", "/app/y", "2"]).0, Some(0));
    let (code, err) = ctl("alice", "alicepw", &["kv", "put", "/zzz", "2"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("permission denied"), "{err}");
    let (code, err) = ctl("alice:alicepw", "", &["kv", "get", "/app/y"]);
    assert_ne!(code, Some(0), "a password on the command line was taken");
    assert!(err.contains("PLACEMENT_PASSWORD"), "{err}");

    // A watch on keys the user may not read is cancelled at create.
    let token = {
        let (channel, token) = authenticate(&fep, "alice", "alicepw").await;
        let create = |key: &str| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: key.into(),
                ..Default::default()
            })),
        };
        let mut watch = placement_center::proto::etcdserverpb::watch_client::WatchClient::new(channel);
        let requests =
            futures::stream::iter(vec![create("/other"), create("/app/x")]).chain(futures::stream::pending());
        let mut request = tonic::Request::new(requests);
        request.metadata_mut().insert("token", token.parse().unwrap());
        let mut stream = watch.watch(request).await.unwrap().into_inner();
        let denied = stream.message().await.unwrap().unwrap();
        assert!(denied.canceled && denied.cancel_reason.contains("etcdserver: permission denied"), "{denied:?}");
        let allowed = stream.message().await.unwrap().unwrap();
        assert!(allowed.created && !allowed.canceled, "{allowed:?}");
        token
    };

    // The client library authenticates, and a broker's role covers its cluster only.
    let broker = client(&cluster, "broker", "brokerpw");
    let register = |cluster: &str| RegisterNodeRequest {
        cluster: cluster.into(),
        node_id: 7,
        roles: vec!["broker".into()],
        ..Default::default()
    };
    broker.register(register("c1")).await.expect("registering in its own cluster");
    let denied = broker.register(register("c2")).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied}");
    assert_eq!(broker.list_nodes("c1", "").await.unwrap().nodes.len(), 1);
    assert_eq!(broker.list_nodes("", "").await.unwrap_err().code(), tonic::Code::PermissionDenied);

    // Revoking the grant takes effect at once, on every member.
    ok(&ep, &[root, "role", "revoke-permission", "app", "/app/", "--prefix=true"]);
    assert!(refused(&fep, &[alice, "get", "/app/x"]).contains("etcdserver: permission denied"));
    // A changed password voids the tokens issued before.
    let (channel, root_token) = authenticate(&ep, "root", "rootpw").await;
    let mut auth = AuthClient::new(channel.clone());
    let change = AuthUserChangePasswordRequest { name: "alice".into(), password: "new".into(), ..Default::default() };
    let mut request = tonic::Request::new(change);
    request.metadata_mut().insert("token", root_token.parse().unwrap());
    auth.user_change_password(request).await.unwrap();
    let mut read = tonic::Request::new(RangeRequest { key: b"/app/x".to_vec(), ..Default::default() });
    read.metadata_mut().insert("token", token.parse().unwrap());
    let stale = KvClient::new(channel).range(read).await.unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Unauthenticated);
    assert_eq!(stale.message(), "etcdserver: invalid auth token");
    let alice = "--user=alice:new";

    // The auth store is replicated state: a restarted member keeps it.
    cluster.stop(follower).await;
    cluster.restart(follower).await;
    assert!(refused(&fep, &[alice, "get", "/app/x"]).contains("etcdserver: permission denied"));
    assert!(refused(&fep, &["--user=alice:alicepw", "get", "/app/x"]).contains("authentication failed"));
    assert!(ok(&fep, &[root, "user", "get", "alice"]).contains("app"));

    assert!(ok(&ep, &[root, "auth", "disable"]).contains("Authentication Disabled"));
    assert_eq!(ok(&fep, &["put", "/other", "1"]), "OK\n");
}
