//! Multi-WAN by mark (issue 17): the gateway lab with a second uplink
//! (wan1, 192.0.2.1/24, cabled to the server's eth1 192.0.2.254), a
//! routing table 100 whose default goes via wan1, and `ip rule add fwmark
//! 0x2 table 100`; mangle PREROUTING marks client2's connections 0x2 and
//! CONNMARK keeps the mark on the connection, restored on the packets from
//! the LAN only (replies restored to 0x2 would follow table 100, whose only
//! route is its default, back out of wan1: in Linux as in xdpgw). Through Linux (the same
//! rules; rp_filter off, as a Linux gateway with two uplinks needs) and
//! through xdpgw (`[[route]] table = 100`, `[[rule]] fwmark = "0x2"`),
//! compared: the client's connection leaves by wan0 and is MASQUERADEd to
//! its address, client2's by wan1 to wan1's, and both get their replies.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use xdpgw_vm_tests::lab::{
    Backend, Lab, WorkDir, CLIENT, CLIENT2, GATEWAY_WAN, GATEWAY_WAN1, SERVER, SERVER_WAN1,
};
use xdpgw_vm_tests::scenario::*;
use xdpgw_vm_tests::{lab_with, restore_text};

fn rules() -> String {
    restore_text(&[
        (
            "mangle",
            "-A PREROUTING -i lan0 -p tcp -j CONNMARK --restore-mark
            -A PREROUTING -i lan0 -p tcp -s 192.168.10.3 -m mark --mark 0x0 -j MARK --set-mark 0x2
            -A PREROUTING -p tcp -j CONNMARK --save-mark",
        ),
        (
            "nat",
            "-A POSTROUTING -o wan0 -j MASQUERADE
            -A POSTROUTING -o wan1 -j MASQUERADE",
        ),
    ])
}

/// The second uplink, its table and the rule, for xdpgw.
const CONFIG: &str = "\
[[interface]]
name = \"wan1\"
address = \"192.0.2.1/24\"

[[route]]
to = \"0.0.0.0/0\"
via = \"192.0.2.254\"
table = 100

[[rule]]
fwmark = \"0x2\"
table = 100
";

/// The same for Linux, in the gateway's namespace.
fn linux_policy(lab: &Lab) {
    let gw = lab.gateway();
    gw.exec_ok(&[
        "ip",
        "route",
        "add",
        "default",
        "via",
        &SERVER_WAN1.to_string(),
        "table",
        "100",
    ]);
    gw.exec_ok(&["ip", "rule", "add", "fwmark", "0x2", "table", "100"]);
    for iface in ["all", "default", "lan0", "wan0", "wan1"] {
        gw.exec_ok(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{iface}.rp_filter=0"),
        ]);
    }
}

#[derive(Debug, PartialEq)]
struct Observed {
    /// Each client's connection: its outcome and the source the server saw.
    seen: BTreeMap<Ipv4Addr, (String, BTreeSet<Ipv4Addr>)>,
    /// The nat rules' counters: one MASQUERADE per uplink.
    counters: BTreeMap<String, u64>,
}

fn scenario(lab: &mut Lab) -> Observed {
    if lab.backend() == Backend::Linux {
        linux_policy(lab);
    }
    let mut seen = BTreeMap::new();
    for (client, ns) in [(CLIENT, lab.client()), (CLIENT2, lab.client2())] {
        let server = lab.serve(lab.server(), &["tcp-serve", "8080"]);
        let line = lab.tool_result(
            ns,
            &[
                "tcp-get",
                &ip(SERVER),
                "8080",
                "100000",
                "--timeout",
                OK_WAIT,
            ],
            TOOL_LIMIT,
        );
        seen.insert(client, (outcome(&line), ips(&peers(server))));
    }
    Observed {
        seen,
        // nat's rules count each connection's first packet; mangle's count
        // every packet, as many as TCP happened to send.
        counters: lab
            .packet_counters(Some("nat"))
            .into_iter()
            .filter(|(rule, _)| rule.contains(" -A "))
            .collect(),
    }
}

#[test]
fn marked_connections_leave_by_their_uplink() {
    let dir = WorkDir::new("multiwan");
    let path = dir.path().to_owned();
    on_both_backends_in(
        "marked_connections_leave_by_their_uplink",
        |backend| lab_with(&path, backend, Some(&rules()), CONFIG),
        scenario,
        |o| {
            assert_eq!(
                o.seen[&CLIENT],
                ("ok bytes=100000".to_owned(), BTreeSet::from([GATEWAY_WAN]))
            );
            assert_eq!(
                o.seen[&CLIENT2],
                ("ok bytes=100000".to_owned(), BTreeSet::from([GATEWAY_WAN1]))
            );
        },
    );
}
