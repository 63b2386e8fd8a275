//! `xdpgw doctor` on veth pairs in throw-away namespaces: what it reports
//! for a usable interface (native XDP yes, zero-copy no, 1 queue, MTU 1500),
//! a missing interface, a foreign XDP program and a running gateway; and
//! that it leaves nothing attached.

use std::path::Path;
use std::time::Duration;

use xdpgw_dataplane::port::testing::{attach_foreign_program, attached_programs};
use xdpgw_dataplane::port::{enter_netns, XdpAttach};
use xdpgw_vm_tests::lab::Finished;
use xdpgw_vm_tests::two_ports::{TwoPorts, GATEWAY_LAN};
use xdpgw_vm_tests::{require_root_with, xdpgw_binary};

const TIMEOUT: Duration = Duration::from_secs(30);

fn doctor(t: &TwoPorts, args: &[&str]) -> Finished {
    let bin = xdpgw_binary().display().to_string();
    let mut all = vec![bin.as_str(), "doctor"];
    all.extend_from_slice(args);
    t.gw.run(&all, TIMEOUT)
}

#[test]
fn doctor_reports_veth_and_leaves_nothing_attached() {
    if !require_root_with("doctor_reports_veth_and_leaves_nothing_attached", &[]) {
        return;
    }
    let t = TwoPorts::new("doc");
    let out = doctor(&t, &["lan0", "wan0"]);
    assert!(out.status.success(), "{}", out.report());
    for want in [
        "lan0: index",
        "  driver: veth, version 1.0",
        "  MTU: 1500 (with 2048-byte UMEM frames at most 1774)",
        "  XDP programs attached: none",
        "  native XDP: yes",
        "  generic XDP: yes",
        "  AF_XDP zero-copy: no (EOPNOTSUPP, Operation not supported: the driver has no AF_XDP \
         zero-copy support)",
        "  AF_XDP copy: yes",
        "  xdpgw run would use: native xdp, copy, 1 queue",
    ] {
        assert!(
            out.stdout.iter().any(|l| l.starts_with(want)),
            "no line {want:?}:\n{}",
            out.report()
        );
    }
    let queues = out
        .stdout
        .iter()
        .find(|l| l.starts_with("  queues: "))
        .unwrap_or_else(|| panic!("no queues line:\n{}", out.report()));
    assert!(
        queues.starts_with("  queues: 1 rx, 1 tx (/sys/class/net/lan0/queues)")
            && queues.ends_with("; xdpgw opens 1 queue"),
        "{queues}"
    );
    assert_eq!(
        out.stdout.last().map(String::as_str),
        Some("would use lan0: native xdp, copy, 1 queue; wan0: native xdp, copy, 1 queue"),
        "{}",
        out.report()
    );
    for ifname in ["lan0", "wan0"] {
        assert_eq!(t.xdp_programs(ifname), Vec::<String>::new(), "{ifname}");
    }
    // What doctor said is what run does.
    let bin = xdpgw_binary().display().to_string();
    let config = t.config().display().to_string();
    let mut gw = t.gw.spawn(&[&bin, "run", "--config", &config]);
    let ready = gw.wait_line("`ready` line", TIMEOUT, |l| l.starts_with("ready"));
    assert_eq!(
        ready,
        "ready lan0: native xdp, copy, 1 queue; wan0: native xdp, copy, 1 queue"
    );
    let stopped = gw.stop(TIMEOUT);
    assert!(stopped.status.success(), "{}", stopped.report());
}

#[test]
fn doctor_refuses_a_missing_interface() {
    if !require_root_with("doctor_refuses_a_missing_interface", &[]) {
        return;
    }
    let t = TwoPorts::new("docm");
    let out = doctor(&t, &["lan0", "nope0"]);
    assert!(!out.status.success(), "{}", out.report());
    assert_eq!(
        out.stderr,
        ["xdpgw doctor: no interface named \"nope0\""],
        "{}",
        out.report()
    );
    // The interface that exists is still reported, without a verdict line
    // for the set.
    assert!(
        out.stdout.iter().any(|l| l == "  native XDP: yes"),
        "{}",
        out.report()
    );
    assert!(
        !out.stdout.iter().any(|l| l.starts_with("would use")),
        "{}",
        out.report()
    );
}

