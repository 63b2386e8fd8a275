//! Loading rule files: iptables-restore files and scripts of `iptables`
//! command lines, both applied as commands to one rule-set state, then
//! validated as a whole (jumps, loops, where targets may stand).

pub mod ipset;
pub mod lex;
pub mod rule;
pub mod value;

use std::collections::HashMap;

use xdpgw_dataplane::rule::{
    Chain, Counters, Family, HookSet, Policy, RuleSet, Table, TableRules, TargetPlacement,
};

use xdpgw_dataplane::ipset::SetTable;

use crate::error::{RuleError, RuleErrorKind, RuleErrors};
use ipset::{parse_set_command, SetCommand, SetLine};
use lex::Token;
use rule::{check_chain_name, parse_rule_in, ParsedRule, SUPPORTED_TARGETS};

/// The two forms operators bring rules in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// iptables-save / iptables-restore: `*table`, `:CHAIN`, `-A`, `COMMIT`.
    Restore,
    /// One `iptables ...` command line per line.
    Script,
}

/// Tells the form of a rule file from its first line that is not blank or a
/// comment.
pub fn detect_format(text: &str) -> Format {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match first {
        Some(l) if is_iptables_word(l.split_whitespace().next().unwrap_or("")) => Format::Script,
        Some(l) if is_ipset_word(l.split_whitespace().next().unwrap_or("")) => Format::Script,
        Some(l) if l.starts_with("sudo ") => Format::Script,
        _ => Format::Restore,
    }
}

fn is_ipset_word(w: &str) -> bool {
    w.rsplit('/').next().unwrap_or(w) == "ipset"
}

fn is_iptables_word(w: &str) -> bool {
    iptables_family(w).is_some()
}

/// The family of an `iptables`/`ip6tables` command word.
fn iptables_family(w: &str) -> Option<Family> {
    match w.rsplit('/').next().unwrap_or(w) {
        "iptables" | "iptables-nft" | "iptables-legacy" => Some(Family::Ipv4),
        "ip6tables" | "ip6tables-nft" | "ip6tables-legacy" => Some(Family::Ipv6),
        _ => None,
    }
}

/// A rule file as loaded: its rule set, and the tables it names.
///
/// A reload replaces the tables the file names and keeps the others as they
/// run, as `iptables-restore` does (see `crate::api::reload`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFile {
    pub set: RuleSet,
    /// The tables the file names, in [`save_rank`] order: each `*table`
    /// block of a restore file; for a script, every table one of its
    /// commands names (`-t TABLE`, filter without `-t`), whatever the
    /// command. A named table may be absent from `set` (a script whose only
    /// nat command is `iptables -t nat -F`): it is empty.
    pub tables: Vec<Table>,
    /// The script's `ipset` commands, in order: applied to the gateway's
    /// sets before its rules are installed (checked against the sets the
    /// file was loaded with).
    pub set_lines: Vec<SetLine>,
    /// The IPv6 rule set: an ip6tables-save file's (loaded with
    /// [`Family::Ipv6`]), or a script's `ip6tables` lines.
    pub set6: RuleSet,
    /// The IPv6 tables the file names, as `tables` for IPv4.
    pub tables6: Vec<Table>,
}

/// Where a table stands in a rule set: the order in which iptables-save
/// (nf_tables) prints its tables, which is also the order of the counter
/// slots `classify::compile` numbers.
pub fn save_rank(t: Table) -> u8 {
    match t {
        Table::Mangle => 0,
        Table::Raw => 1,
        Table::Filter => 2,
        Table::Nat => 3,
    }
}

/// Parses a rule file's text into a validated rule set, or every error in it.
pub fn load_str(text: &str) -> Result<RuleSet, RuleErrors> {
    load(text, false, &SetTable::default()).map(|f| f.set)
}

/// Parses the whole text of a rule file, as read from the file, and also
/// refuses text that does not end where a complete file ends
/// ([`ending_errors`]): a file cut short while being written is not loaded.
pub fn load_file_text(text: &str) -> Result<RuleFile, RuleErrors> {
    load(text, true, &SetTable::default())
}

/// [`load_file_text`] for a gateway whose sets are `sets`: rules may name
/// them, and the script's `ipset` lines change a copy of them.
pub fn load_file_text_with_sets(text: &str, sets: &SetTable) -> Result<RuleFile, RuleErrors> {
    load(text, true, sets)
}

/// [`load_str`] with sets (see [`load_file_text_with_sets`]).
pub fn load_str_with_sets(text: &str, sets: &SetTable) -> Result<RuleFile, RuleErrors> {
    load(text, false, sets)
}

/// Parses an ip6tables rule file's text (an ip6tables-save file, or a
/// script whose `ip6tables` lines make the IPv6 rule set): the IPv6 rule
/// set is [`RuleFile::set6`].
pub fn load_file_text6(text: &str) -> Result<RuleFile, RuleErrors> {
    load_family(text, true, &SetTable::default(), Family::Ipv6)
}

/// [`load_str`] for IPv6: the IPv6 rule set of the text.
pub fn load_str6(text: &str) -> Result<RuleSet, RuleErrors> {
    load_family(text, false, &SetTable::default(), Family::Ipv6).map(|f| f.set6)
}

/// [`load_file_text_with_sets`] for a file of `family`'s restore form
/// (a script's lines say their family themselves).
pub fn load_file_text_family(
    text: &str,
    sets: &SetTable,
    family: Family,
) -> Result<RuleFile, RuleErrors> {
    load_family(text, true, sets, family)
}

fn load(text: &str, whole_file: bool, sets: &SetTable) -> Result<RuleFile, RuleErrors> {
    load_family(text, whole_file, sets, Family::Ipv4)
}

fn load_family(
    text: &str,
    whole_file: bool,
    sets: &SetTable,
    family: Family,
) -> Result<RuleFile, RuleErrors> {
    let mut st = State {
        whole_file,
        sets: sets.clone(),
        ..State::default()
    };
    st.switch_to(family);
    if whole_file {
        st.errors.extend(ending_errors(text));
    }
    match detect_format(text) {
        Format::Restore => st.restore(text),
        Format::Script => {
            st.script = true;
            st.script(text)
        }
    }
    st.switch_to(Family::Ipv6);
    st.validate();
    st.switch_to(Family::Ipv4);
    st.validate();
    if st.errors.is_empty() {
        let named = |mut tables: Vec<Table>| {
            tables.sort_by_key(|&t| save_rank(t));
            tables.dedup();
            tables
        };
        let tables = named(std::mem::take(&mut st.named));
        let tables6 = named(std::mem::take(&mut st.other.named));
        let set_lines = std::mem::take(&mut st.set_lines);
        let set6 = into_ruleset(std::mem::take(&mut st.other.tables));
        Ok(RuleFile {
            set: into_ruleset(std::mem::take(&mut st.tables)),
            tables,
            set_lines,
            set6,
            tables6,
        })
    } else {
        st.errors.sort_by_key(|e| (e.line, e.column));
        Err(RuleErrors(st.errors))
    }
}

