//! What a reload replaces, and which counters it keeps.
//!
//! A reload replaces the tables the file names and keeps the others as they
//! run, rules and counters, as `iptables-restore` does: its `*table` block
//! flushes and rebuilds that table, and tables the file does not mention
//! are not touched (`xtables-restore.c` flushes a table on its `*table`
//! line, unless `--noflush`; measured with iptables 1.8.9 in a namespace,
//! counters of the untouched tables included). So a file cut short after the nat table's `COMMIT`, say by an
//! editor still writing it, cannot remove the filter table that follows in
//! the complete file. A script of `iptables` lines rebuilds, from empty,
//! every table one of its commands names ([`RuleFile::tables`]).
//! [`Scope::All`] (`xdpgw reload --replace-all`) replaces every table
//! instead: a table the file does not name becomes empty.
//!
//! A rule keeps its packet and byte counters across a reload when the new
//! rule set has the same rule (the same canonical `iptables-save` text, so
//! `-p tcp --dport 80` and `-p tcp -m tcp --dport 80` are the same rule) in
//! the same table and chain, in the same order relative to the other kept
//! rules: old and new rules of a chain are paired first to first, in order,
//! each new rule with the next unpaired old rule of the same text. So
//! inserting, deleting or changing a rule resets only that rule's counters,
//! as `iptables -I/-D/-R` would; a rule moved before rules it used to follow
//! starts from zero. A chain that exists in both keeps its policy counter
//! (changing the policy keeps it too, as `iptables -P` does).
//!
//! Slots are where [`CounterLayout`] says (as `classify::compile` numbers
//! them: table by table, chain by chain, each chain's rules and then the
//! chain itself).

use std::collections::{HashMap, VecDeque};

use xdpgw_dataplane::rule::{CounterLayout, RuleSet, Table};

use crate::parse::{save_rank, RuleFile};
use crate::save::rule_spec;

/// Which tables a reload replaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// The tables the file names; the others keep running as they are
    /// (`iptables-restore`).
    #[default]
    FileTables,
    /// Every table: those the file does not name become empty
    /// (`xdpgw reload --replace-all`).
    All,
}

/// The rule set a reload makes, and what it did to each table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    pub set: RuleSet,
    /// The tables the file named, now as the file has them.
    pub replaced: Vec<Table>,
    /// Tables of the running set the file did not name, kept as they were.
    pub kept: Vec<Table>,
    /// Tables of the running set the file did not name, now empty
    /// ([`Scope::All`]).
    pub emptied: Vec<Table>,
}

/// What reloading `file` over the running set `current` makes.
pub fn merge(current: &RuleSet, file: RuleFile, scope: Scope) -> Merged {
    let (mut kept, mut emptied) = (Vec::new(), Vec::new());
    let mut set = file.set;
    for t in &current.tables {
        if file.tables.contains(&t.table) {
            continue;
        }
        match scope {
            Scope::FileTables => {
                kept.push(t.table);
                set.tables.push(t.clone());
            }
            Scope::All => emptied.push(t.table),
        }
    }
    set.tables.sort_by_key(|t| save_rank(t.table));
    kept.sort_by_key(|&t| save_rank(t));
    emptied.sort_by_key(|&t| save_rank(t));
    Merged {
        set,
        replaced: file.tables,
        kept,
        emptied,
    }
}

/// One chain's counter slots: its rules' canonical texts with their slots,
/// and the chain's own slot.
struct ChainSlots {
    rules: Vec<(String, usize)>,
    slot: usize,
}

fn layout(set: &RuleSet) -> Vec<((Table, &str), ChainSlots)> {
    let slots = CounterLayout::of(set);
    let mut out = Vec::new();
    for (ti, t) in set.tables.iter().enumerate() {
        for (ci, c) in t.chains.iter().enumerate() {
            let mut rules = Vec::with_capacity(c.rules.len());
            for (ri, r) in c.rules.iter().enumerate() {
                let mut spec = String::new();
                rule_spec(&mut spec, r);
                if let Some(slot) = slots.rule(ti, ci, ri) {
                    rules.push((spec, slot as usize));
                }
            }
            if let Some(slot) = slots.chain(ti, ci) {
                let slot = slot as usize;
                out.push(((t.table, c.name.as_str()), ChainSlots { rules, slot }));
            }
        }
    }
    out
}

