//! The IPv6 listing oracle: `xdpgw list -6` (its renderer,
//! [`list_in`] for IPv6) prints what Linux's `ip6tables -L` (1.8.9,
//! nf_tables) prints for the same rules and counters, byte for byte, table
//! by table, with and without `-n`, `-v`, `-x` and `--line-numbers`, and
//! for one chain.
//!
//! The corpus: `conf/*.rules6`, the generated IPv6 corpus of
//! `xdpgw_vm_tests::corpus::generated6` and the forms of [`FORMS`], their policies given counters of
//! every magnitude (`ip6tables-restore -c` keeps a chain's counters; it
//! sets a rule's to zero); and a rule set whose rules count real traffic
//! (pings over the namespace's loopback), read back from
//! `ip6tables-save -c` and loaded into xdpgw with those counters.

use std::path::PathBuf;

use xdpgw_control::api::view::{list_in, ListFormat};
use xdpgw_dataplane::rule::{Family, RuleSet, Table};
use xdpgw_vm_tests::{compact_diff, corpus, require_root_with, split_save, workspace_dir, Netns};

/// The forms of every IPv6 match and target the listing writes its own
/// way: hop limits, fragment, routing and extension headers, ICMPv6 types
/// by name and number, address masks, address ranges, NAT66 ranges, REJECT's
/// ICMPv6 kinds, LOG levels, `[goto]`.
const FORMS: &str = r#"*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -j HL --hl-set 64
-A PREROUTING -j HL --hl-inc 1
-A PREROUTING -j HL --hl-dec 2
-A PREROUTING -m hl --hl-eq 1
-A PREROUTING -m hl ! --hl-eq 2
-A PREROUTING -m hl --hl-lt 3
-A PREROUTING -m hl --hl-gt 4
-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1220
-A FORWARD -j TOS --set-tos 0x10
-A FORWARD -j DSCP --set-dscp 10
-A FORWARD -m tos --tos 0x08/0x3f -j MARK --set-mark 7
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination [fd00::1]:8080
-A PREROUTING -p tcp --dport 81 -j DNAT --to-destination [fd00::1-fd00::5]:8000-8010
-A PREROUTING -p udp --dport 82 -j DNAT --to-destination fd00::2
-A PREROUTING -p udp --dport 83 -j DNAT --to-destination ::10.0.0.1
-A PREROUTING -p tcp --dport 84 -j REDIRECT --to-ports 3128
-A PREROUTING -p tcp --dport 85 -j REDIRECT --to-ports 3128-3130 --random
-A POSTROUTING -o wan0 -s fd00::/8 -j SNAT --to-source 2001:db8::1
-A POSTROUTING -o wan0 -p udp -j SNAT --to-source [2001:db8::1-2001:db8::4]:1024-2047
-A POSTROUTING -o wan1 -p tcp -j MASQUERADE --to-ports 1024-65535
-A POSTROUTING -o wan2 -j MASQUERADE --random-fully
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:L - [0:0]
-A INPUT -s ::/64 -d ::/0
-A INPUT ! -s ::/64 ! -d ::1
-A INPUT -s 2001:db8::/ffff:ffff:0:ffff:: -d fe80::1/10
-A INPUT -s ::ffff:192.0.2.1 -d 2001:db8:1:2:3:4:5:6/127
-A INPUT -p ipv6-icmp --icmpv6-type 1/4
-A INPUT -p ipv6-icmp ! --icmpv6-type 1/3
-A INPUT -p ipv6-icmp --icmpv6-type 1
-A INPUT -p ipv6-icmp --icmpv6-type 200
-A INPUT -p ipv6-icmp --icmpv6-type 200/7
-A INPUT -p ipv6-icmp ! --icmpv6-type echo-reply
-A INPUT -p ipv6-icmp --icmpv6-type ttl-zero-during-reassembly
-A INPUT -p icmpv6 --icmpv6-type redirect
-A INPUT -m frag --fragid 5
-A INPUT -m frag ! --fragid 5:10
-A INPUT -m frag ! --fragid 7 --fraglen 8 --fragres --fragfirst
-A INPUT -m frag ! --fraglen 8 --fraglast
-A INPUT -m frag --fragmore
-A INPUT -m rt --rt-type 0
-A INPUT -m rt ! --rt-type 2 --rt-segsleft 3
-A INPUT -m rt --rt-segsleft 3:9 ! --rt-len 16
-A INPUT -m rt ! --rt-segsleft 1:2
-A INPUT -m ipv6header --header hop,dst --soft
-A INPUT -m ipv6header ! --header frag
-A INPUT -m ipv6header --header esp,none,prot
-A INPUT -m ipv6header --header ah,route
-A INPUT -m iprange --src-range 2001:db8::1-2001:db8::9
-A INPUT -m iprange ! --dst-range ::1-::ffff --src-range fd00::1-fd00::2
-A INPUT -p udp -m multiport --dports 53,123:124
-A INPUT -p udplite
-A INPUT -p 200
-A INPUT ! -p tcp
-A INPUT -p esp
-A INPUT -p ah
-A INPUT -m conntrack --ctstate NEW,UNTRACKED -m limit --limit 3/hour --limit-burst 2
-A INPUT -m conntrack --ctorigsrc fd00:10::/64 ! --ctreplsrc 2001:db8::1 --ctrepldst ::/0
-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in
-A INPUT -m comment --comment "a \"quoted\" comment"
-A INPUT -m mark ! --mark 0x1/0xf -m connmark --mark 2
-A INPUT -m dscp --dscp 0x2e
-A INPUT -m length --length 1280:1500
-A INPUT -j L
-A FORWARD -p tcp -j REJECT --reject-with tcp-reset
-A FORWARD -j REJECT --reject-with icmp6-no-route
-A FORWARD -j REJECT --reject-with icmp6-adm-prohibited
-A FORWARD -j REJECT --reject-with icmp6-addr-unreachable
-A FORWARD -j REJECT --reject-with icmp6-port-unreachable
-A FORWARD -j REJECT --reject-with icmp6-policy-fail
-A FORWARD -j REJECT --reject-with icmp6-reject-route
-A FORWARD -j REJECT
-A FORWARD -g L
-A L -j LOG --log-level 0
-A L -j LOG --log-level 1
-A L -j LOG --log-level 2
-A L -j LOG --log-level 3
-A L -j LOG --log-level 4 --log-prefix "p "
-A L -j LOG --log-level 5
-A L -j LOG --log-level 6
-A L -j LOG --log-level 7
-A L -j CONNMARK --save-mark
-A L -j RETURN
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp --dport 53 -j CT --notrack
-A PREROUTING -p udp --dport 54 -j NOTRACK
-A OUTPUT -p tcp --sport 22 --dport 1024:65535
COMMIT
"#;

