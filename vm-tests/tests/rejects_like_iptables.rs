//! Rules that Linux's iptables-restore rejects are rejected by xdpgw too, with
//! an error that names the offending line.
//!
//! Each case is a small restore file. Lines marked with a leading `>` are the
//! offending ones (the marker is removed before use); xdpgw's error must name
//! one of them as `:<line>:`. The test first checks that Linux really rejects
//! the file, so the table cannot drift away from iptables.

use std::panic::{catch_unwind, AssertUnwindSafe};

use xdpgw_vm_tests::{require_root, Netns};

struct Case {
    name: &'static str,
    /// The file, with `>` before each offending line.
    marked: String,
    /// The error may also name the line after the last one (end of file).
    eof_ok: bool,
}

impl Case {
    fn text(&self) -> String {
        let mut out = String::new();
        for line in self.marked.lines() {
            out.push_str(line.strip_prefix('>').unwrap_or(line));
            out.push('\n');
        }
        out
    }

    /// The line numbers (1-based) that xdpgw may blame.
    fn blamed_lines(&self) -> Vec<usize> {
        let mut lines: Vec<usize> = self
            .marked
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with('>'))
            .map(|(i, _)| i + 1)
            .collect();
        if self.eof_ok {
            lines.push(self.marked.lines().count() + 1);
        }
        lines
    }
}

fn builtins(table: &str) -> &'static [&'static str] {
    match table {
        "filter" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        t => panic!("unknown table {t}"),
    }
}

/// A minimal valid restore file for `table` around `body` (one line or
/// several), a valid rule before and after it. Chain lines (`:NAME ...`) of
/// `body` go after the built-in chains.
fn in_table(table: &str, body: &str) -> String {
    let mut out = format!("*{table}\n");
    for chain in builtins(table) {
        out.push_str(&format!(":{chain} ACCEPT [0:0]\n"));
    }
    let is_chain_line = |l: &&str| l.trim_start_matches('>').starts_with(':');
    for line in body.lines().filter(is_chain_line) {
        out.push_str(line);
        out.push('\n');
    }
    let chain = builtins(table)[0];
    out.push_str(&format!("-A {chain} -s 10.0.0.1 -j ACCEPT\n"));
    for line in body.lines().filter(|l| !is_chain_line(l)) {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!("-A {chain} -d 10.0.0.2 -j ACCEPT\n"));
    out.push_str("COMMIT\n");
    out
}

fn case(name: &'static str, table: &str, body: &str) -> Case {
    Case {
        name,
        marked: in_table(table, body),
        eof_ok: false,
    }
}