/// Pairs of (new slot, old slot) whose counters carry over from `old` to `new`.
pub fn carried(old: &RuleSet, new: &RuleSet) -> Vec<(usize, usize)> {
    let old_layout = layout(old);
    let old_chains: HashMap<(Table, &str), &ChainSlots> =
        old_layout.iter().map(|(k, v)| (*k, v)).collect();
    let mut out = Vec::new();
    for (key, chain) in layout(new) {
        let Some(old_chain) = old_chains.get(&key) else {
            continue;
        };
        out.push((chain.slot, old_chain.slot));
        // Old positions of each rule text, in order.
        let mut positions: HashMap<&str, VecDeque<usize>> = HashMap::new();
        for (i, (spec, _)) in old_chain.rules.iter().enumerate() {
            positions.entry(spec.as_str()).or_default().push_back(i);
        }
        let mut cursor = 0usize;
        for (spec, slot) in &chain.rules {
            let Some(q) = positions.get_mut(spec.as_str()) else {
                continue;
            };
            while q.front().is_some_and(|&i| i < cursor) {
                q.pop_front();
            }
            if let Some(i) = q.pop_front() {
                out.push((*slot, old_chain.rules[i].1));
                cursor = i + 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{load_file_text, load_str};

    /// conf/gateway.rules: raw, mangle, nat and filter.
    fn gateway() -> RuleFile {
        load_file_text(include_str!("../../../conf/gateway.rules")).expect("conf/gateway.rules")
    }

    /// conf/gateway.rules cut just after the nat table's COMMIT: a valid
    /// file of raw, mangle and nat.
    fn cut_after_nat() -> RuleFile {
        let text = include_str!("../../../conf/gateway.rules");
        let nat = text.find("*nat\n").expect("a nat table");
        let end = nat + text[nat..].find("COMMIT\n").expect("its COMMIT") + "COMMIT\n".len();
        load_file_text(&text[..end]).expect("the cut file is valid")
    }

    #[test]
    fn tables_the_file_does_not_name_keep_running() {
        let running = gateway().set;
        let cut = cut_after_nat();
        assert_eq!(cut.tables, [Table::Mangle, Table::Raw, Table::Nat]);
        let m = merge(&running, cut.clone(), Scope::FileTables);
        assert_eq!(m.replaced, [Table::Mangle, Table::Raw, Table::Nat]);
        assert_eq!(m.kept, [Table::Filter]);
        assert!(m.emptied.is_empty());
        // The same rule set, filter and all, in the same order.
        assert_eq!(m.set, running);
        // Every counter slot carries over: the kept filter table's too.
        let slots = layout(&running)
            .iter()
            .map(|(_, c)| c.rules.len() + 1)
            .sum::<usize>();
        let mut got = carried(&running, &m.set);
        got.sort_unstable();
        assert_eq!(got, (0..slots).map(|s| (s, s)).collect::<Vec<_>>());

        // --replace-all: the filter table goes, the firewall with it.
        let m = merge(&running, cut, Scope::All);
        assert_eq!(m.emptied, [Table::Filter]);
        assert!(m.kept.is_empty());
        assert!(m.set.table(Table::Filter).is_none());
        assert_eq!(m.set.tables.len(), 3);
    }

    #[test]
    fn a_named_table_is_replaced_and_the_others_keep_their_slots() {
        let running = gateway().set;
        // A file with only a filter table that drops one more source.
        let filter = load_file_text(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A FORWARD -s 10.0.0.5 -j DROP\nCOMMIT\n",
        )
        .expect("filter");
        let m = merge(&running, filter, Scope::FileTables);
        assert_eq!(m.replaced, [Table::Filter]);
        assert_eq!(m.kept, [Table::Mangle, Table::Raw, Table::Nat]);
        let tables: Vec<Table> = m.set.tables.iter().map(|t| t.table).collect();
        assert_eq!(
            tables,
            [Table::Mangle, Table::Raw, Table::Filter, Table::Nat]
        );
        for t in [Table::Mangle, Table::Raw, Table::Nat] {
            assert_eq!(m.set.table(t), running.table(t), "{}", t.name());
        }
        assert_eq!(m.set.table(Table::Filter).map(|t| t.rule_count()), Some(1));
        // mangle and raw come before filter and keep their slots; nat comes
        // after it and keeps every slot, moved.
        let old = layout(&running);
        let new = layout(&m.set);
        let pairs = carried(&running, &m.set);
        for ((key, chain), table) in new.iter().map(|(k, c)| ((k, c), k.0)) {
            if table == Table::Filter {
                continue;
            }
            let (_, was) = old.iter().find(|(k, _)| k == key).expect("kept chain");
            assert!(pairs.contains(&(chain.slot, was.slot)), "{key:?}");
            for ((_, n), (_, o)) in chain.rules.iter().zip(&was.rules) {
                assert!(pairs.contains(&(*n, *o)), "{key:?}");
            }
        }
    }

    #[test]
    fn a_script_rebuilds_the_tables_it_names() {
        let running = gateway().set;
        // Names nat (rebuilt with one rule) and filter (flushed: -F names
        // it though it creates nothing); raw and mangle stay.
        let script =
            load_file_text("iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE\niptables -F\n")
                .expect("script");
        let m = merge(&running, script, Scope::FileTables);
        assert_eq!(m.replaced, [Table::Filter, Table::Nat]);
        assert_eq!(m.kept, [Table::Mangle, Table::Raw]);
        assert!(m.set.table(Table::Filter).is_none());
        assert_eq!(m.set.table(Table::Nat).map(|t| t.rule_count()), Some(1));
        assert_eq!(m.set.table(Table::Raw), running.table(Table::Raw));
        // A file that names nothing changes nothing.
        let m = merge(
            &running,
            load_file_text("# empty\n").expect("empty"),
            Scope::FileTables,
        );
        assert_eq!(m.set, running);
        assert!(m.replaced.is_empty());
    }

    fn set(rules: &str) -> RuleSet {
        load_str(&format!(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{rules}COMMIT\n"
        ))
        .expect("rules")
    }

    #[test]
    fn unchanged_rules_keep_their_slots_in_order() {
        let old = set("-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp --dport 80 -j ACCEPT\n-A INPUT -p udp --dport 53 -j ACCEPT\n");
        // Slots: INPUT rules 0,1,2, INPUT 3, FORWARD 4, OUTPUT 5.
        let new = set("-A INPUT -p tcp --dport 21 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -p udp --dport 53 -j ACCEPT\n");
        let mut got = carried(&old, &new);
        got.sort_unstable();
        // New: 21 is slot 0 (new), 22 slot 1 (old 0), 53 slot 2 (old 2); chains 3,4,5.
        assert_eq!(got, vec![(1, 0), (2, 2), (3, 3), (4, 4), (5, 5)]);
        // A rule moved in front of one it followed starts again.
        let swapped = set("-A INPUT -p udp --dport 53 -j ACCEPT\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -p tcp --dport 80 -j ACCEPT\n");
        let mut got = carried(&old, &swapped);
        got.sort_unstable();
        assert_eq!(got, vec![(0, 2), (3, 3), (4, 4), (5, 5)]);
        // Duplicates pair in order.
        let dup = set("-A INPUT -j ACCEPT\n-A INPUT -j ACCEPT\n");
        let dup2 = set("-A INPUT -j ACCEPT\n-A INPUT -j DROP\n-A INPUT -j ACCEPT\n");
        let mut got = carried(&dup, &dup2);
        got.sort_unstable();
        assert_eq!(got, vec![(0, 0), (2, 1), (3, 2), (4, 3), (5, 4)]);
    }
}
