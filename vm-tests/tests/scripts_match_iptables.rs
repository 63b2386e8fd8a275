//! The oracle test for scripts of `iptables ...` command lines, xdpgw's
//! second input format.
//!
//! Each accepted script runs with `sh -e` in a fresh namespace; Linux's
//! `iptables-save` afterwards must equal xdpgw's canonical output for the
//! same script, table by table and byte for byte, with the same set of
//! tables. Each rejected script fails under `sh -e` at its marked line (the
//! lines before it succeed); xdpgw must reject it too, naming that line.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use xdpgw_control::parse::{detect_format, Format};
use xdpgw_vm_tests::{compact_diff, require_root, split_save, Netns};

/// A script Linux runs to the end.
struct Script {
    name: &'static str,
    text: &'static str,
}

/// Scripts that exercise every command of the script format and its
/// semantics. Each leaves at least one table behind in Linux.
const ACCEPTED: &[Script] = &[
    Script {
        name: "connlimit_hashlimit_ctexpire",
        text: r#"
iptables -A INPUT -p tcp --syn -m connlimit --connlimit-above 100 -j REJECT
iptables -A INPUT -m connlimit --connlimit-upto 5 --connlimit-mask 24 --connlimit-daddr
iptables -A INPUT -m connlimit ! --connlimit-upto 5
iptables -A INPUT -m connlimit ! --connlimit-above 5 --connlimit-saddr --connlimit-mask 32
iptables -A INPUT -m connlimit --connlimit-above 0 --connlimit-mask 0
iptables -A INPUT -m connlimit --connlimit-above 5 --connlimit-mask 129
iptables -A INPUT -m connlimit --connlimit-above 5 --connlimit-mask 255.255.255.0 --connlimit-daddr
iptables -A INPUT -m hashlimit --hashlimit-upto 10/sec --hashlimit-name foo
iptables -A INPUT -m hashlimit --hashlimit-above 10/min --hashlimit-burst 3 --hashlimit-mode srcip,dstport --hashlimit-name bar --hashlimit-srcmask 24
iptables -A INPUT -m hashlimit --hashlimit-upto 1/hour --hashlimit-name b2 --hashlimit-htable-size 100 --hashlimit-htable-max 200 --hashlimit-htable-expire 5000 --hashlimit-htable-gcinterval 700 --hashlimit-mode dstip --hashlimit-dstmask 16
iptables -A INPUT -m hashlimit --hashlimit-upto 3/s --hashlimit-name b6 --hashlimit-mode srcip,srcport,dstip,dstport
iptables -A INPUT -m hashlimit --hashlimit-upto 3000/s --hashlimit-name b7
iptables -A INPUT -m hashlimit --hashlimit-upto 1000/s --hashlimit-name b8
iptables -A INPUT -m hashlimit --hashlimit-upto 30/m --hashlimit-name b9
iptables -A INPUT -m hashlimit --hashlimit-upto 3/h --hashlimit-name b10
iptables -A INPUT -m hashlimit --hashlimit-upto 5 --hashlimit-name b11
iptables -A INPUT -m hashlimit --hashlimit-upto 60/min --hashlimit-name b13 --hashlimit-burst 2k
iptables -A INPUT -m hashlimit ! --hashlimit-above 5x/se --hashlimit-name b14 --hashlimit-htable-max 2000000
iptables -A INPUT -m conntrack --ctexpire 10:20
iptables -A INPUT -m conntrack ! --ctexpire 10
iptables -A INPUT -m conntrack --ctstate NEW --ctexpire 5:5 --ctstatus ASSURED --ctdir REPLY
iptables -A INPUT -m conntrack --ctexpire 5:
iptables -A INPUT -m conntrack --ctexpire :5
"#,
    },
    Script {
        name: "ipset_blocklist",
        text: r#"
ipset create blocklist hash:net
ipset add blocklist 10.0.0.0/8
ipset add blocklist 10.1.0.0/16 nomatch
ipset add blocklist 192.0.2.7
ipset -exist add blocklist 192.0.2.7
ipset add blocklist 198.51.100.0-198.51.101.255
iptables -A FORWARD -m set --match-set blocklist src -j DROP
iptables -A FORWARD -m set ! --match-set blocklist dst --return-nomatch -j ACCEPT
iptables -A INPUT -m set --match-set blocklist src,dst ! --update-counters --bytes-lt 5 --packets-lt 2 -j DROP
iptables -A INPUT -m set ! --match-set blocklist src ! --packets-eq 3 ! --bytes-eq 4 ! --update-subcounters -j DROP
iptables -A OUTPUT -p tcp --dport 22 -m set --match-set blocklist dst -m comment --comment "set then comment" -j REJECT
iptables -A OUTPUT -m set --set blocklist dst -j DROP
"#,
    },
    Script {
        name: "ipset_types",
        text: r#"
ipset create hosts hash:ip maxelem 100 hashsize 64
ipset add hosts 10.0.0.0/30
ipset add hosts 10.0.1.5-10.0.1.6
ipset create svc hash:ip,port counters
ipset add svc 192.0.2.1,80-82
ipset add svc 192.0.2.1,udp:53 packets 5 bytes 300
ipset create nets hash:net,port
ipset add nets 10.0.0.0/8,tcp:443
ipset add nets 10.9.0.0/16,443 nomatch
ipset create ports bitmap:port range 0-1024
ipset add ports 22
ipset add ports 80-81
ipset create tmo hash:net timeout 600
ipset add tmo 203.0.113.0/24
ipset add tmo 203.0.114.0/24 timeout 100
ipset create all list:set
ipset add all hosts
ipset add all nets
iptables -A FORWARD -m set --match-set svc dst,dst -j ACCEPT
iptables -A FORWARD -m set --match-set nets src,dst -j DROP
iptables -A FORWARD -p tcp -m set --match-set ports dst -j ACCEPT
iptables -A FORWARD -m set --match-set all src,dst,dst -j DROP
iptables -A FORWARD -m set --match-set tmo src -j DROP
iptables -A FORWARD -m set --match-set hosts src,dst,src,dst,src,dst -j DROP
"#,
    },
    Script {
        name: "ipset_swap_flush_destroy",
        text: r#"
ipset create a hash:ip
ipset create b hash:ip
ipset create gone hash:net
ipset add a 1.1.1.1
ipset add b 2.2.2.2
ipset add b 2.2.2.3
ipset swap a b
ipset create c hash:net
ipset add c 3.0.0.0/8
ipset flush c
ipset destroy gone
ipset create reuse bitmap:port range 100-200
iptables -A INPUT -m set --match-set a src -j DROP
"#,
    },
    Script {
        name: "seed_examples",
        text: r#"
iptables -t filter -I INPUT -p tcp -s 198.51.100.7 --dport 80 -j DROP
iptables -t nat -A POSTROUTING -o eth0 -s 192.168.10.10 -j MASQUERADE
iptables -t nat -A PREROUTING -d 192.168.10.10 -p tcp --dport 25 -j REDIRECT
iptables -t mangle -A OUTPUT -p tcp --sport 443 -j DSCP --set-dscp 46
iptables -t raw -I PREROUTING -p tcp --dport 22 -j NOTRACK
"#,
    },
    Script {
        name: "append_keeps_order",
        text: r#"
iptables -A INPUT -s 10.0.0.1 -j ACCEPT
iptables -A INPUT -s 10.0.0.2 -j DROP
iptables -A INPUT -p udp --dport 53 -j ACCEPT
iptables -A INPUT -j REJECT
"#,
    },
    Script {
        name: "insert_default_position_is_1",
        text: r#"
iptables -A INPUT -s 10.0.0.1 -j ACCEPT
iptables -A INPUT -s 10.0.0.2 -j ACCEPT
iptables -I INPUT -s 10.0.0.3 -j DROP
iptables -I INPUT -s 10.0.0.4 -j DROP
"#,
    },
    Script {
        name: "insert_at_position",
        text: r#"
iptables -A FORWARD -s 10.0.0.1 -j ACCEPT
iptables -A FORWARD -s 10.0.0.2 -j ACCEPT
iptables -I FORWARD 2 -s 10.0.0.3 -j DROP
iptables -I FORWARD 4 -s 10.0.0.4 -j DROP
iptables -I FORWARD 1 -s 10.0.0.5 -j ACCEPT
iptables -I OUTPUT 1 -d 10.0.0.6 -j ACCEPT
"#,
    },
    Script {
        name: "delete_by_number",
        text: r#"
iptables -A OUTPUT -d 10.0.1.1 -j ACCEPT
iptables -A OUTPUT -d 10.0.1.2 -j ACCEPT
iptables -A OUTPUT -d 10.0.1.3 -j ACCEPT
iptables -A OUTPUT -d 10.0.1.4 -j ACCEPT
iptables -D OUTPUT 2
iptables -D OUTPUT 3
iptables -D OUTPUT 1
"#,
    },
    Script {
        name: "delete_by_spec_removes_first_identical_rule",
        text: r#"
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
iptables -A INPUT -p tcp --dport 80 -j ACCEPT
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
iptables -A INPUT -p tcp --dport 443 -j ACCEPT
iptables -D INPUT -p tcp --dport 22 -j ACCEPT
"#,
    },
    Script {
        name: "delete_by_spec_spelt_differently",
        text: r#"
iptables -A INPUT -s 192.0.2.1 -p tcp -m tcp --dport 22 -j ACCEPT
iptables -A INPUT -s 192.0.2.0/24 -j DROP
iptables -A INPUT -i eth0 -m comment --comment "keep me" -j ACCEPT
iptables -A INPUT -s 198.51.100.0/24 -j DROP
iptables -D INPUT --protocol tcp --source 192.0.2.1/32 --dport 22 --jump ACCEPT
iptables -D INPUT -s 192.0.2.0/255.255.255.0 -j DROP
"#,
    },
    Script {
        name: "delete_by_spec_with_user_chain_target",
        text: r#"
iptables -N CHK
iptables -A INPUT -j CHK
iptables -A INPUT -s 1.2.3.4 -j CHK
iptables -A INPUT -s 1.2.3.5 -j ACCEPT
iptables -D INPUT -j CHK
iptables -D INPUT -s 1.2.3.4 -j CHK
iptables -X CHK
"#,
    },
    Script {
        name: "replace_rule",
        text: r#"
iptables -A INPUT -s 10.0.0.1 -j ACCEPT
iptables -A INPUT -s 10.0.0.2 -j ACCEPT
iptables -A INPUT -s 10.0.0.3 -j ACCEPT
iptables -R INPUT 2 -s 10.0.0.20 -p tcp --dport 8080 -j DROP
iptables -R INPUT 3 -j LOG --log-prefix "replaced: "
iptables -R INPUT 1 -s 10.0.0.1 -j ACCEPT
"#,
    },
    Script {
        name: "user_chains_and_jumps",
        text: r#"
iptables -N WEB
iptables -N SSH
iptables -A SSH -s 10.0.0.0/8 -j ACCEPT
iptables -A SSH -j DROP
iptables -A WEB -p tcp -m multiport --dports 80,443 -j ACCEPT
iptables -A INPUT -p tcp --dport 22 -j SSH
iptables -A INPUT -p tcp -j WEB
iptables -A WEB -j RETURN
"#,
    },
    Script {
        name: "delete_named_chain",
        text: r#"
iptables -N KEEP
iptables -N GONE
iptables -N ALSO_GONE
iptables -A KEEP -j ACCEPT
iptables -X GONE
iptables -A INPUT -j KEEP
iptables -X ALSO_GONE
"#,
    },
    Script {
        name: "delete_all_user_chains",
        text: r#"
iptables -N A1
iptables -N B2
iptables -A A1 -j B2
iptables -A B2 -j ACCEPT
iptables -A INPUT -s 10.0.0.1 -j ACCEPT
iptables -t nat -N NATCHAIN
iptables -F A1
iptables -F B2
iptables -X
"#,
    },
    Script {
        name: "policies",
        text: r#"
iptables -P INPUT DROP
iptables -P FORWARD DROP
iptables -P FORWARD ACCEPT
iptables -P OUTPUT DROP
iptables -t mangle -P PREROUTING DROP
iptables -t raw -P OUTPUT DROP
iptables -t nat -P POSTROUTING ACCEPT
"#,
    },
    Script {
        name: "flush_one_chain",
        text: r#"
iptables -A INPUT -s 10.0.0.1 -j ACCEPT
iptables -A INPUT -s 10.0.0.2 -j ACCEPT
iptables -A FORWARD -s 10.0.0.3 -j ACCEPT
iptables -A OUTPUT -d 10.0.0.4 -j ACCEPT
iptables -F INPUT
iptables -A INPUT -s 10.9.9.9 -j DROP
"#,
    },
    Script {
        name: "flush_whole_table_keeps_chains_and_policies",
        text: r#"
iptables -P INPUT DROP
iptables -N USER
iptables -A USER -j ACCEPT
iptables -A INPUT -j USER
iptables -A OUTPUT -j ACCEPT
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables -F
iptables -A FORWARD -j DROP
"#,
    },
    Script {
        name: "zero_counters",
        text: r#"
iptables -A INPUT -j ACCEPT
iptables -Z
iptables -Z INPUT
iptables -t nat -A PREROUTING -p udp --dport 53 -j REDIRECT --to-ports 5353
iptables -t nat -Z PREROUTING
iptables -t nat -Z
"#,
    },
    Script {
        name: "zero_flush_delete_leave_untouched_tables_absent",
        text: r#"
iptables -A INPUT -j ACCEPT
iptables -t nat -Z
iptables -t mangle -F
iptables -t raw -X
"#,
    },
    Script {
        name: "table_after_command",
        text: r#"
iptables -A POSTROUTING -t nat -o eth0 -j MASQUERADE
iptables -I PREROUTING -t raw -p tcp --dport 22 -j NOTRACK
iptables -A OUTPUT -p tcp --sport 443 -t mangle -j DSCP --set-dscp 46
iptables -A INPUT -p tcp --dport 22 -j ACCEPT -t filter
iptables -N NATUSER -t nat
iptables -P PREROUTING DROP -t mangle
"#,
    },
    Script {
        name: "long_options",
        text: r#"
iptables --table nat --append POSTROUTING --out-interface eth0 --source 192.168.10.0/24 --jump MASQUERADE
iptables --new-chain LOGGED
iptables --append LOGGED --jump LOG --log-prefix "dropped: "
iptables --append LOGGED --jump DROP
iptables --insert INPUT --protocol tcp --destination 203.0.113.1 --destination-port 25 --jump LOGGED
iptables --insert INPUT 1 --in-interface lo --jump ACCEPT
iptables --append FORWARD --protocol udp --source-port 53 --jump ACCEPT
iptables --replace FORWARD 1 --protocol udp --sport 123 --jump ACCEPT
iptables --delete INPUT 1
iptables --policy FORWARD DROP
iptables --zero
iptables --new-chain TMP
iptables --delete-chain TMP
iptables --append OUTPUT --jump ACCEPT
iptables --flush OUTPUT
"#,
    },
    Script {
        name: "table_option_with_equals",
        text: r#"
iptables --table=nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables --table=mangle -A OUTPUT -p tcp --sport 443 -j DSCP --set-dscp 46
"#,
    },
    Script {
        name: "quoted_comments",
        text: r#"
iptables -A INPUT -p tcp --dport 22 -m comment --comment 'ssh from anywhere' -j ACCEPT
iptables -A INPUT -p tcp --dport 80 -m comment --comment "web: http" -j ACCEPT
iptables -A INPUT -m comment --comment "it's ok" -j ACCEPT
iptables -A INPUT -m comment --comment 'say "hi"' -j ACCEPT
iptables -A INPUT -m comment --comment "say \"bye\"" -j ACCEPT
iptables -A INPUT -m comment --comment single -j ACCEPT
iptables -A INPUT -m comment --comment "-t nat" -j ACCEPT
iptables -A INPUT -m comment --comment 'two'" parts" -j ACCEPT
iptables -A INPUT -j LOG --log-prefix 'in: '
"#,
    },
    Script {
        name: "line_continuations",
        text: r#"
iptables -t nat \
    -A POSTROUTING \
    -o eth0 -s 192.168.10.0/24 \
    -j MASQUERADE
iptables -A INPUT -p tcp \
  --dport 22 -j ACCEPT
iptables \
-A INPUT -m comment --comment 'after a continuation' \
-j DROP
"#,
    },
    Script {
        name: "hash_comments",
        text: "
# a comment before the first command
   # an indented comment

iptables -A INPUT -s 10.0.0.1 -j ACCEPT # a trailing comment
iptables -A INPUT -s 10.0.0.2 -j DROP\t# after a tab
#iptables -A INPUT -j DROP
iptables -A INPUT -m comment --comment \"not # a comment\" -j ACCEPT
iptables -A INPUT -m comment --comment not#comment -j ACCEPT

# the end
",
    },
    Script {
        name: "several_tables",
        text: r#"
iptables -t raw -A PREROUTING -p tcp --dport 22 -j NOTRACK
iptables -t raw -A OUTPUT -p tcp --sport 22 -j NOTRACK
iptables -t mangle -A FORWARD -p tcp --sport 443 -j DSCP --set-dscp 46
iptables -t mangle -A POSTROUTING -o eth0 -j DSCP --set-dscp 10
iptables -t nat -A PREROUTING -i eth1 -p tcp --dport 8080 -j REDIRECT --to-ports 80
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables -A FORWARD -i eth1 -o eth0 -j ACCEPT
iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
"#,
    },
    Script {
        name: "interleaved_chains",
        text: r#"
iptables -A INPUT -s 10.0.0.1 -j ACCEPT
iptables -A OUTPUT -d 10.0.0.1 -j ACCEPT
iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
iptables -I INPUT -s 10.0.0.2 -j DROP
iptables -A FORWARD -j DROP
iptables -t nat -I POSTROUTING -o eth1 -j MASQUERADE
iptables -I OUTPUT 2 -d 10.0.0.2 -j DROP
iptables -D INPUT 2
iptables -A INPUT -s 10.0.0.3 -j ACCEPT
iptables -t nat -D POSTROUTING 2
iptables -R FORWARD 1 -j ACCEPT
iptables -I OUTPUT -d 10.0.0.3 -j DROP
"#,
    },
    Script {
        name: "negations",
        text: r#"
iptables -A INPUT ! -s 10.0.0.0/8 -p tcp ! --dport 22 -j DROP
iptables -A INPUT ! -i lo -d 127.0.0.0/8 -j DROP
iptables -A FORWARD -p udp ! -o eth0 -j ACCEPT
"#,
    },
    Script {
        name: "path_and_wait_options",
        text: r#"
/usr/sbin/iptables -A INPUT -s 10.0.0.1 -j ACCEPT
iptables -w -A INPUT -s 10.0.0.2 -j ACCEPT
iptables -w 5 -t nat -A POSTROUTING -o eth0 -j MASQUERADE
"#,
    },
    Script {
        name: "gateway",
        text: r#"
#!/bin/sh
# A small gateway, as an operator would write it.
iptables -P INPUT DROP
iptables -P FORWARD DROP
iptables -N LOG_DROP
iptables -A LOG_DROP -m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix "xdpgw drop: " --log-level 6
iptables -A LOG_DROP -j DROP
iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -A INPUT -i lo -j ACCEPT
iptables -A INPUT -p icmp --icmp-type echo-request -j ACCEPT
iptables -A INPUT -j LOG_DROP
iptables -A FORWARD -i lan0 -o wan0 -s 192.168.10.0/24 -j ACCEPT
iptables -A FORWARD -j LOG_DROP
iptables -t nat -A POSTROUTING -o wan0 -s 192.168.10.0/24 -j MASQUERADE
"#,
    },
    Script {
        name: "address_lists_make_one_rule_per_pair",
        text: r#"
iptables -A FORWARD -j ACCEPT
iptables -I FORWARD 1 -s 10.0.0.1,10.0.0.2 -d 1.1.1.1,2.2.2.2 -j DROP
iptables -A FORWARD -s 10.0.0.3,10.0.0.4/24,0.0.0.0/0 -p tcp --dport 22 -j DROP
iptables -A FORWARD -d 192.0.2.1,192.0.2.1 -j REJECT
iptables -D FORWARD -s 10.0.0.1,10.0.0.2 -d 1.1.1.1 -j DROP
iptables -t nat -A POSTROUTING -s 192.168.10.0/24,192.168.20.0/24 -o wan0 -j MASQUERADE
"#,
    },
    Script {
        name: "conntrack_tuples_status_direction",
        text: r#"
iptables -A FORWARD -m conntrack --ctorigsrc 10.0.0.1
iptables -A FORWARD -m conntrack ! --ctorigdst 10.0.0.0/8 --ctorigdstport 80
iptables -A FORWARD -m conntrack --ctreplsrc 1.2.3.4 --ctrepldst 5.6.7.8 --ctreplsrcport 1:10 --ctrepldstport 99
iptables -A FORWARD -m conntrack --ctproto tcp --ctstatus ASSURED,SEEN_REPLY --ctdir ORIGINAL
iptables -A FORWARD -m conntrack --ctstate NEW --ctorigsrcport 1024:
iptables -A FORWARD -m conntrack --ctproto udp ! --ctstatus NONE
iptables -A FORWARD -m conntrack ! --ctorigsrcport 80 --ctdir REPLY
iptables -A FORWARD -m conntrack --ctorigsrcport :80
iptables -A FORWARD -m conntrack --ctstatus EXPECTED,CONFIRMED,NONE
iptables -A FORWARD -m conntrack --ctorigsrcport 80:70
iptables -A FORWARD -m conntrack ! --ctstate INVALID ! --ctproto icmp --ctrepldst 192.0.2.0/24 -j DROP
"#,
    },
];

