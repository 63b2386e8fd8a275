//! Which counters a reload keeps.
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
//! Slots are numbered as `classify::compile` numbers them: table by table,
//! chain by chain, each chain's rules and then the chain itself.

use std::collections::{HashMap, VecDeque};

use xdpgw_dataplane::rule::{RuleSet, Table};

use crate::save::rule_spec;

/// One chain's counter slots: its rules' canonical texts with their slots,
/// and the chain's own slot.
struct ChainSlots {
    rules: Vec<(String, usize)>,
    slot: usize,
}

fn layout(set: &RuleSet) -> Vec<((Table, &str), ChainSlots)> {
    let mut slot = 0usize;
    let mut out = Vec::new();
    for t in &set.tables {
        for c in &t.chains {
            let mut rules = Vec::with_capacity(c.rules.len());
            for r in &c.rules {
                let mut spec = String::new();
                rule_spec(&mut spec, r);
                rules.push((spec, slot));
                slot += 1;
            }
            out.push(((t.table, c.name.as_str()), ChainSlots { rules, slot }));
            slot += 1;
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
    use crate::parse::load_str;

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
