//! `xdpgw ipset ...` over the control socket: the running gateway's sets
//! changed without a reload, as `ipset` changes the kernel's. Each change
//! is made on a copy of the sets it touches and published whole
//! (`SharedSets::update`): workers see all of it at their next batch, or
//! none of it when it fails.

use std::path::Path;
use std::process::ExitCode;

use super::server::Control;
use super::{Client, Request, Response};
use crate::error::RuleError;
use crate::parse::ipset::{parse_set_command, SetCommand};
use crate::parse::lex::Token;

/// The exit status ipset gives a command it cannot parse (a kernel
/// refusal is 1).
const SYNTAX_STATUS: &str = "status 2";

/// The request for `xdpgw ipset WORDS...`.
pub fn request(words: &[String]) -> Request {
    words
        .iter()
        .fold(Request::new("ipset"), |r, w| r.arg("w", w.as_str()))
}

impl Control {
    /// Runs one ipset command against the running gateway's sets.
    pub fn ipset(&self, req: &Request) -> Response {
        let words: Vec<Token> = req
            .args
            .iter()
            .filter(|(k, _)| k == "w")
            .enumerate()
            .map(|(i, (_, v))| Token {
                text: v.clone(),
                line: 1,
                col: i as u32 + 1,
            })
            .collect();
        let now = (self.now)();
        let gw = &self.gw;
        let line = match parse_set_command(&words, &**gw.sets.now()) {
            Ok(l) => l,
            Err(RuleError { kind, .. }) => {
                return Response::err(kind.to_string(), vec![SYNTAX_STATUS.into()])
            }
        };
        let rules = gw.rules();
        let in_use = |slot: u16| rules.uses_set(slot);
        let refs = |slot: u16| rules.set_refs(slot);
        let read_only = matches!(
            line.cmd,
            SetCommand::List(_) | SetCommand::Save(_) | SetCommand::Test { .. }
        );
        let r = if read_only {
            let mut copy = (*gw.sets.snapshot()).clone();
            crate::ipset::apply(&mut copy, &line, now, &in_use, &refs)
        } else {
            gw.sets.update(|t| {
                // Expired elements go when the sets change (the kernel's
                // garbage collector runs periodically): memory stays
                // bounded by maxelem either way.
                t.expire(now);
                crate::ipset::apply(t, &line, now, &in_use, &refs)
            })
        };
        match r {
            Ok(out) => Response::ok(out.lines().map(str::to_string).collect()),
            Err(e) => Response::err(e.to_string(), vec![]),
        }
    }
}

/// `xdpgw ipset ...`: prints what ipset prints and exits as it does (0,
/// 1 when the kernel refuses or a test finds nothing, 2 for a command it
/// cannot parse).
pub fn run(socket: &Path, req: &Request) -> ExitCode {
    match Client::connect(socket).and_then(|mut c| c.call(req)) {
        Ok(r) if r.ok => {
            for l in &r.body {
                println!("{l}");
            }
            ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!("xdpgw ipset: {}", r.message);
            if r.body.iter().any(|l| l == SYNTAX_STATUS) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("xdpgw: {e}");
            ExitCode::FAILURE
        }
    }
}
