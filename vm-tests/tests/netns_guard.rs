//! The namespace guard creates, runs in and deletes its namespace, also when
//! the test panics.

use std::panic::catch_unwind;

use xdpgw_vm_tests::{require_root, Netns};

fn listed(name: &str) -> bool {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn netns_lives_as_long_as_its_guard() {
    if !require_root("netns_guard") {
        return;
    }
    let ns = Netns::new("guard");
    let name = ns.name().to_owned();
    assert!(name.starts_with("xg-guard-"), "{name}");
    assert!(listed(&name), "{name} is not listed after new()");
    // Commands run inside: a fresh namespace has only a down loopback.
    let links = ns.exec_ok(&["ip", "-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:"), "{links}");
    let echoed = ns.exec_stdin(&["cat"], "through stdin\n");
    assert!(echoed.status.success());
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "through stdin\n");
    assert!(!ns.exec(&["false"]).status.success());
    drop(ns);
    assert!(!listed(&name), "{name} is still listed after drop");
}

#[test]
fn netns_is_deleted_when_a_test_panics() {
    if !require_root("netns_guard") {
        return;
    }
    let second = Netns::new("guard");
    assert_ne!(Netns::new("guard").name(), second.name());
    let result = catch_unwind(|| {
        let ns = Netns::new("panic");
        let name = ns.name().to_owned();
        ns.exec_ok(&["sh", "-c", "echo failing >&2; exit 3"]);
        name
    });
    let msg = result.expect_err("exec_ok of a failing command must panic");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("failing"), "{msg}");
    let name = msg
        .split_whitespace()
        .find(|w| w.starts_with("xg-panic-"))
        .expect("the message names the namespace")
        .to_owned();
    assert!(!listed(&name), "{name} survived the panic");
}