/// The position just after the last character of `text` (1-based line and
/// column).
fn end_of(text: &str) -> (u32, u32) {
    let lines = text.lines().count() as u32;
    match text.lines().last() {
        Some(last) if !text.ends_with('\n') => (lines, last.chars().count() as u32 + 1),
        _ => (lines + 1, 1),
    }
}

/// The signs that a rule file was not completely written that no parse of
/// its lines can see: a last line without its newline (a write cut in the
/// middle of `iptables -A FORWARD -s 10.0.0.5 -j DROP` can leave
/// `iptables -A FORWARD -s 10.0.0.5`, a valid rule that drops nothing), and
/// NUL bytes (what a crash can leave in the blocks of a file that was still
/// being written).
pub fn ending_errors(text: &str) -> Vec<RuleError> {
    let mut errors = Vec::new();
    if let Some((i, line)) = text.lines().enumerate().find(|(_, l)| l.contains('\0')) {
        let col = line.chars().take_while(|&c| c != '\0').count() as u32 + 1;
        errors.push(syntax(
            (i as u32 + 1, col),
            "a NUL byte: this is not a text file, or it was not completely written",
        ));
    }
    if !text.is_empty() && !text.ends_with('\n') {
        errors.push(syntax(
            end_of(text),
            "the last line has no newline at its end: the file may have been cut short while \
             being written (a complete rule file ends with a newline)",
        ));
    }
    errors
}

struct ChainState {
    name: String,
    hook: Option<xdpgw_dataplane::rule::Hook>,
    policy: Option<Policy>,
    counters: Counters,
    rules: Vec<ParsedRule>,
}

struct TableState {
    table: Table,
    chains: Vec<ChainState>,
}

impl TableState {
    fn new(table: Table) -> TableState {
        let empty = TableRules::empty(table);
        TableState {
            table,
            chains: empty
                .chains
                .into_iter()
                .map(|c| ChainState {
                    name: c.name,
                    hook: c.hook,
                    policy: c.policy,
                    counters: c.counters,
                    rules: Vec::new(),
                })
                .collect(),
        }
    }

    fn chain_index(&self, name: &str) -> Option<usize> {
        self.chains.iter().position(|c| c.name == name)
    }

    /// The first rule that passes control to `chain`, with its chain name.
    fn reference_to(&self, chain: &str) -> Option<(&str, &ParsedRule)> {
        self.chains.iter().find_map(|c| {
            c.rules
                .iter()
                .find(|r| r.rule.target.chain() == Some(chain))
                .map(|r| (c.name.as_str(), r))
        })
    }
}

/// A command, as `-A`, `-I` and friends say it.
enum Command {
    Append(String),
    Insert(String, Option<(usize, (u32, u32))>),
    Delete(String, Option<(usize, (u32, u32))>),
    Replace(String, (usize, (u32, u32))),
    NewChain(String),
    DeleteChain(Option<String>),
    Policy(String, Token),
    Flush(Option<String>),
    Zero(Option<String>),
}

/// The tables of the family not being read.
#[derive(Default)]
struct Other {
    tables: Vec<TableState>,
    named: Vec<Table>,
}

#[derive(Default)]
struct State {
    /// The family of the tables being read (`tables`, `named`); the other
    /// family's wait in `other`.
    family: Family,
    other: Other,
    tables: Vec<TableState>,
    errors: Vec<RuleError>,
    /// Reading a script: each command is checked as its own commit.
    script: bool,
    /// The text is a whole file: a script may not end inside a command
    /// continued with `\`.
    whole_file: bool,
    /// The tables the text names ([`RuleFile::tables`]), repeats included.
    named: Vec<Table>,
    /// The sets as of the line being read (`-m set` must name one).
    sets: SetTable,
    /// The `ipset` lines read ([`RuleFile::set_lines`]).
    set_lines: Vec<SetLine>,
}

/// The same error, blamed on another place.
fn relocate(e: &RuleError, pos: (u32, u32)) -> RuleError {
    RuleError::at(pos.0, pos.1, e.kind.clone())
}

fn at(t: &Token) -> (u32, u32) {
    (t.line, t.col)
}

fn semantic(pos: (u32, u32), msg: impl Into<String>) -> RuleError {
    RuleError::at(pos.0, pos.1, RuleErrorKind::Semantic(msg.into()))
}

fn syntax(pos: (u32, u32), msg: impl Into<String>) -> RuleError {
    RuleError::at(pos.0, pos.1, RuleErrorKind::Syntax(msg.into()))
}

impl State {
    /// Makes `family`'s tables the ones commands apply to.
    fn switch_to(&mut self, family: Family) {
        if self.family != family {
            std::mem::swap(&mut self.tables, &mut self.other.tables);
            std::mem::swap(&mut self.named, &mut self.other.named);
            self.family = family;
        }
    }

    fn table_mut(&mut self, table: Table) -> &mut TableState {
        let i = match self.tables.iter().position(|t| t.table == table) {
            Some(i) => i,
            None => {
                self.tables.push(TableState::new(table));
                self.tables.len() - 1
            }
        };
        &mut self.tables[i]
    }

