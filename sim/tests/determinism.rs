//! Replaying a seed in another process gives the same trace: the property
//! that makes every failure reproducible.
#![cfg(madsim)]

use std::process::Command;

fn trace_line(seed: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_placement-sim"))
        .args(["--seed", seed, "--duration", "10", "--nodes", "3"])
        .output()
        .expect("run placement-sim");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "seed {seed} failed:\n{stdout}");
    stdout.lines().find(|l| l.starts_with("seed")).expect("a seed line").to_string()
}

#[test]
fn one_seed_replayed_in_two_processes_gives_the_same_trace_hash() {
    let first = trace_line("4242");
    let second = trace_line("4242");
    assert!(first.contains("trace="), "{first}");
    assert_eq!(first, second);
}

#[test]
fn different_seeds_give_different_traces() {
    assert_ne!(trace_line("1"), trace_line("2"));
}