const PROGRAMS: &[&str] = &["ip6tables", "ip6tables-restore", "ip6tables-save", "ping"];

/// The option sets compared: `ip6tables -L` arguments and the same as a
/// [`ListFormat`].
fn formats() -> Vec<(Vec<&'static str>, ListFormat)> {
    let f = |verbose, numeric, exact, line_numbers| ListFormat {
        verbose,
        numeric,
        exact,
        line_numbers,
    };
    vec![
        (vec![], f(false, false, false, false)),
        (vec!["-n"], f(false, true, false, false)),
        (vec!["-v"], f(true, false, false, false)),
        (vec!["-v", "-n"], f(true, true, false, false)),
        (vec!["-v", "-x"], f(true, false, true, false)),
        (
            vec!["-v", "-n", "-x", "--line-numbers"],
            f(true, true, true, true),
        ),
        (vec!["--line-numbers"], f(false, false, false, true)),
    ]
}

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

/// `text` with each built-in chain's `[0:0]` replaced by counters of the
/// next magnitude (exact, K, M, G and T once abbreviated), and without
/// rules' counters (`[p:b] -A ...`), which Linux's `ip6tables-restore -c`
/// does not keep (1.8.9, nf_tables).
fn with_policy_counters(text: &str) -> String {
    const COUNTERS: [(u64, u64); 6] = [
        (7, 999),
        (99_999, 100_000),
        (123_456, 98_765_432),
        (9_999_499, 12_345_678_901),
        (123_456_789_012, 9_876_543_210_987),
        (0, 0),
    ];
    let mut next = 0;
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.strip_prefix('[') {
            Some(rest) => rest.split_once("] ").map_or(line, |(_, rule)| rule),
            None => line,
        };
        let policy = line
            .strip_prefix(':')
            .and_then(|l| l.split_whitespace().nth(1))
            .is_some_and(|p| p != "-");
        match line.strip_suffix("[0:0]") {
            Some(head) if policy => {
                let (p, b) = COUNTERS[next % COUNTERS.len()];
                next += 1;
                out.push_str(&format!("{head}[{p}:{b}]"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Every listing of every table Linux holds in `ns`, compared with xdpgw's
/// of `set`: the differences.
fn compare(name: &str, ns: &Netns, set: &RuleSet) -> (usize, Vec<String>) {
    let linux = split_save(&ns.exec_ok(&["ip6tables-save"]));
    assert!(!linux.is_empty(), "{name}: Linux printed no table");
    let mut problems = Vec::new();
    let mut compared = 0;
    for table in linux.keys() {
        let Some(t) =
            Table::from_name(table).and_then(|tb| set.tables.iter().find(|t| t.table == tb))
        else {
            problems.push(format!("{name}: xdpgw has no table {table}"));
            continue;
        };
        // The last chain: a user chain where the table has one.
        let one_chain = t.chains.last().map(|c| c.name.clone());
        for (args, f) in formats() {
            for chain in [None, one_chain.as_deref()] {
                let mut cmd = vec!["ip6tables", "-t", table, "-L"];
                cmd.extend(chain);
                cmd.extend(&args);
                let expected = ns.exec_ok(&cmd);
                let got =
                    list_in(t, chain, f, Family::Ipv6).unwrap_or_else(|e| format!("error: {e}\n"));
                compared += 1;
                if expected != got {
                    problems.push(format!(
                        "{name}: `{}` differs (- Linux, + xdpgw):\n{}",
                        cmd.join(" "),
                        compact_diff(&expected, &got, 1)
                    ));
                }
            }
        }
    }
    (compared, problems)
}

#[test]
fn xdpgw_list6_equals_ip6tables_list() {
    if !require_root_with("list6_matches_ip6tables", PROGRAMS) {
        return;
    }
    let mut cases = conf_rules6();
    assert!(!cases.is_empty(), "conf/ has no .rules6 example");
    cases.extend(corpus::generated6());
    cases.push(("forms".into(), FORMS.into()));
    let mut all = Vec::new();
    let mut compared = 0;
    let mut rules = 0;
    for (name, text) in &cases {
        let text = with_policy_counters(text);
        let ns = Netns::new("list6");
        ns.exec_stdin_ok(&["ip6tables-restore", "-c"], &text);
        match xdpgw_control::load_rules6_str(name, &text) {
            Ok(set) => {
                rules += set.tables.iter().map(|t| t.rule_count()).sum::<usize>();
                let (n, problems) = compare(name, &ns, &set);
                compared += n;
                all.extend(problems);
            }
            Err(e) => all.push(format!("{name}: xdpgw rejected what Linux accepts:\n{e}")),
        }
    }
    assert!(rules > 100, "the IPv6 corpus holds only {rules} rules");
    assert!(
        all.is_empty(),
        "{} of {compared} listings differ:\n\n{}",
        all.len(),
        all.join("\n")
    );
}

/// Rules that counted real packets (pings of 60,000 bytes over the
/// namespace's loopback, so that the byte counters reach the K and M
/// forms): Linux's counters, read with `ip6tables-save -c` and loaded into
/// xdpgw, listed alike.
#[test]
fn counted_traffic_lists_as_ip6tables_lists_it() {
    if !require_root_with("list6_matches_ip6tables (counters)", PROGRAMS) {
        return;
    }
    let rules = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ICMP6 - [0:0]
-A INPUT -i lo -p ipv6-icmp -j ICMP6
-A INPUT -s ::1 -p udp --dport 9 -j DROP
-A OUTPUT -o lo -d ::1 -p ipv6-icmp --icmpv6-type echo-request -m hl --hl-gt 1
-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset
-A ICMP6 -p ipv6-icmp --icmpv6-type echo-reply -j ACCEPT
-A ICMP6 -m limit --limit 1000/sec -j RETURN
COMMIT
";
    let ns = Netns::new("list6c");
    ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
    ns.exec_stdin_ok(&["ip6tables-restore"], rules);
    ns.exec_ok(&[
        "ping", "-6", "-n", "-q", "-f", "-c", "100", "-s", "60000", "::1",
    ]);
    let saved = ns.exec_ok(&["ip6tables-save", "-c"]);
    let set = xdpgw_control::load_rules6_str("ip6tables-save -c", &saved)
        .unwrap_or_else(|e| panic!("{e}\n{saved}"));
    let filter = set
        .tables
        .iter()
        .find(|t| t.table == Table::Filter)
        .expect("the filter table");
    let input = &filter.chains[0];
    assert!(
        input.rules[0].counters.bytes > 6_000_000,
        "the pings were not counted:\n{saved}"
    );
    let (compared, problems) = compare("counted", &ns, &set);
    assert!(compared > 0);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