/// A script Linux stops in: `>` marks the line whose command fails (the
/// marker is removed before use).
struct Rejected {
    name: &'static str,
    marked: &'static str,
}

impl Rejected {
    /// The script, without the marker.
    fn text(&self) -> String {
        self.marked
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix('>').unwrap_or(l)))
            .collect()
    }

    /// The lines before the marked one: a script Linux runs to the end.
    fn prefix(&self) -> String {
        self.marked
            .lines()
            .take_while(|l| !l.starts_with('>'))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The 1-based number of the marked line.
    fn failing_line(&self) -> usize {
        let marked: Vec<usize> = self
            .marked
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with('>'))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(
            marked.len(),
            1,
            "case {}: exactly one line must be marked with '>'",
            self.name
        );
        marked[0]
    }
}

const REJECTED: &[Rejected] = &[
    Rejected {
        name: "connlimit_without_a_limit",
        marked: ">iptables -A INPUT -m connlimit --connlimit-mask 24
",
    },
    Rejected {
        name: "connlimit_upto_and_above",
        marked: ">iptables -A INPUT -m connlimit --connlimit-above 5 --connlimit-upto 6
",
    },
    Rejected {
        name: "connlimit_mask_inverted",
        marked: ">iptables -A INPUT -m connlimit --connlimit-above 5 ! --connlimit-mask 24
",
    },
    Rejected {
        name: "connlimit_saddr_and_daddr",
        marked: ">iptables -A INPUT -m connlimit --connlimit-above 5 --connlimit-saddr --connlimit-daddr
",
    },
    Rejected {
        name: "connlimit_limit_out_of_range",
        marked: "iptables -A INPUT -m connlimit --connlimit-above 4294967295
>iptables -A INPUT -m connlimit --connlimit-above 4294967296
",
    },
    Rejected {
        name: "hashlimit_without_a_name",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/sec
",
    },
    Rejected {
        name: "hashlimit_without_a_rate",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-name x
",
    },
    Rejected {
        name: "hashlimit_upto_and_above",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/sec --hashlimit-above 5/sec --hashlimit-name x
",
    },
    Rejected {
        name: "hashlimit_unknown_unit",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/fortnight --hashlimit-name x
",
    },
    Rejected {
        name: "hashlimit_zero_rate",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 0/sec --hashlimit-name x
",
    },
    Rejected {
        name: "hashlimit_rate_too_fast",
        marked: "iptables -A INPUT -m hashlimit --hashlimit-upto 1000000/sec --hashlimit-name x
>iptables -A INPUT -m hashlimit --hashlimit-upto 2000000/sec --hashlimit-name y
",
    },
    Rejected {
        name: "hashlimit_burst_0",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/sec --hashlimit-name x --hashlimit-burst 0
",
    },
    Rejected {
        name: "hashlimit_burst_above_1000000",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/sec --hashlimit-name x --hashlimit-burst 1000001
",
    },
    Rejected {
        name: "hashlimit_unknown_mode",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/sec --hashlimit-name x --hashlimit-mode srcip,foo
",
    },
    Rejected {
        name: "hashlimit_srcmask_33",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/sec --hashlimit-name x --hashlimit-srcmask 33
",
    },
    Rejected {
        name: "hashlimit_expire_0",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/sec --hashlimit-name x --hashlimit-htable-expire 0
",
    },
    Rejected {
        name: "hashlimit_gcinterval_0",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/sec --hashlimit-name x --hashlimit-htable-gcinterval 0
",
    },
    Rejected {
        name: "hashlimit_name_with_slash",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/sec --hashlimit-name a/b
",
    },
    Rejected {
        name: "hashlimit_credits_overflow",
        marked: "iptables -A INPUT -m hashlimit --hashlimit-upto 1/day --hashlimit-burst 3 --hashlimit-name x
>iptables -A INPUT -m hashlimit --hashlimit-upto 1/day --hashlimit-burst 2 --hashlimit-name y
",
    },
    Rejected {
        name: "hashlimit_inverted_name",
        marked: ">iptables -A INPUT -m hashlimit --hashlimit-upto 5/sec ! --hashlimit-name x
",
    },
    Rejected {
        name: "ctexpire_not_a_number",
        marked: ">iptables -A INPUT -m conntrack --ctexpire abc
",
    },
    Rejected {
        name: "ctexpire_out_of_range",
        marked: "iptables -A INPUT -m conntrack --ctexpire 4294967295
>iptables -A INPUT -m conntrack --ctexpire 4294967296
",
    },
    Rejected {
        name: "recent_without_a_command",
        marked: "iptables -A INPUT -m recent --set --name SSH
>iptables -A INPUT -m recent --name SSH -j DROP
",
    },
    Rejected {
        name: "recent_set_with_rttl",
        marked: ">iptables -A INPUT -m recent --set --rttl
",
    },
    Rejected {
        name: "recent_reap_without_seconds",
        marked: ">iptables -A INPUT -m recent --update --reap -j DROP
",
    },
    Rejected {
        name: "recent_remove_with_hitcount",
        marked: ">iptables -A INPUT -m recent --remove --hitcount 3
",
    },
    Rejected {
        name: "recent_hitcount_above_65535",
        marked: ">iptables -A INPUT -m recent --update --hitcount 65536 -j DROP
",
    },
    Rejected {
        name: "recent_seconds_0",
        marked: ">iptables -A INPUT -m recent --rcheck --seconds 0 -j DROP
",
    },
    Rejected {
        name: "recent_name_with_slash",
        marked: ">iptables -A INPUT -m recent --set --name a/b
",
    },
    Rejected {
        name: "recent_set_and_update",
        marked: ">iptables -A INPUT -m recent --set --update
",
    },
    Rejected {
        name: "conntrack_without_options",
        marked: "iptables -A FORWARD -m conntrack --ctdir REPLY
>iptables -A FORWARD -m conntrack -j DROP
",
    },
    Rejected {
        name: "conntrack_ctdir_inverted",
        marked: "iptables -A FORWARD -m conntrack --ctdir REPLY
>iptables -A FORWARD -m conntrack ! --ctdir REPLY
",
    },
    Rejected {
        name: "addrtype_without_types",
        marked: "iptables -A INPUT -m addrtype --dst-type LOCAL
>iptables -A INPUT -m addrtype --limit-iface-in
",
    },
    Rejected {
        name: "addrtype_limit_out_in_input",
        marked: "iptables -A FORWARD -m addrtype --dst-type LOCAL --limit-iface-out
>iptables -A INPUT -m addrtype --dst-type LOCAL --limit-iface-out
",
    },
    Rejected {
        name: "addrtype_unknown_type",
        marked: "iptables -A INPUT -m addrtype --dst-type LOCAL
>iptables -A INPUT -m addrtype --dst-type FOO
",
    },
    Rejected {
        name: "tcpmss_clamp_in_prerouting",
        marked: "iptables -t mangle -A FORWARD -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu
>iptables -t mangle -A PREROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu
",
    },
    Rejected {
        name: "tcpmss_without_tcp",
        marked: "iptables -t mangle -A FORWARD -p tcp -j TCPMSS --set-mss 1400
>iptables -t mangle -A FORWARD -j TCPMSS --set-mss 1400
",
    },
    Rejected {
        name: "tcpmss_twice",
        marked: "iptables -t mangle -A FORWARD -p tcp -j TCPMSS --set-mss 1400
>iptables -t mangle -A FORWARD -p tcp -j TCPMSS --set-mss 1400 --set-mss 1300
",
    },
    Rejected {
        name: "tcpmss_too_big",
        marked: "iptables -t mangle -A FORWARD -p tcp -j TCPMSS --set-mss 65515
>iptables -t mangle -A FORWARD -p tcp -j TCPMSS --set-mss 65516
",
    },
    Rejected {
        name: "connmark_target_without_an_operation",
        marked: "iptables -t mangle -A PREROUTING -j CONNMARK --set-mark 1
>iptables -t mangle -A PREROUTING -j CONNMARK --mask 0xff
",
    },
    Rejected {
        name: "connmark_save_and_restore",
        marked: "iptables -t mangle -A PREROUTING -j CONNMARK --save-mark
>iptables -t mangle -A PREROUTING -j CONNMARK --save-mark --restore-mark
",
    },
    Rejected {
        name: "connmark_mask_and_nfmask",
        marked: "iptables -t mangle -A PREROUTING -j CONNMARK --save-mark
>iptables -t mangle -A PREROUTING -j CONNMARK --save-mark --mask 0xff --nfmask 0xf
",
    },
    Rejected {
        name: "connmark_match_without_mark",
        marked: "iptables -A FORWARD -m connmark --mark 1
>iptables -A FORWARD -m connmark -j ACCEPT
",
    },
    Rejected {
        name: "ipset_rule_names_a_missing_set",
        marked: "ipset create bl hash:net
>iptables -A FORWARD -m set --match-set nope src -j DROP
",
    },
    Rejected {
        name: "ipset_set_created_after_the_rule",
        marked: ">iptables -A FORWARD -m set --match-set later src -j DROP
ipset create later hash:net
",
    },
    Rejected {
        name: "ipset_add_twice_without_exist",
        marked: "ipset create a hash:ip
ipset add a 1.1.1.1
>ipset add a 1.1.1.1
",
    },
    Rejected {
        name: "ipset_del_missing",
        marked: "ipset create a hash:ip
>ipset del a 1.1.1.1
",
    },
    Rejected {
        name: "ipset_create_twice",
        marked: "ipset create a hash:ip maxelem 10
>ipset -exist create a hash:ip
",
    },
    Rejected {
        name: "ipset_destroy_in_use",
        marked: "ipset create a hash:ip
iptables -A INPUT -m set --match-set a src -j DROP
>ipset destroy a
",
    },
    Rejected {
        name: "ipset_destroy_listed",
        marked: "ipset create a hash:ip
ipset create l list:set
ipset add l a
>ipset destroy a
",
    },
    Rejected {
        name: "ipset_swap_other_type",
        marked: "ipset create a hash:ip
ipset create n hash:net
>ipset swap a n
",
    },
    Rejected {
        name: "ipset_maxelem_reached",
        marked: "ipset create a hash:ip maxelem 2
ipset add a 1.1.1.1
ipset add a 1.1.1.2
>ipset add a 1.1.1.3
",
    },
    Rejected {
        name: "ipset_too_many_dimensions",
        marked: "ipset create a hash:ip
>iptables -A INPUT -m set --match-set a src,dst,src,dst,src,dst,src -j DROP
",
    },
    Rejected {
        name: "ipset_bad_direction",
        marked: "ipset create a hash:ip
>iptables -A INPUT -m set --match-set a source -j DROP
",
    },
    Rejected {
        name: "ipset_match_set_twice",
        marked: "ipset create a hash:ip
>iptables -A INPUT -m set --match-set a src --match-set a dst -j DROP
",
    },
    Rejected {
        name: "ipset_counter_gt_inverted",
        marked: "ipset create a hash:ip
>iptables -A INPUT -m set --match-set a src ! --packets-gt 3 -j DROP
",
    },
    Rejected {
        name: "ipset_no_match_set",
        marked: "ipset create a hash:ip
>iptables -A INPUT -m set --return-nomatch -j DROP
",
    },
    Rejected {
        name: "ipset_timeout_without_support",
        marked: "ipset create a hash:ip
>ipset add a 1.1.1.1 timeout 10
",
    },
    Rejected {
        name: "ipset_bitmap_out_of_range",
        marked: "ipset create p bitmap:port range 100-200
>ipset add p 80
",
    },
    Rejected {
        name: "ipset_nomatch_in_hash_ip",
        marked: "ipset create a hash:ip
>ipset add a 1.1.1.1 nomatch
",
    },
    Rejected {
        name: "ipset_cidr_zero",
        marked: "ipset create n hash:net
>ipset add n 10.0.0.0/0
",
    },
    Rejected {
        name: "address_list_delete_is_all_or_nothing",
        marked: "iptables -A FORWARD -s 10.0.0.1 -d 2.2.2.2 -j DROP
>iptables -D FORWARD -s 10.0.0.1,10.0.0.7 -d 2.2.2.2 -j DROP
",
    },
    Rejected {
        name: "address_list_replace",
        marked: "iptables -A FORWARD -s 10.0.0.1 -j DROP
>iptables -R FORWARD 1 -s 10.0.0.1,10.0.0.2 -j DROP
",
    },
    Rejected {
        name: "address_list_empty_element",
        marked: "iptables -A FORWARD -s 10.0.0.1 -j DROP
>iptables -A FORWARD -s 10.0.0.1, -j DROP
",
    },
    Rejected {
        name: "address_list_with_the_other_inverted",
        marked: "iptables -A FORWARD -s 10.0.0.1 -j DROP
>iptables -A FORWARD ! -s 10.0.0.1 -d 10.0.0.2,10.0.0.3 -j DROP
",
    },
    Rejected {
        name: "address_list_inverted",
        marked: "iptables -A FORWARD -s 10.0.0.1 -j DROP
>iptables -A FORWARD ! -s 10.0.0.1,10.0.0.2 -j DROP
",
    },
    Rejected {
        name: "delete_missing_rule",
        marked: "iptables -A INPUT -s 10.0.0.1 -j ACCEPT
>iptables -D INPUT -s 10.0.0.2 -j ACCEPT
",
    },
    Rejected {
        name: "delete_rule_with_other_target",
        marked: "iptables -A INPUT -p tcp --dport 22 -j ACCEPT
>iptables -D INPUT -p tcp --dport 22 -j DROP
",
    },
    Rejected {
        name: "delete_number_too_big",
        marked: "iptables -A INPUT -s 10.0.0.1 -j ACCEPT
>iptables -D INPUT 2
",
    },
    Rejected {
        name: "insert_5_into_empty_chain",
        marked: "iptables -A OUTPUT -j ACCEPT
>iptables -I INPUT 5 -s 10.0.0.1 -j ACCEPT
",
    },
    Rejected {
        name: "replace_1_in_empty_chain",
        marked: "iptables -A OUTPUT -j ACCEPT
>iptables -R INPUT 1 -s 10.0.0.1 -j ACCEPT
",
    },
    Rejected {
        name: "delete_chain_still_referenced",
        marked: "iptables -N A
iptables -A INPUT -j A
>iptables -X A
",
    },
    Rejected {
        name: "delete_chain_not_empty",
        marked: "iptables -N A
iptables -A A -j ACCEPT
>iptables -X A
",
    },
    Rejected {
        name: "delete_all_chains_one_referenced",
        marked: "iptables -N A
iptables -N B
iptables -A INPUT -j A
>iptables -X
",
    },
    Rejected {
        name: "delete_builtin_chain",
        marked: "iptables -A OUTPUT -j ACCEPT
>iptables -X INPUT
",
    },
    Rejected {
        name: "new_chain_that_exists",
        marked: "iptables -N A
>iptables -N A
",
    },
    Rejected {
        name: "policy_on_user_chain",
        marked: "iptables -N A
>iptables -P A DROP
",
    },
    Rejected {
        name: "policy_reject",
        marked: ">iptables -P INPUT REJECT
",
    },
    Rejected {
        name: "append_to_missing_chain",
        marked: "iptables -A INPUT -j ACCEPT
>iptables -A NOCHAIN -j ACCEPT
",
    },
    Rejected {
        name: "flush_missing_chain",
        marked: "iptables -A INPUT -j ACCEPT
>iptables -F NOCHAIN
",
    },
    Rejected {
        name: "jump_to_deleted_chain",
        marked: "iptables -N A
iptables -X A
>iptables -A INPUT -j A
",
    },
    Rejected {
        name: "jump_to_chain_of_other_table",
        marked: "iptables -t nat -N NATC
>iptables -A INPUT -j NATC
",
    },
    Rejected {
        name: "loop_closed_below_input",
        marked: "iptables -N A
iptables -N B
iptables -A INPUT -j A
iptables -A A -j B
>iptables -A B -j A
",
    },
    Rejected {
        name: "jump_from_input_into_loop",
        marked: "iptables -N A
iptables -N B
iptables -A A -j B
iptables -A B -j A
>iptables -A INPUT -j A
",
    },
    Rejected {
        name: "masquerade_in_filter",
        marked: "iptables -A INPUT -j ACCEPT
>iptables -A INPUT -j MASQUERADE
",
    },
    Rejected {
        name: "drop_in_nat",
        marked: "iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
>iptables -t nat -A POSTROUTING -o eth1 -j DROP
",
    },
    Rejected {
        name: "zero_missing_chain",
        marked: "iptables -A INPUT -j ACCEPT
>iptables -Z NOCHAIN
",
    },
    Rejected {
        name: "zero_chain_of_table_not_yet_created",
        marked: "iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
>iptables -Z INPUT
",
    },
];

