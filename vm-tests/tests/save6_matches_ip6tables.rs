//! The IPv6 oracle tests: `xdpgw save -6` equals what Linux's
//! `ip6tables-save` (1.8.9, nf_tables) prints after loading the same rules,
//! table by table and byte for byte; a script mixing `iptables` and
//! `ip6tables` lines gives each family's tables as Linux's two save
//! commands print them; and every line ip6tables refuses, xdpgw refuses
//! with `file:line:column`.
//!
//! The corpus: `conf/*.rules6` and the generated IPv6 corpus of
//! `xdpgw_vm_tests::corpus::generated6`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use xdpgw_dataplane::rule::Family;
use xdpgw_vm_tests::{compact_diff, corpus, require_root_with, split_save, workspace_dir, Netns};

const PROGRAMS: &[&str] = &["ip6tables-restore", "ip6tables-save"];

fn conf_rules6() -> Vec<(String, String)> {
    let dir = workspace_dir().join("conf");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.expect("reading conf/").path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "rules6"));
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (
                format!("conf/{}", p.file_name().expect("a name").to_string_lossy()),
                text,
            )
        })
        .collect()
}

/// Differences between Linux's and xdpgw's tables.
fn problems(
    name: &str,
    linux: &BTreeMap<String, String>,
    ours: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (table, block) in ours {
        match linux.get(table) {
            None => out.push(format!(
                "{name}: xdpgw printed table {table}, Linux did not"
            )),
            Some(expected) if expected != block => out.push(format!(
                "{name}: table {table} differs (- Linux, + xdpgw):\n{}",
                compact_diff(expected, block, 1)
            )),
            Some(_) => {}
        }
    }
    for table in linux.keys().filter(|t| !ours.contains_key(*t)) {
        out.push(format!("{name}: xdpgw did not print table {table}"));
    }
    out
}

#[test]
fn xdpgw_save6_equals_ip6tables_save() {
    if !require_root_with("save6_matches_ip6tables", PROGRAMS) {
        return;
    }
    let mut cases = conf_rules6();
    assert!(!cases.is_empty(), "conf/ has no .rules6 example");
    cases.extend(corpus::generated6());
    let all_text: String = cases.iter().map(|(_, t)| t.as_str()).collect();
    let missing: Vec<&str> = [
        "-j J6",
        "-g ",
        "-m ipv6header",
        "--soft",
        "-m frag",
        "--fraglast",
        "-m rt",
        "--rt-segsleft",
        "-m hl",
        "-j HL",
        "-j TOS",
        "-j TCPMSS",
        "--icmpv6-type",
        "-m tos",
        "-m addrtype",
        "-m iprange",
        "-m multiport",
        "-j DNAT",
        "-j SNAT",
        "-j MASQUERADE",
        "-j REDIRECT",
        "--reject-with",
        "tcp-reset",
        "-j NOTRACK",
        "-j CT",
        "-j CONNMARK",
        "-j MARK",
        "-j LOG",
        "-j DSCP",
        "! -s",
        ",",
    ]
    .into_iter()
    .filter(|f| !all_text.contains(f))
    .collect();
    assert!(missing.is_empty(), "the IPv6 corpus lacks {missing:?}");
    let mut all = Vec::new();
    let mut rules = 0;
    for (name, text) in &cases {
        let ns = Netns::new("save6");
        ns.exec_stdin_ok(&["ip6tables-restore"], text);
        let linux = split_save(&ns.exec_ok(&["ip6tables-save"]));
        assert!(!linux.is_empty(), "{name}: Linux printed no table");
        match xdpgw_control::load_rules6_str(name, text) {
            Ok(set) => {
                rules += set.tables.iter().map(|t| t.rule_count()).sum::<usize>();
                let ours = split_save(&xdpgw_control::save::render_family(
                    &set,
                    Family::Ipv6,
                    false,
                ));
                all.extend(problems(name, &linux, &ours));
            }
            Err(e) => all.push(format!("{name}: xdpgw rejected what Linux accepts:\n{e}")),
        }
    }
    assert!(rules > 100, "the IPv6 corpus holds only {rules} rules");
    assert!(
        all.is_empty(),
        "{} problems in {} files:\n\n{}",
        all.len(),
        cases.len(),
        all.join("\n")
    );
}

