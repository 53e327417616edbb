//! placement-ctl on its own, before it reaches a cluster: usage errors,
//! completions, and a cluster that cannot answer, each with its exit code.
//! (Every command against a real cluster: the server crate's tests/it/ctl.rs.)

use std::process::{Command, Output};

fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_placement-ctl")).env_remove("PLACEMENT_ENDPOINTS").args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_usage_exits_2_and_says_what_is_wrong() {
    let out = ctl(&["kv", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("frobnicate"), "{}", stderr(&out));
    let out = ctl(&["node", "register", "--cluster", "mq1", "--id", "one"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn completions_are_printed_for_a_shell() {
    let out = ctl(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("placement-ctl"));
}

#[test]
fn a_cluster_that_cannot_answer_exits_1_with_an_etcdctl_style_error() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let out = ctl(&["--endpoints", "127.0.0.1:1", "--timeout", "1", "kv", "get", "k"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("Error: "), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}