/// A `PATH` that has the sbin directories, for scripts that call `iptables`.
fn env_path() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("PATH=/usr/sbin:/sbin:/usr/bin:/bin:{path}")
}

/// Runs `script` with `sh -e` in a fresh namespace. Returns whether it
/// succeeded, its stderr, and `iptables-save`'s tables afterwards.
fn run_in_linux(script: &str) -> (bool, String, BTreeMap<String, String>) {
    let ns = Netns::new("script");
    let out = ns.exec_stdin(&["env", &env_path(), "sh", "-e", "-s"], script);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let tables = split_save(&ns.exec_ok(&["iptables-save"]));
    (out.status.success(), stderr, tables)
}

/// xdpgw's canonical tables for `script`, or its errors (or panic) as text.
fn xdpgw_tables(name: &str, script: &str) -> Result<BTreeMap<String, String>, String> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        xdpgw_control::load_rules_str(name, script)
            .map(|set| xdpgw_control::save::render(&set))
            .map_err(|e| e.to_string())
    }));
    let rendered = match result {
        Ok(r) => r?,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            return Err(format!("xdpgw panicked: {msg}"));
        }
    };
    catch_unwind(|| split_save(&rendered))
        .map_err(|_| format!("xdpgw's output is not in iptables-save form:\n{rendered}"))
}