    fn restore(&mut self, text: &str) {
        let mut current: Option<(Table, (u32, u32))> = None;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i as u32 + 1;
            // In characters, as columns count (`trim` below takes Unicode
            // blanks, a no-break space copied from a web page say).
            let indent = raw.chars().take_while(|c| c.is_whitespace()).count() as u32;
            let line = raw.trim();
            let pos = (line_no, indent + 1);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                if let Some((t, _)) = current {
                    self.errors.push(syntax(
                        pos,
                        format!(
                            "table '{}' is not closed by COMMIT before this line",
                            t.name()
                        ),
                    ));
                }
                match Table::from_name(name.trim()) {
                    Some(t) => {
                        // iptables-restore replaces the whole table.
                        *self.table_mut(t) = TableState::new(t);
                        self.named.push(t);
                        current = Some((t, pos));
                    }
                    None => {
                        self.errors.push(syntax(
                            (line_no, indent + 2),
                            format!("unknown table '{name}'; supported: raw, mangle, nat, filter"),
                        ));
                        current = None;
                    }
                }
                continue;
            }
            if line == "COMMIT" {
                if current.take().is_none() {
                    self.errors.push(syntax(
                        pos,
                        "COMMIT without a table ('*filter' and so on) to commit",
                    ));
                }
                continue;
            }
            let toks = match lex::restore_words(raw, line_no) {
                Ok(t) => lex::split_long_options(t),
                Err(e) => {
                    self.errors.push(e);
                    continue;
                }
            };
            let Some((table, _)) = current else {
                self.errors.push(syntax(
                    pos,
                    "expected a table line such as '*filter' before this line",
                ));
                continue;
            };
            if line.starts_with(':') {
                self.chain_line(table, &toks);
            } else {
                self.restore_command(table, &toks);
            }
        }
        if let Some((t, opened)) = current {
            // iptables-restore: "COMMIT expected at line N", N the line
            // after the last one (also after a last line without newline).
            self.errors.push(syntax(
                (text.lines().count() as u32 + 1, 1),
                format!(
                    "COMMIT expected: the file ends inside table '{}' (line {}), which is not \
                     closed by COMMIT; was the file cut short while being written?",
                    t.name(),
                    opened.0
                ),
            ));
        }
    }

    /// `:CHAIN POLICY [packets:bytes]`
    fn chain_line(&mut self, table: Table, toks: &[Token]) {
        let first = &toks[0];
        let name = first.text.trim_start_matches(':').to_string();
        let name_at = (first.line, first.col + 1);
        let Some(policy) = toks.get(1) else {
            self.errors.push(syntax(
                name_at,
                "a chain line needs a policy: ':CHAIN ACCEPT|DROP [0:0]' or ':USERCHAIN - [0:0]'",
            ));
            return;
        };
        let counters = match toks.get(2) {
            None => Counters::default(),
            Some(c) => match parse_counters(&c.text) {
                Some(c) => c,
                None => {
                    self.errors
                        .push(syntax(at(c), "counters must look like [packets:bytes]"));
                    return;
                }
            },
        };
        if let Some(extra) = toks.get(3) {
            self.errors.push(syntax(
                at(extra),
                format!("unexpected '{}' after the counters", extra.text),
            ));
            return;
        }
        let ts = self.table_mut(table);
        match ts.chain_index(&name) {
            Some(i) if ts.chains[i].hook.is_some() => {
                match policy.text.as_str() {
                    "ACCEPT" => ts.chains[i].policy = Some(Policy::Accept),
                    "DROP" => ts.chains[i].policy = Some(Policy::Drop),
                    _ => {
                        self.errors.push(syntax(
                            at(policy),
                            format!(
                                "bad policy '{}' for built-in chain {name}: ACCEPT or DROP",
                                policy.text
                            ),
                        ));
                        return;
                    }
                }
                ts.chains[i].counters = counters;
            }
            Some(_) => self.errors.push(semantic(
                name_at,
                format!("chain '{name}' is declared twice"),
            )),
            None => {
                if table.hooks().iter().all(|h| h.name() != name)
                    && xdpgw_dataplane::rule::Hook::from_name(&name).is_some()
                {
                    self.errors.push(semantic(
                        name_at,
                        format!("table {} has no built-in chain {name}", table.name()),
                    ));
                    return;
                }
                if policy.text != "-" {
                    self.errors.push(syntax(
                        at(policy),
                        format!(
                            "a user chain has no policy: write ':{name} - [0:0]' (or is '{name}' a misspelt built-in chain?)"
                        ),
                    ));
                    return;
                }
                if let Err(e) = self.new_chain(table, &name, name_at) {
                    self.errors.push(e);
                }
            }
        }
    }

    fn restore_command(&mut self, table: Table, toks: &[Token]) {
        let (counters, toks) = match toks.first() {
            Some(t) if t.text.starts_with('[') => match parse_counters(&t.text) {
                Some(c) => (Some(c), &toks[1..]),
                None => {
                    self.errors
                        .push(syntax(at(t), "counters must look like [packets:bytes]"));
                    return;
                }
            },
            _ => (None, toks),
        };
        match parse_command(toks) {
            // iptables-restore skips a rule marked for the other family
            // (`-6` in an iptables-restore file, `-4` in an
            // ip6tables-restore one: `do_parse`'s `p->restore` case).
            Ok((_, _, spec)) if self.other_family_rule(spec) => {}
            Ok((cmd, cmd_at, spec)) => self.apply(table, cmd, cmd_at, spec, counters),
            Err(e) => self.errors.push(e),
        }
    }

    /// Whether a rule's options mark it for the other family (`-6` or
    /// `-4`, not as the value of an option before it).
    fn other_family_rule(&self, spec: &[Token]) -> bool {
        let other: [&str; 2] = match self.family {
            Family::Ipv4 => ["-6", "--ipv6"],
            Family::Ipv6 => ["-4", "--ipv4"],
        };
        spec.iter().enumerate().any(|(i, t)| {
            other.contains(&t.text.as_str())
                && (i == 0
                    || !matches!(
                        spec[i - 1].text.as_str(),
                        "--comment" | "--log-prefix" | "--match-set"
                    ))
        })
    }

    fn script(&mut self, text: &str) {
        let mut words: Vec<Token> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i as u32 + 1;
            match lex::shell_words(raw, line_no) {
                Ok(l) => {
                    words.extend(l.words);
                    if l.continued {
                        continue;
                    }
                }
                Err(e) => {
                    self.errors.push(e);
                    words.clear();
                    continue;
                }
            }
            let line = lex::split_long_options(std::mem::take(&mut words));
            if !line.is_empty() {
                self.script_command(&line);
            }
        }
        if let Some(first) = words.first() {
            if self.whole_file {
                self.errors.push(syntax(
                    at(first),
                    "the file ends inside this command: its last line is continued with '\\' \
                     but nothing follows; was the file cut short while being written?",
                ));
            } else {
                self.script_command(&words);
            }
        }
    }

    fn script_command(&mut self, line: &[Token]) {
        let line = match line.first() {
            Some(t) if t.is("sudo") => &line[1..],
            _ => line,
        };
        let Some(first) = line.first() else {
            return;
        };
        if is_ipset_word(&first.text) {
            if let Err(e) = self.set_command(&line[1..], first) {
                self.errors.push(e);
            }
            return;
        }
        let Some(family) = iptables_family(&first.text) else {
            self.errors.push(syntax(
                at(first),
                format!(
                    "expected an 'iptables ...', 'ip6tables ...' or 'ipset ...' command line, found '{}'",
                    first.text
                ),
            ));
            return;
        };
        self.switch_to(family);
        let mut table = Table::Filter;
        let mut rest: Vec<Token> = Vec::new();
        let mut i = 1;
        while i < line.len() {
            let t = &line[i];
            let prev_takes_text =
                i > 1 && matches!(line[i - 1].text.as_str(), "--comment" | "--log-prefix");
            if (t.is("-t") || t.is("--table")) && !prev_takes_text {
                let Some(v) = line.get(i + 1) else {
                    self.errors.push(RuleError::at(
                        t.line,
                        t.col,
                        RuleErrorKind::MissingValue {
                            option: t.text.clone(),
                        },
                    ));
                    return;
                };
                match Table::from_name(&v.text) {
                    Some(tb) => table = tb,
                    None => {
                        self.errors.push(RuleError::at(
                            v.line,
                            v.col,
                            RuleErrorKind::BadValue {
                                option: "-t".into(),
                                value: v.text.clone(),
                                expected: "raw, mangle, nat or filter".into(),
                            },
                        ));
                        return;
                    }
                }
                i += 2;
                continue;
            }
            if matches!(t.text.as_str(), "-w" | "--wait" | "-W" | "--wait-interval") {
                i += 1;
                if line.get(i).is_some_and(|v| v.text.parse::<f64>().is_ok()) {
                    i += 1;
                }
                continue;
            }
            rest.push(t.clone());
            i += 1;
        }
        if rest.is_empty() {
            self.errors.push(syntax(
                at(first),
                "an iptables command needs a command such as -A CHAIN",
            ));
            return;
        }
        self.named.push(table);
        match parse_command(&rest) {
            Ok((cmd, cmd_at, spec)) => self.apply(table, cmd, cmd_at, spec, None),
            Err(e) => self.errors.push(e),
        }
    }

    /// An `ipset` line of a script: applied to the file's copy of the sets
    /// at once, as the script would run it, so that later rules may name
    /// the sets it creates.
    fn set_command(&mut self, words: &[Token], first: &Token) -> Result<(), RuleError> {
        let l = parse_set_command(words, &self.sets)?;
        if matches!(
            l.cmd,
            SetCommand::List(_) | SetCommand::Save(_) | SetCommand::Test { .. }
        ) {
            return Err(syntax(
                at(first),
                "ipset list, save and test change nothing: they have no place in a rule file",
            ));
        }
        let names = self.set_names_in_rules();
        let sets = &self.sets;
        let in_use = |slot: u16| {
            sets.name_of(slot)
                .is_some_and(|n| names.iter().any(|x| x == n))
        };
        let mut next = self.sets.clone();
        crate::ipset::apply(&mut next, &l, 0, &in_use, &|_| 0)
            .map_err(|e| semantic(l.at, e.to_string()))?;
        self.sets = next;
        self.set_lines.push(l);
        Ok(())
    }

    /// The sets the rules read so far name.
    fn set_names_in_rules(&self) -> Vec<String> {
        self.tables
            .iter()
            .flat_map(|t| t.chains.iter())
            .flat_map(|c| c.rules.iter())
            .flat_map(|r| r.set_names.iter().map(|(n, _)| n.clone()))
            .collect()
    }

    fn new_chain(&mut self, table: Table, name: &str, pos: (u32, u32)) -> Result<(), RuleError> {
        let tok = Token {
            text: name.to_string(),
            line: pos.0,
            col: pos.1,
        };
        check_chain_name(&tok, name)?;
        if SUPPORTED_TARGETS.contains(&name)
            || xdpgw_dataplane::rule::Hook::from_name(name).is_some()
        {
            return Err(semantic(
                pos,
                format!("'{name}' cannot name a user chain: it is a target or built-in chain name"),
            ));
        }
        let ts = self.table_mut(table);
        if ts.chain_index(name).is_some() {
            return Err(semantic(pos, format!("chain '{name}' already exists")));
        }
        ts.chains.push(ChainState {
            name: name.to_string(),
            hook: None,
            policy: None,
            counters: Counters::default(),
            rules: Vec::new(),
        });
        Ok(())
    }

    fn apply(
        &mut self,
        table: Table,
        cmd: Command,
        cmd_at: (u32, u32),
        spec: &[Token],
        counters: Option<Counters>,
    ) {
        if let Err(e) = self.try_apply(table, cmd, cmd_at, spec, counters) {
            self.errors.push(e);
        }
    }

    fn chain_of(&mut self, table: Table, name: &str, pos: (u32, u32)) -> Result<usize, RuleError> {
        self.table_mut(table)
            .chain_index(name)
            .ok_or_else(|| semantic(pos, format!("no chain '{name}' in table {}", table.name())))
    }

    fn parse_spec(
        &mut self,
        table: Table,
        chain: &str,
        cmd_at: (u32, u32),
        spec: &[Token],
        counters: Option<Counters>,
    ) -> Result<ParsedRule, RuleError> {
        let mut p = parse_rule_in(self.family, spec, cmd_at, table, chain)?;
        // xt_set's checkentry: the set must exist when the rule is loaded.
        if let Some((name, pos)) = p
            .set_names
            .iter()
            .find(|(n, _)| self.sets.slot(n).is_none())
        {
            return Err(semantic(*pos, format!("Set {name} doesn't exist.")));
        }
        if let Some(c) = counters {
            p.rule.counters = c;
        }
        if let Some(target) = p.rule.target.chain() {
            let ts = self.table_mut(table);
            match ts.chain_index(target) {
                None => {
                    return Err(semantic(
                        p.target_at,
                        format!(
                            "no chain or target named '{target}' in table {}{}",
                            table.name(),
                            did_you_mean(target)
                        ),
                    ))
                }
                Some(i) if ts.chains[i].hook.is_some() => {
                    return Err(semantic(
                        p.target_at,
                        format!("cannot jump to the built-in chain {target}"),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(p)
    }

    /// In a script every command is its own commit, checked as the kernel
    /// checks it: when the rule just added makes the table invalid (a loop
    /// now reachable, a target now reached from a hook it may not stand in),
    /// the command is undone and blamed. Restore files are checked once, as
    /// a whole, at the end.
    fn check_now(
        &mut self,
        table: Table,
        (ci, ri): (usize, usize),
        at_: (u32, u32),
        undo: impl FnOnce(&mut TableState),
    ) -> Result<(), RuleError> {
        if !self.script {
            return Ok(());
        }
        let ts = self.table_mut(table);
        let error = if ts.chains.iter().any(|c| c.hook.is_none()) {
            validate_table(ts).into_iter().next()
        } else {
            // Built-in chains only: just the new rule's own placement can be wrong.
            let c = &ts.chains[ci];
            let hooks = c.hook.map_or(HookSet(0), |h| HookSet::of(&[h]));
            c.rules.get(ri).and_then(|r| placement_error(c, r, hooks))
        };
        match error {
            None => Ok(()),
            Some(e) => {
                undo(ts);
                Err(relocate(&e, at_))
            }
        }
    }

    fn try_apply(
        &mut self,
        table: Table,
        cmd: Command,
        cmd_at: (u32, u32),
        spec: &[Token],
        counters: Option<Counters>,
    ) -> Result<(), RuleError> {
        let needs_no_spec = |spec: &[Token]| match spec.first() {
            Some(t) => Err(syntax(
                at(t),
                format!("unexpected '{}': this command takes no rule", t.text),
            )),
            None => Ok(()),
        };
        match cmd {
            Command::Append(chain) => {
                let ci = self.chain_of(table, &chain, cmd_at)?;
                let p = self.parse_spec(table, &chain, cmd_at, spec, counters)?;
                let at_ = p.target_at;
                let rules = &mut self.table_mut(table).chains[ci].rules;
                let before = rules.len();
                rules.extend(p.expand());
                let n = rules.len();
                // The rules of one command differ only in their addresses:
                // checking the last checks them all.
                self.check_now(table, (ci, n - 1), at_, |ts| {
                    ts.chains[ci].rules.truncate(before);
                })?;
            }
            Command::Insert(chain, num) => {
                let ci = self.chain_of(table, &chain, cmd_at)?;
                let p = self.parse_spec(table, &chain, cmd_at, spec, counters)?;
                let rules = &mut self.table_mut(table).chains[ci].rules;
                let (n, pos) = num.unwrap_or((1, cmd_at));
                if n == 0 || n > rules.len() + 1 {
                    return Err(semantic(
                        pos,
                        format!(
                            "index of insertion too big: chain {chain} has {} rules",
                            rules.len()
                        ),
                    ));
                }
                let at_ = p.target_at;
                // Each rule of an address list goes in at the same place,
                // so they stand in reverse order, as with iptables.
                let k = p.count();
                for r in p.expand() {
                    rules.insert(n - 1, r);
                }
                self.check_now(table, (ci, n - 1), at_, |ts| {
                    ts.chains[ci].rules.drain(n - 1..n - 1 + k);
                })?;
            }
            Command::Replace(chain, (n, pos)) => {
                let ci = self.chain_of(table, &chain, cmd_at)?;
                let p = self.parse_spec(table, &chain, cmd_at, spec, counters)?;
                if p.count() > 1 {
                    return Err(semantic(
                        cmd_at,
                        "a replacement rule names one source and one destination, not lists",
                    ));
                }
                let rules = &mut self.table_mut(table).chains[ci].rules;
                if n == 0 || n > rules.len() {
                    return Err(semantic(
                        pos,
                        format!(
                            "index of replacement too big: chain {chain} has {} rules",
                            rules.len()
                        ),
                    ));
                }
                let at_ = p.target_at;
                let old = std::mem::replace(&mut rules[n - 1], p);
                self.check_now(table, (ci, n - 1), at_, move |ts| {
                    ts.chains[ci].rules[n - 1] = old;
                })?;
            }
            Command::Delete(chain, num) => {
                let ci = self.chain_of(table, &chain, cmd_at)?;
                match num {
                    Some((n, pos)) => {
                        needs_no_spec(spec)?;
                        let len = self.table_mut(table).chains[ci].rules.len();
                        if n == 0 || n > len {
                            return Err(semantic(
                                pos,
                                format!("no rule {n} in chain {chain}: it has {len} rules"),
                            ));
                        }
                        self.table_mut(table).chains[ci].rules.remove(n - 1);
                    }
                    None => {
                        // Every rule of an address list, or none (iptables-nft
                        // deletes them in one transaction).
                        let p = self.parse_spec(table, &chain, cmd_at, spec, None)?;
                        let mut rules = self.table_mut(table).chains[ci].rules.clone();
                        for want in p.expand() {
                            let idx = rules
                                .iter()
                                .position(|r| r.rule.same_spec(&want.rule))
                                .ok_or_else(|| {
                                    semantic(
                                        cmd_at,
                                        format!("no rule in chain {chain} matches this rule, so none can be deleted"),
                                    )
                                })?;
                            rules.remove(idx);
                        }
                        self.table_mut(table).chains[ci].rules = rules;
                    }
                }
            }
            Command::NewChain(name) => {
                needs_no_spec(spec)?;
                self.new_chain(table, &name, cmd_at)?;
            }
            Command::DeleteChain(name) => {
                needs_no_spec(spec)?;
                if name.is_none() && !self.tables.iter().any(|t| t.table == table) {
                    // Deleting all user chains of a table that does not exist creates nothing.
                    return Ok(());
                }
                let ts = self.table_mut(table);
                let names: Vec<String> = match name {
                    Some(n) => {
                        let Some(i) = ts.chain_index(&n) else {
                            return Err(semantic(
                                cmd_at,
                                format!("no chain '{n}' in table {}", table.name()),
                            ));
                        };
                        if ts.chains[i].hook.is_some() {
                            return Err(semantic(
                                cmd_at,
                                format!("the built-in chain {n} cannot be deleted"),
                            ));
                        }
                        vec![n]
                    }
                    None => ts
                        .chains
                        .iter()
                        .filter(|c| c.hook.is_none())
                        .map(|c| c.name.clone())
                        .collect(),
                };
                for n in &names {
                    if let Some((from, r)) = ts.reference_to(n) {
                        if !(names.contains(&from.to_string())) {
                            return Err(semantic(
                                cmd_at,
                                format!(
                                    "chain '{n}' is still referenced (by a rule in {from} from line {})",
                                    r.target_at.0
                                ),
                            ));
                        }
                    }
                    if let Some(c) = ts.chains.iter().find(|c| &c.name == n) {
                        if !c.rules.is_empty() {
                            return Err(semantic(
                                cmd_at,
                                format!("chain '{n}' is not empty: flush it (-F {n}) first"),
                            ));
                        }
                    }
                }
                ts.chains.retain(|c| !names.contains(&c.name));
            }
            Command::Policy(chain, target) => {
                needs_no_spec(spec)?;
                let ci = self.chain_of(table, &chain, cmd_at)?;
                let c = &mut self.table_mut(table).chains[ci];
                if c.hook.is_none() {
                    return Err(semantic(
                        cmd_at,
                        format!("only built-in chains have a policy; {chain} is a user chain"),
                    ));
                }
                c.policy = Some(match target.text.as_str() {
                    "ACCEPT" => Policy::Accept,
                    "DROP" if table == Table::Nat => {
                        return Err(semantic(
                            at(&target),
                            "the nat table is not intended for filtering: iptables refuses a DROP policy there",
                        ))
                    }
                    "DROP" => Policy::Drop,
                    _ => {
                        return Err(RuleError::at(
                            target.line,
                            target.col,
                            RuleErrorKind::BadValue {
                                option: "-P".into(),
                                value: target.text.clone(),
                                expected: "ACCEPT or DROP".into(),
                            },
                        ))
                    }
                });
            }
            Command::Flush(chain) => {
                needs_no_spec(spec)?;
                match chain {
                    Some(c) => {
                        let ci = self.chain_of(table, &c, cmd_at)?;
                        self.table_mut(table).chains[ci].rules.clear();
                    }
                    // Flushing a whole table that does not exist creates nothing.
                    None => {
                        for t in self.tables.iter_mut().filter(|t| t.table == table) {
                            for c in &mut t.chains {
                                c.rules.clear();
                            }
                        }
                    }
                }
            }
            Command::Zero(chain) => {
                needs_no_spec(spec)?;
                if let Some(c) = chain {
                    // Zeroing names a chain that must exist already (it creates nothing).
                    let exists = self
                        .tables
                        .iter()
                        .any(|t| t.table == table && t.chain_index(&c).is_some());
                    if !exists {
                        return Err(semantic(
                            cmd_at,
                            format!("no chain '{c}' in table {}", table.name()),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The checks that need whole tables: no loop reachable from a built-in
    /// chain, and every target only where netfilter allows it.
    fn validate(&mut self) {
        for ts in &self.tables {
            self.errors.extend(validate_table(ts));
        }
    }
}

/// The tables read, as a rule set.
fn into_ruleset(mut tables: Vec<TableState>) -> RuleSet {
    tables.sort_by_key(|t| save_rank(t.table));
    {
        RuleSet {
            tables: tables
                .into_iter()
                .map(|ts| {
                    let mut chains: Vec<Chain> = ts
                        .chains
                        .into_iter()
                        .map(|c| Chain {
                            name: c.name,
                            hook: c.hook,
                            policy: c.policy,
                            counters: c.counters,
                            rules: c.rules.into_iter().map(|p| p.rule).collect(),
                        })
                        .collect();
                    // Built-ins keep hook order; user chains sort by name, as iptables-save prints them.
                    chains.sort_by(|a, b| match (a.hook, b.hook) {
                        (Some(x), Some(y)) => x.cmp(&y),
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (None, None) => a.name.as_bytes().cmp(b.name.as_bytes()),
                    });
                    TableRules {
                        table: ts.table,
                        chains,
                    }
                })
                .collect(),
        }
    }
}

/// The whole-table checks of one table.
fn validate_table(ts: &TableState) -> Vec<RuleError> {
    let mut errors = Vec::new();
    let index: HashMap<&str, usize> = ts
        .chains
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    // Hooks that reach each chain, and loops, by walking from the built-ins.
    // Chains no built-in reaches may loop among themselves, as the kernel
    // allows: the loop is refused only once something jumps in.
    let mut hooks = vec![HookSet(0); ts.chains.len()];
    let mut looped = vec![false; ts.chains.len()];
    for (i, c) in ts.chains.iter().enumerate() {
        if let Some(h) = c.hook {
            let mut path = vec![i];
            let from = HookSet::of(&[h]);
            walk(
                ts,
                &index,
                i,
                from,
                &mut hooks,
                &mut path,
                &mut looped,
                &mut errors,
            );
        }
    }
    for (i, c) in ts.chains.iter().enumerate() {
        errors.extend(
            c.rules
                .iter()
                .filter_map(|r| placement_error(c, r, hooks[i])),
        );
    }
    errors
}

/// The error for a rule whose target may not stand in chain `c`, reached
/// from `hooks`.
fn placement_error(c: &ChainState, r: &ParsedRule, hooks: HookSet) -> Option<RuleError> {
    let Err(TargetPlacement::Hooks(want)) = r.rule.target.allowed(r.table, hooks) else {
        return None;
    };
    let want: Vec<_> = want.iter().map(|h| h.name()).collect();
    let have: Vec<_> = hooks.iter().map(|h| h.name()).collect();
    let msg = if c.hook.is_some() {
        format!(
            "-j {} is only valid in {} (or user chains reached only from there), not in {}",
            r.rule.target.name(),
            want.join("/"),
            c.name
        )
    } else {
        format!(
            "-j {} is only valid in chains reached only from {}; chain {} is reached from {}",
            r.rule.target.name(),
            want.join("/"),
            c.name,
            have.join(", ")
        )
    };
    Some(semantic(r.target_at, msg))
}

/// Depth-first walk from chain `i`, adding `from` to the hooks of every
/// chain reached and reporting a loop where a jump comes back to a chain on
/// the current path.
#[allow(clippy::too_many_arguments)]
fn walk(
    ts: &TableState,
    index: &HashMap<&str, usize>,
    i: usize,
    from: HookSet,
    hooks: &mut [HookSet],
    path: &mut Vec<usize>,
    looped: &mut [bool],
    errors: &mut Vec<RuleError>,
) {
    hooks[i] = HookSet(hooks[i].0 | from.0);
    for r in &ts.chains[i].rules {
        let Some(target) = r.rule.target.chain() else {
            continue;
        };
        let Some(&j) = index.get(target) else {
            errors.push(semantic(
                r.target_at,
                format!("no chain '{target}' in table {}", ts.table.name()),
            ));
            continue;
        };
        if let Some(k) = path.iter().position(|&p| p == j) {
            if !looped[j] {
                looped[j] = true;
                let mut names: Vec<&str> = path[k..]
                    .iter()
                    .map(|&p| ts.chains[p].name.as_str())
                    .collect();
                names.push(target);
                errors.push(semantic(
                    r.target_at,
                    format!("this jump makes a loop: {}", names.join(" -> ")),
                ));
            }
            continue;
        }
        if from.is_subset_of(hooks[j]) {
            // Already walked from these hooks.
            continue;
        }
        path.push(j);
        walk(ts, index, j, from, hooks, path, looped, errors);
        path.pop();
    }
}

fn did_you_mean(name: &str) -> String {
    SUPPORTED_TARGETS
        .iter()
        .find(|t| t.eq_ignore_ascii_case(name))
        .map(|t| format!(" (did you mean the target {t}?)"))
        .unwrap_or_default()
}

fn parse_counters(s: &str) -> Option<Counters> {
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    let (p, b) = inner.split_once(':')?;
    Some(Counters {
        packets: p.parse().ok()?,
        bytes: b.parse().ok()?,
    })
}

/// Splits a command line (without `iptables` and `-t`) into the command, its
/// position, and the rule specification that follows it.
/// A command, where it stands, and the rule specification after it.
type CommandLine<'a> = (Command, (u32, u32), &'a [Token]);

fn parse_command(toks: &[Token]) -> Result<CommandLine<'_>, RuleError> {
    let Some(c) = toks.first() else {
        return Err(syntax((1, 1), "empty command"));
    };
    let pos = at(c);
    let arg = |i: usize, what: &str| -> Result<&Token, RuleError> {
        toks.get(i)
            .filter(|t| !t.text.starts_with('-') || t.text == "-")
            .ok_or_else(|| syntax(pos, format!("{} needs {what}", c.text)))
    };
    let optional = |i: usize| {
        toks.get(i)
            .filter(|t| !t.text.starts_with('-') && !t.is("!"))
    };
    let number = |t: &Token| -> Result<(usize, (u32, u32)), RuleError> {
        t.text
            .parse::<usize>()
            .map(|n| (n, at(t)))
            .map_err(|_| syntax(at(t), format!("expected a rule number, found '{}'", t.text)))
    };
    let is_num = |t: &&Token| t.text.bytes().all(|b| b.is_ascii_digit()) && !t.text.is_empty();
    let (cmd, used) = match c.text.as_str() {
        "-A" | "--append" => (Command::Append(arg(1, "a chain")?.text.clone()), 2),
        "-I" | "--insert" => {
            let chain = arg(1, "a chain")?.text.clone();
            match toks.get(2).filter(is_num) {
                Some(n) => (Command::Insert(chain, Some(number(n)?)), 3),
                None => (Command::Insert(chain, None), 2),
            }
        }
        "-D" | "--delete" => {
            let chain = arg(1, "a chain")?.text.clone();
            match toks.get(2).filter(is_num) {
                Some(n) => (Command::Delete(chain, Some(number(n)?)), 3),
                None => (Command::Delete(chain, None), 2),
            }
        }
        "-R" | "--replace" => {
            let chain = arg(1, "a chain")?.text.clone();
            let n = number(arg(2, "a chain and a rule number")?)?;
            (Command::Replace(chain, n), 3)
        }
        "-N" | "--new-chain" | "--new" => {
            (Command::NewChain(arg(1, "a chain name")?.text.clone()), 2)
        }
        "-X" | "--delete-chain" => match optional(1) {
            Some(n) => (Command::DeleteChain(Some(n.text.clone())), 2),
            None => (Command::DeleteChain(None), 1),
        },
        "-P" | "--policy" => {
            let chain = arg(1, "a chain and a policy")?.text.clone();
            let target = arg(2, "a chain and a policy")?.clone();
            (Command::Policy(chain, target), 3)
        }
        "-F" | "--flush" => match optional(1) {
            Some(n) => (Command::Flush(Some(n.text.clone())), 2),
            None => (Command::Flush(None), 1),
        },
        "-Z" | "--zero" => match optional(1) {
            Some(n) => (Command::Zero(Some(n.text.clone())), 2),
            None => (Command::Zero(None), 1),
        },
        "-L" | "--list" | "-S" | "--list-rules" | "-C" | "--check" => {
            return Err(syntax(
                pos,
                format!(
                    "{} does not change rules: use 'xdpgw list' or 'xdpgw save' to see them",
                    c.text
                ),
            ))
        }
        "-E" | "--rename-chain" => {
            return Err(syntax(pos, "-E (rename chain) is not supported yet"))
        }
        _ => {
            return Err(syntax(
                pos,
                format!(
                    "expected a command (-A, -I, -D, -R, -N, -X, -P, -F, -Z), found '{}'",
                    c.text
                ),
            ))
        }
    };
    Ok((cmd, pos, &toks[used.min(toks.len())..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_sends_each_command_to_its_family() {
        let text = "iptables -A FORWARD -s 10.0.0.0/8 -j DROP\n\
                    ip6tables -A FORWARD -s fd00::/8 -j DROP\n\
                    /usr/sbin/ip6tables -t nat -A POSTROUTING -o wan0 -j MASQUERADE\n\
                    iptables -t mangle -A FORWARD -j DSCP --set-dscp 1\n";
        let f = load_file_text(text).expect("loads");
        assert_eq!(f.tables, [Table::Mangle, Table::Filter]);
        assert_eq!(f.tables6, [Table::Filter, Table::Nat]);
        let fwd4 = f.set.table(Table::Filter).and_then(|t| t.chain("FORWARD"));
        let fwd6 = f.set6.table(Table::Filter).and_then(|t| t.chain("FORWARD"));
        assert!(fwd4.is_some_and(|c| c.rules.len() == 1 && c.rules[0].src.is_some()));
        assert!(fwd6.is_some_and(|c| c.rules.len() == 1 && c.rules[0].src6.is_some()));
        assert!(f.set.table(Table::Nat).is_none());
    }

    #[test]
    fn a_restore_file_skips_the_other_familys_rules() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -6 -j DROP\n\
                    -A INPUT -m comment --comment -6 -j ACCEPT\nCOMMIT\n";
        let set = load_str(text).expect("loads");
        let input = set.table(Table::Filter).and_then(|t| t.chain("INPUT"));
        assert_eq!(input.map(|c| c.rules.len()), Some(1));
        let text6 = text.replace("-6", "-4");
        let set6 = load_str6(&text6).expect("loads");
        let input = set6.table(Table::Filter).and_then(|t| t.chain("INPUT"));
        assert_eq!(input.map(|c| c.rules.len()), Some(1));
        // In a script, it is an error (the command fails).
        assert!(load_str("iptables -A INPUT -6 -j DROP\n").is_err());
    }

    #[test]
    fn ipv6_errors_name_their_place() {
        let cases = [
            ("ip6tables -A INPUT -s 10.0.0.1 -j DROP\n", "1:23: "),
            ("iptables -A INPUT -s 2001:db8::1 -j DROP\n", "1:22: "),
            (
                "ip6tables -A INPUT -p icmp --icmp-type 8 -j DROP\n",
                "1:28: ",
            ),
            (
                "ip6tables -A INPUT -j REJECT --reject-with icmp-host-unreachable\n",
                "1:44: ",
            ),
            ("ip6tables -A INPUT -f -j DROP\n", "1:20: "),
            (
                "ip6tables -A INPUT -m set --match-set x src -j DROP\n",
                "1:23: ",
            ),
            ("ip6tables -A INPUT -4 -j DROP\n", "1:20: "),
        ];
        for (text, at) in cases {
            let e = load_file_text(text).expect_err(text).in_file("f");
            assert!(e.to_string().starts_with(&format!("f:{at}")), "{text}: {e}");
        }
        // The same refusals in an ip6tables-save file.
        let e =
            load_file_text6("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m ttl --ttl-eq 1\nCOMMIT\n")
                .expect_err("no ttl in ip6tables")
                .in_file("f");
        assert!(e.to_string().starts_with("f:3:13: "), "{e}");
    }

    const NAT: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                       :POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n";
    const FILTER: &str =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                          -A FORWARD -s 10.0.0.5 -j DROP\n-A FORWARD -j ACCEPT\nCOMMIT\n";

    /// Every error of `text` loaded as a whole file, as `line:column: message`.
    fn file_errors(text: &str) -> Vec<String> {
        match load_file_text(text) {
            Ok(f) => panic!("accepted: {f:?}"),
            Err(e) => e
                .iter()
                .map(|e| format!("{}:{}: {}", e.line, e.column, e.kind))
                .collect(),
        }
    }

    #[test]
    fn a_file_names_its_tables_blocks_or_commands() {
        let f = load_file_text(&format!("{FILTER}{NAT}")).expect("loads");
        // Save order, whatever the file's order.
        assert_eq!(f.tables, [Table::Filter, Table::Nat]);
        assert_eq!(f.set.tables.len(), 2);
        // An empty block names its table (iptables-restore flushes it).
        let f = load_file_text("*raw\nCOMMIT\n").expect("loads");
        assert_eq!(f.tables, [Table::Raw]);
        // A script names the tables of its commands, filter without -t,
        // including commands that create nothing (flushing an absent table).
        let f = load_file_text(
            "iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE\niptables -F\n\
             iptables -t mangle -X\n",
        )
        .expect("loads");
        assert_eq!(f.tables, [Table::Mangle, Table::Filter, Table::Nat]);
        assert_eq!(
            f.set.tables.iter().map(|t| t.table).collect::<Vec<_>>(),
            [Table::Nat]
        );
        // Nothing named: an empty file, or only comments.
        assert!(load_file_text("").expect("empty").tables.is_empty());
        assert!(load_file_text("# nothing\n")
            .expect("comment")
            .tables
            .is_empty());
    }

    #[test]
    fn a_file_cut_inside_a_table_expects_its_commit() {
        // Cut after the nat COMMIT, inside the filter block: iptables-restore
        // says "COMMIT expected at line 13", the line after the last.
        let cut =
            &format!("{NAT}{FILTER}")[..NAT.len() + FILTER.find("-A FORWARD -j").expect("rule")];
        assert_eq!(cut.lines().count(), 12);
        assert_eq!(
            file_errors(cut),
            ["13:1: COMMIT expected: the file ends inside table 'filter' (line 8), which is not \
              closed by COMMIT; was the file cut short while being written?"]
        );
        // The same for text that is not a whole file.
        assert!(load_str(cut).is_err());
    }

    #[test]
    fn a_file_cut_in_the_middle_of_a_line_is_refused() {
        // A script cut inside `-j DROP` leaves a valid rule that drops nothing.
        let script = "iptables -P FORWARD DROP\niptables -A FORWARD -s 10.0.0.5 -j DROP\n";
        let cut = &script[..script.len() - " -j DROP\n".len()];
        assert!(load_str(cut).is_ok(), "the cut text is valid rules");
        assert_eq!(
            file_errors(cut),
            [
                "2:32: the last line has no newline at its end: the file may have been cut short \
              while being written (a complete rule file ends with a newline)"
            ]
        );
        // A restore file cut in a rule line: both signs, in file order.
        let cut = &FILTER[..FILTER.find(" -j DROP").expect("rule")];
        let errors = file_errors(cut);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("5:23: the last line has no newline"),
            "{errors:?}"
        );
        // iptables-restore: "COMMIT expected at line 6".
        assert!(errors[1].starts_with("6:1: COMMIT expected"), "{errors:?}");
        // Even a last line that is complete in itself needs its newline.
        let errors = file_errors(FILTER.trim_end());
        assert!(
            errors[0].starts_with("7:7: the last line has no newline"),
            "{errors:?}"
        );
        // Text given as a string (not a file's whole text) needs no newline.
        assert!(load_str(FILTER.trim_end()).is_ok());
    }

    #[test]
    fn a_script_may_not_end_inside_a_continued_command() {
        let text = "iptables -P FORWARD DROP\niptables -A FORWARD -s 10.0.0.5 \\\n";
        assert_eq!(
            file_errors(text),
            [
                "2:1: the file ends inside this command: its last line is continued with '\\' but \
              nothing follows; was the file cut short while being written?"
            ]
        );
        // As a string, the continued command is read as it stands.
        assert!(load_str(text).is_ok());
        // A continuation followed by its line is complete.
        assert!(load_file_text(&format!("{text}  -j DROP\n")).is_ok());
    }

    #[test]
    fn nul_bytes_are_refused() {
        let text = format!("{FILTER}\0\0\0\0\n");
        let errors = file_errors(&text);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            errors[0],
            "8:1: a NUL byte: this is not a text file, or it was not completely written"
        );
    }

    #[test]
    fn end_positions() {
        assert_eq!(end_of(""), (1, 1));
        assert_eq!(end_of("a\n"), (2, 1));
        assert_eq!(end_of("a\nbc"), (2, 3));
        assert_eq!(end_of("a\r\n\n"), (3, 1));
    }

    /// Columns count characters, also after an indentation of non-ASCII
    /// blanks (found by the fuzz harness, `vm-tests/tests/fuzz.rs`: the
    /// indentation was counted in bytes, and the column of a line indented
    /// with three ideographic spaces pointed past its end).
    #[test]
    fn columns_count_characters_after_unicode_blanks() {
        let e = load_str("\u{3000}\u{3000}\u{3000} x\n").expect_err("no table");
        assert_eq!((e.0[0].line, e.0[0].column), (1, 5), "{e}");
        let e = load_str("\u{a0}*bogus\nCOMMIT\n").expect_err("unknown table");
        assert_eq!((e.0[0].line, e.0[0].column), (1, 3), "{e}");
        assert!(e.0[0].kind.to_string().starts_with("unknown table 'bogus'"));
    }
}