/// A script of `iptables` and `ip6tables` lines: each family's tables as
/// Linux's `iptables-save` and `ip6tables-save` print them after running it.
#[test]
fn a_mixed_script_gives_each_family_its_tables() {
    if !require_root_with("save6_matches_ip6tables (mixed script)", PROGRAMS) {
        return;
    }
    let script = "\
iptables -P FORWARD DROP
ip6tables -P FORWARD DROP
iptables -A FORWARD -s 192.168.10.0/24 -p tcp --dport 80 -j ACCEPT
ip6tables -A FORWARD -s fd00:10::/64 -p tcp --dport 80 -j ACCEPT
ip6tables -A FORWARD -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT
iptables -A FORWARD -p icmp --icmp-type echo-request -j ACCEPT
ip6tables -t nat -A POSTROUTING -o wan0 -s fd00:10::/64 -j MASQUERADE
iptables -t nat -A POSTROUTING -o wan0 -s 192.168.10.0/24 -j MASQUERADE
ip6tables -N LOGDROP
ip6tables -A LOGDROP -j LOG --log-prefix \"drop6 \"
ip6tables -A LOGDROP -j DROP
ip6tables -A INPUT -m frag --fragmore -j LOGDROP
ip6tables -D FORWARD -p ipv6-icmp --icmpv6-type echo-request -j ACCEPT
ip6tables -I FORWARD 1 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
ip6tables -A FORWARD -m conntrack --ctorigsrc fd00:10::/64 ! --ctorigdst 2001:db8:0:0::0/32 --ctrepldst 2001:db8::1/128
ip6tables -A FORWARD -m conntrack --ctreplsrc 2001:db8::/ffff:ffff:: --ctorigsrcport 1024:2048 --ctexpire 10:20
";
    let ns = Netns::new("mix6");
    let path = format!(
        "PATH=/usr/sbin:/sbin:/usr/bin:/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    ns.exec_stdin_ok(&["env", &path, "sh", "-e"], script);
    let linux4 = split_save(&ns.exec_ok(&["iptables-save"]));
    let linux6 = split_save(&ns.exec_ok(&["ip6tables-save"]));
    let file = xdpgw_control::parse::load_file_text(script).unwrap_or_else(|e| panic!("{e}"));
    let ours4 = split_save(&xdpgw_control::save::render(&file.set));
    let ours6 = split_save(&xdpgw_control::save::render_family(
        &file.set6,
        Family::Ipv6,
        false,
    ));
    let mut all = problems("iptables", &linux4, &ours4);
    all.extend(problems("ip6tables", &linux6, &ours6));
    assert!(all.is_empty(), "{}", all.join("\n"));
    assert_eq!(
        file.tables6.len(),
        2,
        "the IPv6 tables named: filter and nat"
    );
}

/// Lines ip6tables refuses, each in an ip6tables-restore file of its own:
/// Linux refuses the file, and xdpgw refuses it with an error at the line.
#[test]
fn what_ip6tables_refuses_xdpgw_refuses_with_its_place() {
    if !require_root_with("save6_matches_ip6tables (refusals)", PROGRAMS) {
        return;
    }
    let bad = [
        "-A INPUT -s 10.0.0.1 -j DROP",
        "-A INPUT -d 2001:db8::/129 -j DROP",
        "-A INPUT -m icmp --icmp-type 8 -j DROP",
        "-A INPUT -p icmp --icmp-type 8 -j DROP",
        "-A INPUT -p ipv6-icmp --icmpv6-type bogus -j DROP",
        "-A INPUT -p ipv6-icmp -m icmp6 -j DROP",
        "-A INPUT -m icmp6 --icmpv6-type 128 -j DROP",
        "-A INPUT -j REJECT --reject-with icmp-host-unreachable",
        "-A INPUT -j REJECT --reject-with icmp-port-unreachable",
        "-A INPUT -f -j DROP",
        "-A INPUT -m ttl --ttl-eq 5 -j DROP",
        "-A INPUT -m hl ! --hl-lt 5 -j DROP",
        "-A INPUT -m ipv6header --soft -j DROP",
        "-A INPUT -m ipv6header --header bogus -j DROP",
        "-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.5 -j DROP",
        "-A INPUT -m set --match-set foo src -j DROP",
        "-A INPUT -p udp -j REJECT --reject-with tcp-reset",
        "-A INPUT -j HL --hl-set 5",
    ];
    let nat_bad = [
        "-A POSTROUTING -j SNAT --to-source 10.0.0.1",
        "-A PREROUTING -p tcp -j DNAT --to-destination [2001:db8::1]:80:90",
        "-A PREROUTING -j DNAT --to-destination [2001:db8::1]:80",
    ];
    let mangle_bad = ["-A PREROUTING -j TTL --ttl-set 5"];
    let files = bad
        .iter()
        .map(|l| ("filter", ":INPUT ACCEPT [0:0]\n", *l))
        .chain(nat_bad.iter().map(|l| {
            (
                "nat",
                ":PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
                *l,
            )
        }))
        .chain(
            mangle_bad
                .iter()
                .map(|l| ("mangle", ":PREROUTING ACCEPT [0:0]\n", *l)),
        );
    let mut wrong = Vec::new();
    for (table, chains, line) in files {
        let text = format!("*{table}\n{chains}{line}\nCOMMIT\n");
        let rule_line = text.lines().position(|l| l == line).expect("the line") + 1;
        let ns = Netns::new("bad6");
        let linux = ns.exec_stdin(&["ip6tables-restore"], &text);
        if linux.status.success() {
            wrong.push(format!("Linux accepts '{line}': not a refusal to test"));
            continue;
        }
        match xdpgw_control::load_rules6_str("bad.rules6", &text) {
            Ok(_) => wrong.push(format!("xdpgw accepts '{line}', which ip6tables refuses")),
            Err(e) => {
                let msg = e.to_string();
                let prefix = format!("bad.rules6:{rule_line}:");
                if !msg.lines().all(|l| l.starts_with(&prefix)) {
                    wrong.push(format!("'{line}': errors not at line {rule_line}: {msg}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
