//! IP sets in the control plane: applying `ipset` commands to a set table
//! (script lines, `ipset restore` files, `xdpgw ipset`), and printing sets
//! as `ipset save` and `ipset list` do (ipset 7.17).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use xdpgw_dataplane::ipset::{ElemValue, IpSet, Key, SetError, SetTable, SetType};

use crate::error::{RuleError, RuleErrorKind, RuleErrors};
use crate::parse::ipset::{parse_set_command, SetCommand, SetLine};
use crate::parse::lex;

/// Why a set command failed: the kernel's refusal, or a `test` that did
/// not find its element (exit status 1 both; ipset's words).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetCommandError {
    #[error("{0}")]
    Set(#[from] SetError),
    #[error("{elem} is NOT in set {set}.")]
    NotInSet { elem: String, set: String },
}

/// Applies one command to `table` at `now` (gateway nanoseconds); `in_use`
/// tells whether rules reference a slot (such a set cannot be destroyed).
/// Returns what ipset prints (list, save, test's answer), if anything.
pub fn apply(
    table: &mut SetTable,
    line: &SetLine,
    now: u64,
    in_use: &dyn Fn(u16) -> bool,
    refs: &dyn Fn(u16) -> usize,
) -> Result<String, SetCommandError> {
    let exist = line.exist;
    match &line.cmd {
        SetCommand::Create { name, kind, opts } => {
            let mut opts = *opts;
            if opts.initval == 0 && kind.is_hash() {
                opts.initval = random_initval(name);
            }
            table.create(name, *kind, opts, exist)?;
        }
        SetCommand::Add { name, elem } | SetCommand::Del { name, elem } => {
            let add = matches!(line.cmd, SetCommand::Add { .. });
            let member = match &elem.member {
                Some(m) if add => Some(table.member_slot(m)?),
                Some(m) => Some(table.slot(m).ok_or(SetError::MemberMissing)?),
                None => None,
            };
            let set = table.set_mut(name)?;
            let kind = set.kind;
            elem.for_each(kind, |e| {
                if add {
                    set.add(&e, member, exist, now)
                } else {
                    set.del(&e, member, exist, now)
                }
            })?;
        }
        SetCommand::Test { name, elem, text } => {
            let s = table.by_name(name).ok_or(SetError::NoSuchSet)?;
            let member = elem.member.as_deref().and_then(|m| table.slot(m));
            let mut all = true;
            let _ = elem.for_each(s.set.kind, |e| {
                all &= s.set.test(&e, member, now);
                Ok::<(), ()>(())
            });
            return if all {
                Ok(format!("{text} is in set {name}.\n"))
            } else {
                Err(SetCommandError::NotInSet {
                    elem: text.clone(),
                    set: name.clone(),
                })
            };
        }
        SetCommand::Flush(None) => {
            let names: Vec<String> = table.iter().map(|(_, s)| s.name.clone()).collect();
            for n in names {
                table.set_mut(&n)?.flush();
            }
        }
        SetCommand::Flush(Some(name)) => table.set_mut(name)?.flush(),
        SetCommand::Destroy(None) => table.destroy_all(in_use)?,
        SetCommand::Destroy(Some(name)) => {
            let slot = table.slot(name).ok_or(SetError::NoSuchSet)?;
            table.destroy(name, in_use(slot))?;
        }
        SetCommand::Swap(a, b) => table.swap(a, b)?,
        SetCommand::List(name) => return Ok(list(table, name.as_deref(), now, refs)?),
        SetCommand::Save(name) => return Ok(save(table, name.as_deref(), now)?),
    }
    Ok(String::new())
}

/// A random `initval` as the kernel picks one for each hash set
/// (`get_random_u32`), from the standard library's random hasher keys.
fn random_initval(name: &str) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(name.as_bytes());
    (h.finish() as u32).max(1)
}

/// The options `create` and `Header:` show, as ipset prints them.
fn header(set: &IpSet) -> String {
    let o = &set.opts;
    let mut s = String::new();
    match set.kind {
        SetType::BitmapPort => {
            let _ = write!(s, "range {}-{}", o.range.0, o.range.1);
        }
        SetType::ListSet => {
            let _ = write!(s, "size {}", o.size);
        }
        _ => {
            let _ = write!(
                s,
                "family inet hashsize {} maxelem {}",
                o.hashsize, o.maxelem
            );
        }
    }
    if let Some(t) = o.timeout {
        let _ = write!(s, " timeout {t}");
    }
    if o.counters {
        s.push_str(" counters");
    }
    if set.kind.is_hash() {
        let _ = write!(
            s,
            " bucketsize {} initval {:#010x}",
            o.bucketsize, o.initval
        );
    }
    s
}

