//! The deployment files in deploy/: what can be checked without systemd
//! running or a Kubernetes cluster. The unit passes `systemd-analyze verify`;
//! the settings the env file and the manifests pass are ones the binary
//! takes, and validate as a member's configuration.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

/// Runs the server binary with `env` and `args` up to its configuration
/// check: `--restore-from` a missing file validates the configuration, then
/// fails to read the file. Returns the error line.
fn validate(env: &[(String, String)], args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_placement-center"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(args)
        .args(["--restore-from", "/nonexistent/backup.db"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    stderr.lines().find(|l| l.starts_with("Error:")).unwrap_or(&stderr).to_string()
}

/// The configuration `env` and `args` describe is valid: every PLACEMENT_*
/// variable is one the binary reads (it ignores others), and the binary got
/// as far as the (missing) backup file.
fn assert_valid(env: &[(String, String)], args: &[&str]) {
    let help = Command::new(env!("CARGO_BIN_EXE_placement-center")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for (name, _) in env.iter().filter(|(name, _)| name.starts_with("PLACEMENT_")) {
        let read = help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]"));
        assert!(read, "the binary does not read {name}");
    }
    let line = validate(env, args);
    assert!(line.contains("cannot restore /nonexistent/backup.db"), "{line}");
}

#[test]
fn the_systemd_unit_verifies_and_its_env_file_is_a_valid_member() {
    let unit = std::fs::read_to_string(deploy("systemd/placement-center.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("placement-center.service");
    std::fs::write(&installed, unit.replace("/usr/local/bin/placement-center", env!("CARGO_BIN_EXE_placement-center")))
        .unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&installed).output().expect("systemd-analyze runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
    assert!(
        unit.contains("Type=notify") && unit.contains("EnvironmentFile=/etc/placement-center/placement-center.env")
    );

    let env: Vec<(String, String)> = std::fs::read_to_string(deploy("systemd/placement-center.env"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    assert!(env.iter().any(|(k, _)| k == "PLACEMENT_INITIAL_CLUSTER"));
    // Validation does not resolve names (startup does): pc-1 need not exist.
    assert_valid(&env, &[]);
}

#[test]
fn the_kubernetes_statefulset_passes_settings_the_binary_takes_and_probes_what_it_serves() {
    let text = std::fs::read_to_string(deploy("k8s/placement-center.yaml")).unwrap();
    let docs: Vec<serde_yaml::Value> =
        serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
    let kind = |k: &'static str| docs.iter().filter(move |d| d["kind"] == k);
    let headless = kind("Service").find(|s| s["spec"]["clusterIP"] == "None").expect("a headless Service");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true, "peers must resolve before they are ready");
    let pdb = kind("PodDisruptionBudget").next().expect("a PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    let set = kind("StatefulSet").next().expect("a StatefulSet");
    assert_eq!(set["spec"]["serviceName"], headless["metadata"]["name"]);
    let replicas = set["spec"]["replicas"].as_u64().unwrap();
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/livez");

    // Pod 0's settings: its env with $(POD_NAME) expanded and the secret
    // filled in, and the flags its shell line passes.
    let pod = "placement-center-0";
    let mut env = Vec::new();
    for var in container["env"].as_sequence().unwrap() {
        let name = var["name"].as_str().unwrap().to_string();
        let value = match (&var["value"], &var["valueFrom"]["secretKeyRef"]) {
            (serde_yaml::Value::String(v), _) => v.replace("$(POD_NAME)", pod),
            (_, serde_yaml::Value::Mapping(_)) => "a-secret-token".to_string(),
            _ => pod.to_string(),
        };
        env.push((name, value));
    }
    let initial = &env.iter().find(|(k, _)| k == "PLACEMENT_INITIAL_CLUSTER").unwrap().1;
    let members = placement_center::config::parse_initial_cluster(initial).unwrap();
    assert_eq!(members.len() as u64, replicas, "one initial member per replica");
    assert_eq!(members[&1].peer_addr, format!("{pod}.placement-center:2380"), "member 1 is pod 0");
    let script = container["args"][0].as_str().unwrap();
    assert!(script.contains(r#"--node-id "$(( ${POD_NAME##*-} + 1 ))""#), "{script}");
    assert!(script.contains(r#"--name "$POD_NAME""#), "{script}");
    assert_valid(&env, &["--node-id", "1", "--name", pod]);
}

/// The metric names a PromQL expression selects (ours, etcd's and gRPC's).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = ["etcd_", "placement_", "grpc_"].iter().filter_map(|p| rest.find(p)).min() {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        // A label is compared (grpc_code="OK") or grouped by (`by (instance, le)`).
        let scanned = expr.len() - rest.len() + start;
        let compared = tail[end..].trim_start().starts_with(['=', '!']);
        let grouped = expr[..scanned].rfind('(').is_some_and(|open| {
            let group = &expr[open..scanned];
            !group.contains(')')
                && (expr[..open].trim_end().ends_with(" by") || expr[..open].trim_end().ends_with("without"))
        });
        let part_of_a_word = rest[..start].chars().last().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !compared && !grouped && !part_of_a_word {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// Every PromQL expression of the alert rules and of the dashboard.
fn monitoring_exprs() -> Vec<String> {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(deploy("monitoring/alerts.yaml")).unwrap()).unwrap();
    let mut exprs: Vec<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
        .map(|r| r["expr"].as_str().unwrap().to_string())
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("monitoring/grafana-dashboard.json")).unwrap()).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["definition"].as_str() {
            exprs.push(query.to_string());
        }
    }
    exprs
}

/// The dashboard and the alert rules select only metrics a member exports
/// (a renamed or dropped metric breaks this, not a dashboard in the field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alert_rules_use_only_metrics_a_member_exports() {
    // Three members and a write: families with labels (calls by method, round
    // trips by peer) show once they have a sample.
    let cluster = crate::cluster::Cluster::start(3).await;
    let leader = cluster.wait_leader().await;
    let endpoint = format!("http://{}", cluster.client_addr(leader));
    let mut kv = placement_center::proto::etcdserverpb::kv_client::KvClient::connect(endpoint).await.unwrap();
    crate::cluster::put(&mut kv, "k", "v").await;
    let node = cluster.nodes[leader].as_ref().unwrap().node.clone();
    let (_, _, text) = placement_center::api::health::http_answer(node, "/metrics".into()).await;
    let declared: std::collections::BTreeMap<&str, &str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_once(' ')).collect();
    let exported = |name: &str| {
        declared.contains_key(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|base| declared.get(base) == Some(&"histogram")))
    };
    let mut used = std::collections::BTreeSet::new();
    for expr in monitoring_exprs() {
        for name in metric_names(&expr) {
            assert!(exported(&name), "{name} (in `{expr}`) is not exported; /metrics has {:?}", declared.keys());
            used.insert(name);
        }
    }
    assert!(used.len() >= 15, "the files name only {used:?}");
}

#[test]
fn metric_names_are_found_in_promql_and_labels_are_not() {
    assert_eq!(
        metric_names(r#"sum by (grpc_method) (rate(grpc_server_handled_total{grpc_code!="OK",instance=~"$i"}[5m]))"#),
        ["grpc_server_handled_total"]
    );
    assert_eq!(metric_names("etcd_a - etcd_b > 5"), ["etcd_a", "etcd_b"]);
    assert_eq!(metric_names("label_values(etcd_server_has_leader, instance)"), ["etcd_server_has_leader"]);
}

/// The alert rules load in Prometheus (promtool) and fire as their unit
/// tests say (alerts.test.yaml).
#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = deploy("monitoring");
    for args in [&["check", "rules", "alerts.yaml"][..], &["test", "rules", "alerts.test.yaml"][..]] {
        let out =
            Command::new("promtool").args(args).current_dir(&dir).output().expect("promtool (ci/setup.sh installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