#[test]
fn doctor_reports_a_foreign_program_and_leaves_it() {
    if !require_root_with("doctor_reports_a_foreign_program_and_leaves_it", &[]) {
        return;
    }
    let t = TwoPorts::new("docf");
    // Attach (netlink, generic mode) a program that is not ours, from a
    // thread inside the namespace.
    let ns = Path::new("/var/run/netns").join(t.gw.name());
    let foreign = std::thread::spawn(move || {
        enter_netns(&ns).expect("enter the namespace");
        let id = attach_foreign_program("lan0", XdpAttach::Generic, "other_fw")
            .expect("attach a foreign program");
        (id, attached_programs("lan0").expect("query"))
    });
    let (id, attached) = foreign.join().expect("the attaching thread");
    assert_eq!(attached, (0, id));

    let out = doctor(&t, &["lan0", "wan0"]);
    assert!(!out.status.success(), "{}", out.report());
    assert_eq!(
        out.stderr,
        [format!(
            "xdpgw doctor: lan0: cannot be used: another XDP program is attached (generic mode, \
             id {id}, name other_fw); xdpgw does not remove it (ip link set dev IF xdp off)"
        )],
        "{}",
        out.report()
    );
    let want = format!(
        "  XDP program attached: other_fw (id {id}), generic mode, through netlink (ip link); \
         not xdpgw's"
    );
    assert!(out.stdout.contains(&want), "{}", out.report());
    assert!(
        out.stdout
            .iter()
            .any(|l| l.starts_with("  native XDP: not probed (XDP program other_fw")),
        "{}",
        out.report()
    );
    // wan0 is still probed and usable.
    assert!(
        out.stdout
            .iter()
            .any(|l| l == "  xdpgw run would use: native xdp, copy, 1 queue"),
        "{}",
        out.report()
    );
    // The foreign program is still there, and nothing else.
    assert_eq!(t.xdp_programs("lan0"), [format!("prog/xdp id {id}")]);
    assert_eq!(t.xdp_programs("wan0"), Vec::<String>::new());
}