fn elem_text(set: &IpSet, cidr: u8, k: Key) -> String {
    let addr = Ipv4Addr::from(k.addr());
    let net = if cidr == 32 {
        addr.to_string()
    } else {
        format!("{addr}/{cidr}")
    };
    let proto = match k.proto() {
        17 => "udp",
        _ => "tcp",
    };
    match set.kind {
        SetType::HashIp | SetType::HashNet => net,
        SetType::HashIpPort | SetType::HashNetPort => format!("{net},{proto}:{}", k.port()),
        SetType::BitmapPort => k.port().to_string(),
        SetType::ListSet => String::new(),
    }
}

fn elem_extras(set: &IpSet, v: &ElemValue, now: u64) -> String {
    let mut s = String::new();
    if set.opts.timeout.is_some() {
        let left = if v.expires == u64::MAX {
            0
        } else {
            v.expires.saturating_sub(now) / 1_000_000_000
        };
        let _ = write!(s, " timeout {left}");
    }
    if v.nomatch {
        s.push_str(" nomatch");
    }
    if let Some(c) = &v.counter {
        let (p, b) = c.get();
        let _ = write!(s, " packets {p} bytes {b}");
    }
    s
}

/// The members of a set, one per line as `save` and `list` print them
/// (without the `add NAME ` of save).
fn members(table: &SetTable, set: &IpSet, now: u64) -> Vec<String> {
    if set.kind == SetType::ListSet {
        return set
            .members()
            .iter()
            .filter_map(|&m| table.name_of(m).map(str::to_string))
            .collect();
    }
    set.elements()
        .into_iter()
        .filter(|(_, _, v)| v.live(now))
        .map(|(c, k, v)| format!("{}{}", elem_text(set, c, k), elem_extras(set, v, now)))
        .collect()
}

fn chosen<'a>(
    table: &'a SetTable,
    name: Option<&str>,
) -> Result<Vec<(u16, &'a xdpgw_dataplane::ipset::SetSlot)>, SetError> {
    match name {
        Some(n) => {
            let slot = table.slot(n).ok_or(SetError::NoSuchSet)?;
            Ok(table.get(slot).map(|s| (slot, s)).into_iter().collect())
        }
        None => Ok(table.iter().collect()),
    }
}

/// `ipset save [NAME]`: elements in address order (the kernel prints its
/// hash order).
pub fn save(table: &SetTable, name: Option<&str>, now: u64) -> Result<String, SetError> {
    let mut out = String::new();
    for (_, s) in chosen(table, name)? {
        let _ = writeln!(
            out,
            "create {} {} {}",
            s.name,
            s.set.kind.name(),
            header(&s.set)
        );
        for m in members(table, &s.set, now) {
            let _ = writeln!(out, "add {} {m}", s.name);
        }
    }
    Ok(out)
}

/// An estimate of a set's memory, for `Size in memory:`.
fn memory(set: &IpSet) -> usize {
    let per = match set.kind {
        SetType::ListSet => 8,
        _ => 48,
    };
    200 + set.len() * per
}

/// `ipset list [NAME]`.
pub fn list(
    table: &SetTable,
    name: Option<&str>,
    now: u64,
    refs: &dyn Fn(u16) -> usize,
) -> Result<String, SetError> {
    let mut out = String::new();
    for (i, (slot, s)) in chosen(table, name)?.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let members = members(table, &s.set, now);
        let _ = write!(
            out,
            "Name: {}\nType: {}\nRevision: {}\nHeader: {}\nSize in memory: {}\nReferences: {}\n\
             Number of entries: {}\nMembers:\n",
            s.name,
            s.set.kind.name(),
            s.set.kind.revision(),
            header(&s.set),
            memory(&s.set),
            refs(slot) + table.list_refs(slot),
            members.len()
        );
        for m in members {
            let _ = writeln!(out, "{m}");
        }
    }
    Ok(out)
}

/// Loads an `ipset save` file (`create` and `add` lines, as `ipset
/// restore` reads them) on top of `table`: every error as
/// `line:column: message`, and then nothing of the file is applied.
pub fn restore(
    table: &SetTable,
    text: &str,
    now: u64,
) -> Result<(SetTable, Vec<SetLine>), RuleErrors> {
    let mut next = table.clone();
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    errors.extend(crate::parse::ending_errors(text));
    for (i, raw) in text.lines().enumerate() {
        let line_no = i as u32 + 1;
        let words = match lex::shell_words(raw, line_no) {
            Ok(l) => l.words,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if words.is_empty() || words[0].text.starts_with('#') || words[0].is("COMMIT") {
            continue;
        }
        match parse_set_command(&words, &next) {
            Ok(l) => match apply(&mut next, &l, now, &|_| false, &|_| 0) {
                Ok(_) => lines.push(l),
                Err(e) => errors.push(RuleError::at(
                    l.at.0,
                    l.at.1,
                    RuleErrorKind::Semantic(e.to_string()),
                )),
            },
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok((next, lines))
    } else {
        Err(RuleErrors(errors))
    }
}