fn cases() -> Vec<Case> {
    vec![
        case("-o in INPUT", "filter", ">-A INPUT -o eth0 -j ACCEPT"),
        case("-i in POSTROUTING", "nat", ">-A POSTROUTING -i eth0 -j MASQUERADE"),
        case("-i in OUTPUT", "filter", ">-A OUTPUT -i eth0 -j ACCEPT"),
        case("-o in PREROUTING", "mangle", ">-A PREROUTING -o eth0 -j ACCEPT"),
        case("DNAT in nat INPUT", "nat", ">-A INPUT -j DNAT --to-destination 10.0.0.1"),
        case("MASQUERADE in PREROUTING", "nat", ">-A PREROUTING -j MASQUERADE"),
        case("SNAT in nat OUTPUT", "nat", ">-A OUTPUT -j SNAT --to-source 1.2.3.4"),
        case("REJECT in nat", "nat", ">-A PREROUTING -j REJECT"),
        case("REDIRECT in filter", "filter", ">-A INPUT -p tcp -j REDIRECT"),
        case("DSCP in filter", "filter", ">-A FORWARD -j DSCP --set-dscp 10"),
        case("DSCP in raw", "raw", ">-A PREROUTING -j DSCP --set-dscp 1"),
        case("NOTRACK in filter", "filter", ">-A INPUT -j NOTRACK"),
        case("CT --notrack in mangle", "mangle", ">-A OUTPUT -j CT --notrack"),
        case(
            "tcp-reset without -p tcp",
            "filter",
            ">-A INPUT -j REJECT --reject-with tcp-reset",
        ),
        case(
            "tcp-reset with -p udp",
            "filter",
            ">-A INPUT -p udp -j REJECT --reject-with tcp-reset",
        ),
        case("--dport without -p", "filter", ">-A INPUT --dport 22 -j ACCEPT"),
        case(
            "-m udp with -p tcp",
            "filter",
            ">-A INPUT -p tcp -m udp --dport 53 -j ACCEPT",
        ),
        case("port 99999", "filter", ">-A INPUT -p tcp --dport 99999 -j ACCEPT"),
        case("range 5:4", "filter", ">-A INPUT -p tcp --sport 5:4 -j ACCEPT"),
        case("--dscp 64", "filter", ">-A INPUT -m dscp --dscp 64 -j ACCEPT"),
        case("-p 300", "filter", ">-A INPUT -p 300 -j ACCEPT"),
        case("/33", "filter", ">-A INPUT -s 10.0.0.0/33 -j ACCEPT"),
        case("address 10.0.0.256", "filter", ">-A INPUT -d 10.0.0.256 -j ACCEPT"),
        case("unknown match", "filter", ">-A INPUT -m nosuchmatch -j ACCEPT"),
        case("unknown target", "filter", ">-A INPUT -j NOSUCHTARGET"),
        case("jump to missing chain", "filter", ">-A INPUT -j missing"),
        case("goto missing chain", "filter", ">-A INPUT -g missing"),
        case("append to undeclared chain", "filter", ">-A NOCHAIN -j ACCEPT"),
        case(
            "loop A -> B -> A",
            "filter",
            ":A - [0:0]\n:B - [0:0]\n>-A INPUT -j A\n>-A A -j B\n>-A B -j A",
        ),
        case("! -s 0.0.0.0/0", "filter", ">-A INPUT ! -s 0.0.0.0/0 -j DROP"),
        case(
            "multiport without -p",
            "filter",
            ">-A INPUT -m multiport --dports 22,80 -j ACCEPT",
        ),
        case(
            "multiport with 16 ports",
            "filter",
            ">-A INPUT -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j ACCEPT",
        ),
        case(
            "multiport open range",
            "filter",
            ">-A INPUT -p tcp -m multiport --dports 1024: -j ACCEPT",
        ),
        case(
            "ambiguous icmp type echo",
            "filter",
            ">-A INPUT -p icmp --icmp-type echo -j ACCEPT",
        ),
        case(
            "icmp type 256",
            "filter",
            ">-A INPUT -p icmp --icmp-type 256 -j ACCEPT",
        ),
        case("log level 8", "filter", ">-A INPUT -j LOG --log-level 8"),
        case(
            "--limit 10001/sec",
            "filter",
            ">-A INPUT -m limit --limit 10001/sec -j ACCEPT",
        ),
        case("--limit 5/week", "filter", ">-A INPUT -m limit --limit 5/week -j ACCEPT"),
        case("two -j", "filter", ">-A INPUT -j ACCEPT -j DROP"),
        case("two -i", "filter", ">-A INPUT -i eth0 -i eth1 -j ACCEPT"),
        case(
            "interface name too long",
            "filter",
            ">-A INPUT -i abcdefghijklmnopq -j ACCEPT",
        ),
        case(
            "MASQUERADE --to-ports without -p",
            "nat",
            ">-A POSTROUTING -j MASQUERADE --to-ports 1000",
        ),
        case(
            "DNAT port without -p",
            "nat",
            ">-A PREROUTING -j DNAT --to-destination 10.0.0.1:80",
        ),
        case(
            "REDIRECT port 70000",
            "nat",
            ">-A PREROUTING -p tcp -j REDIRECT --to-ports 1000-70000",
        ),
        case(
            "unknown TCP flag",
            "filter",
            ">-A INPUT -p tcp --tcp-flags SYN,FOO SYN -j DROP",
        ),
        case(
            "bad ctstate",
            "filter",
            ">-A INPUT -m conntrack --ctstate BOGUS -j ACCEPT",
        ),
        case("state SNAT", "filter", ">-A INPUT -m state --state SNAT -j ACCEPT"),
        case(
            "bad dscp class",
            "filter",
            ">-A INPUT -m dscp --dscp-class XX1 -j ACCEPT",
        ),
        case(
            "mark over 32 bits",
            "filter",
            ">-A INPUT -m mark --mark 0x100000000 -j ACCEPT",
        ),
        case("--sport without value", "filter", ">-A INPUT -p tcp --sport"),
        Case {
            name: "bad policy",
            marked: "*filter\n>:INPUT BOGUS [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n".to_owned(),
            eof_ok: false,
        },
        Case {
            name: "missing COMMIT",
            marked: ">*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n".to_owned(),
            eof_ok: true,
        },
    ]
}

/// Calls xdpgw; `Ok(())` when it rejects the file naming an allowed line.
fn check_xdpgw(case: &Case, file_name: &str, text: &str) -> Result<(), String> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        xdpgw_control::load_rules_str(file_name, text)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    let err = match result {
        Ok(Ok(())) => return Err("xdpgw accepted it".to_owned()),
        Ok(Err(e)) => e,
        Err(_) => return Err("xdpgw panicked".to_owned()),
    };
    let lines = case.blamed_lines();
    if lines.iter().any(|n| err.contains(&format!(":{n}:"))) {
        Ok(())
    } else {
        Err(format!(
            "xdpgw's error names none of lines {lines:?}:\n      {}",
            err.trim().replace('\n', "\n      ")
        ))
    }
}

#[test]
fn xdpgw_rejects_what_iptables_rejects() {
    if !require_root("rejects_like_iptables") {
        return;
    }
    let cases = cases();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let text = case.text();
        assert!(
            !case.blamed_lines().is_empty(),
            "case {:?} marks no line",
            case.name
        );
        let ns = Netns::new("rej");
        let linux = ns.exec_stdin(&["iptables-restore"], &text);
        assert!(
            !linux.status.success(),
            "case {:?}: Linux accepts it, so it does not belong here:\n{text}",
            case.name
        );
        let file_name = format!("reject-{}.rules", i + 1);
        if let Err(why) = check_xdpgw(case, &file_name, &text) {
            let linux_says = String::from_utf8_lossy(&linux.stderr)
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with("Try `"))
                .collect::<Vec<_>>()
                .join(" / ");
            failures.push(format!(
                "case {:?}: {why}\n    Linux: {linux_says}\n    file:\n      {}",
                case.name,
                text.trim_end().replace('\n', "\n      ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn blamed_lines_follow_the_markers() {
    let c = case("x", "raw", ">-A OUTPUT -j DROP");
    // *raw, two chain lines, the valid rule before: the marked rule is line 5.
    assert_eq!(c.blamed_lines(), vec![5]);
    assert!(!c.text().contains('>'));
    assert_eq!(c.text().lines().nth(4), Some("-A OUTPUT -j DROP"));
}