#[test]
fn doctor_names_the_running_gateway_and_leaves_it_running() {
    if !require_root_with(
        "doctor_names_the_running_gateway_and_leaves_it_running",
        &["ping"],
    ) {
        return;
    }
    let t = TwoPorts::new("docr");
    let bin = xdpgw_binary().display().to_string();
    let config = t.config().display().to_string();
    let mut gw = t.gw.spawn(&[&bin, "run", "--config", &config]);
    gw.wait_line("`ready` line", TIMEOUT, |l| l.starts_with("ready"));

    let out = doctor(&t, &["lan0"]);
    assert!(!out.status.success(), "{}", out.report());
    assert_eq!(
        out.stderr,
        [format!(
            "xdpgw doctor: lan0: cannot be used: in use by xdpgw (pid {})",
            gw.pid()
        )],
        "{}",
        out.report()
    );
    assert!(
        out.stdout
            .iter()
            .any(|l| l.starts_with("  XDP program attached: xdpgw_xsk (id ")
                && l.ends_with(&format!(", held by xdpgw (pid {}); xdpgw's", gw.pid()))),
        "{}",
        out.report()
    );
    // The gateway still answers.
    let ping = t.peer.exec(&["ping", "-c", "1", "-W", "5", GATEWAY_LAN]);
    assert!(
        ping.status.success(),
        "ping {GATEWAY_LAN} after doctor: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let stopped = gw.stop(TIMEOUT);
    assert!(stopped.status.success(), "{}", stopped.report());
}

/// Sets the MTU of lan0, wan0 and their peers.
fn set_mtu(t: &TwoPorts, mtu: u16) {
    let mtu = mtu.to_string();
    for ifname in ["lan0", "wan0"] {
        t.gw.exec_ok(&["ip", "link", "set", ifname, "mtu", &mtu]);
    }
    for ifname in ["p0", "p1"] {
        t.peer.exec_ok(&["ip", "link", "set", ifname, "mtu", &mtu]);
    }
}

#[test]
fn doctor_explains_large_mtus() {
    if !require_root_with("doctor_explains_large_mtus", &[]) {
        return;
    }
    let t = TwoPorts::new("docmtu");
    // 3800: 4096-byte frames hold it; veth takes native XDP only up to
    // 3506 for a program without multi-buffer support, generic mode takes
    // it.
    set_mtu(&t, 3800);
    let out = doctor(&t, &["lan0"]);
    assert!(out.status.success(), "{}", out.report());
    for want in [
        "  MTU: 3800 (with 4096-byte UMEM frames at most 3822)",
        "  native XDP: no (ERANGE, Numerical result out of range: the MTU is too large for this \
         mode with a program without multi-buffer support, which xdpgw uses up to MTU 3822 \
         (veth: native XDP up to MTU 3506); generic mode takes it)",
        "  generic XDP: yes",
        "  xdpgw run would use: generic xdp, copy, 1 queue",
    ] {
        assert!(
            out.stdout.iter().any(|l| l == want),
            "no line {want:?}:\n{}",
            out.report()
        );
    }
    // What doctor said is what run does, and it says which frames.
    let bin = xdpgw_binary().display().to_string();
    let config = t.config().display().to_string();
    let mut gw = t.gw.spawn(&[&bin, "run", "--config", &config]);
    gw.wait_stderr_line("frame size", TIMEOUT, |l| {
        l.ends_with("xdpgw: 4096-byte UMEM frames (MTU at most 3822)")
    });
    let ready = gw.wait_line("`ready` line", TIMEOUT, |l| l.starts_with("ready"));
    assert_eq!(
        ready,
        "ready lan0: generic xdp, copy, 1 queue; wan0: generic xdp, copy, 1 queue"
    );
    let stopped = gw.stop(TIMEOUT);
    assert!(stopped.status.success(), "{}", stopped.report());

    // 9000: frames in several UMEM frames (multi-buffer AF_XDP); with a
    // multi-buffer program veth takes native XDP.
    set_mtu(&t, 9000);
    let out = doctor(&t, &["lan0"]);
    assert!(out.status.success(), "{}", out.report());
    for want in [
        "  MTU: 9000 (frames in several 4096-byte UMEM frames: multi-buffer AF_XDP, at most 9216)",
        "  native XDP: yes",
        "  AF_XDP copy: yes",
        "  xdpgw run would use: native xdp, copy, 1 queue",
    ] {
        assert!(
            out.stdout.iter().any(|l| l == want),
            "no line {want:?}:\n{}",
            out.report()
        );
    }
    let mut gw = t.gw.spawn(&[&bin, "run", "--config", &config]);
    gw.wait_stderr_line("frame size", TIMEOUT, |l| {
        l.ends_with(
            "xdpgw: 4096-byte UMEM frames, larger frames in several (multi-buffer, MTU at most \
             9216)",
        )
    });
    let ready = gw.wait_line("`ready` line", TIMEOUT, |l| l.starts_with("ready"));
    assert_eq!(
        ready,
        "ready lan0: native xdp, copy, 1 queue; wan0: native xdp, copy, 1 queue"
    );
    let stopped = gw.stop(TIMEOUT);
    assert!(stopped.status.success(), "{}", stopped.report());

    // Above 9216: refused, with the reason.
    set_mtu(&t, 9300);
    let out = doctor(&t, &["lan0"]);
    assert!(!out.status.success(), "{}", out.report());
    let want = "  cannot be used: MTU 9300 is too large: xdpgw takes at most 9216 (frames of 4096 \
                bytes and larger ones in several)";
    assert!(
        out.stdout.iter().any(|l| l == want),
        "no line {want:?}:\n{}",
        out.report()
    );
    let done = t.gw.run(&[&bin, "run", "--config", &config], TIMEOUT);
    assert!(!done.status.success(), "{}", done.report());
    assert!(
        done.stderr
            .iter()
            .any(|l| l.contains("lan0 has MTU 9300: xdpgw takes at most 9216")),
        "{}",
        done.report()
    );
    for ifname in ["lan0", "wan0"] {
        assert_eq!(t.xdp_programs(ifname), Vec::<String>::new(), "{ifname}");
    }
}