fn indent(text: &str) -> String {
    format!("    {}", text.trim_end().replace('\n', "\n    "))
}

/// Every difference between Linux's tables and xdpgw's.
fn table_problems(
    name: &str,
    linux: &BTreeMap<String, String>,
    ours: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, block) in ours {
        match linux.get(table) {
            None => problems.push(format!(
                "{name}: xdpgw printed table {table}, which Linux does not have:\n{}",
                indent(block)
            )),
            Some(expected) if expected != block => problems.push(format!(
                "{name}: table {table} differs (- Linux, + xdpgw):\n{}",
                indent(&compact_diff(expected, block, 1))
            )),
            Some(_) => {}
        }
    }
    for (table, block) in linux.iter().filter(|(t, _)| !ours.contains_key(*t)) {
        problems.push(format!(
            "{name}: xdpgw did not print table {table}, which Linux has:\n{}",
            indent(block)
        ));
    }
    problems
}

#[test]
fn scripts_are_read_as_scripts() {
    for s in ACCEPTED {
        assert_eq!(
            detect_format(s.text),
            Format::Script,
            "{}: not detected as a script",
            s.name
        );
    }
    for r in REJECTED {
        assert_eq!(
            detect_format(&r.text()),
            Format::Script,
            "{}: not detected as a script",
            r.name
        );
        r.failing_line();
    }
}

#[test]
fn rejected_case_markers() {
    let r = Rejected {
        name: "t",
        marked: "iptables -N A\n>iptables -N A\niptables -N B\n",
    };
    assert_eq!(r.failing_line(), 2);
    assert_eq!(r.prefix(), "iptables -N A\n");
    assert_eq!(r.text(), "iptables -N A\niptables -N A\niptables -N B\n");
}

#[test]
fn xdpgw_scripts_equal_iptables_save() {
    if !require_root("scripts_match_iptables") {
        return;
    }
    let mut problems = Vec::new();
    for s in ACCEPTED {
        let name = format!("{}.sh", s.name);
        let (ok, stderr, linux) = run_in_linux(s.text);
        assert!(
            ok,
            "{name}: Linux rejects the script, so it does not belong in ACCEPTED:\n{stderr}\n{}",
            indent(s.text)
        );
        assert!(
            !linux.is_empty(),
            "{name}: Linux printed no table after the script"
        );
        match xdpgw_tables(&name, s.text) {
            Ok(ours) => problems.extend(table_problems(&name, &linux, &ours)),
            Err(why) => problems.push(format!(
                "{name}: xdpgw rejected what Linux accepts:\n{}",
                indent(&why)
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems between xdpgw and Linux over {} scripts:\n\n{}",
        problems.len(),
        ACCEPTED.len(),
        problems.join("\n\n")
    );
}

#[test]
fn xdpgw_rejects_scripts_iptables_rejects() {
    if !require_root("scripts_match_iptables") {
        return;
    }
    let mut problems = Vec::new();
    for r in REJECTED {
        let name = format!("{}.sh", r.name);
        let line = r.failing_line();
        let text = r.text();

        // Linux: the lines before the marked one run, the marked one fails.
        let (ok, stderr, _) = run_in_linux(&r.prefix());
        assert!(
            ok,
            "{name}: Linux fails before line {line}, so the marker is wrong:\n{stderr}"
        );
        let (ok, linux_says, _) = run_in_linux(&text);
        assert!(
            !ok,
            "{name}: Linux accepts the script, so it does not belong in REJECTED:\n{}",
            indent(&text)
        );
        let linux_says = linux_says
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("Try `"))
            .collect::<Vec<_>>()
            .join(" / ");

        // xdpgw accepts what Linux ran, and rejects the failing line.
        if let Err(why) = xdpgw_tables(&name, &r.prefix()) {
            problems.push(format!(
                "{name}: xdpgw rejects lines 1..{line} (without the failing one), which Linux runs:\n{}",
                indent(&why)
            ));
            continue;
        }
        let blame = format!("{name}:{line}:");
        match xdpgw_tables(&name, &text) {
            Ok(_) => problems.push(format!(
                "{name}: xdpgw accepts it; Linux fails at line {line}: {linux_says}\n{}",
                indent(&text)
            )),
            Err(why) if !why.lines().any(|l| l.starts_with(&blame)) => {
                problems.push(format!(
                    "{name}: xdpgw's error does not name line {line} ({blame}); Linux: {linux_says}\n  xdpgw:\n{}\n  script:\n{}",
                    indent(&why),
                    indent(&text)
                ))
            }
            Err(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} rejected scripts are not rejected like Linux:\n\n{}",
        problems.len(),
        REJECTED.len(),
        problems.join("\n\n")
    );
}

/// `ipset save` as the comparison takes it: `initval` (random in each
/// kernel set) left out, element lines sorted within their set (the
/// kernel prints its hash order), element timeouts (counting down) as `T`.
fn normal_ipset_save(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut adds: Vec<String> = Vec::new();
    let flush = |out: &mut Vec<String>, adds: &mut Vec<String>| {
        adds.sort();
        out.append(adds);
    };
    for l in text.lines() {
        if l.starts_with("create ") {
            flush(&mut out, &mut adds);
            let l = match l.find(" initval ") {
                Some(i) => l[..i].to_string(),
                None => l.to_string(),
            };
            out.push(l);
        } else if l.starts_with("add ") {
            let mut words: Vec<&str> = l.split(' ').collect();
            for i in 1..words.len() {
                if words[i - 1] == "timeout" {
                    words[i] = "T";
                }
            }
            adds.push(words.join(" "));
        } else if !l.trim().is_empty() {
            out.push(l.to_string());
        }
    }
    flush(&mut out, &mut adds);
    out
}

#[test]
fn xdpgw_ipset_save_equals_ipset_save() {
    if !require_root("scripts_match_iptables") {
        return;
    }
    let mut problems = Vec::new();
    let mut compared = 0;
    for s in ACCEPTED.iter().filter(|s| s.text.contains("\nipset ")) {
        let ns = Netns::new("ipset");
        let out = ns.exec_stdin(&["env", &env_path(), "sh", "-e", "-s"], s.text);
        assert!(out.status.success(), "{}: Linux rejects it", s.name);
        let linux = normal_ipset_save(&ns.exec_ok(&["ipset", "save"]));
        let (sets, _) = xdpgw_control::load_sets_and_rules_str(s.name, s.text)
            .unwrap_or_else(|e| panic!("{}: {e}", s.name));
        let ours = normal_ipset_save(&xdpgw_control::ipset::save(&sets, None, 0).expect("save"));
        compared += 1;
        if linux != ours {
            problems.push(format!(
                "{}: ipset save differs (- Linux, + xdpgw):\n{}",
                s.name,
                indent(&compact_diff(&linux.join("\n"), &ours.join("\n"), 1))
            ));
        }
    }
    assert!(compared >= 3);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
