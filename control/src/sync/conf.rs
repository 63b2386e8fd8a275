//! The sync's configuration: the `[sync]` table of xdpgw's TOML, or the
//! `Sync { ... }` section of a conntrackd.conf it names (accepted as it is,
//! so that a pair keeps one file for both kinds of node).
//!
//! ```toml
//! [sync]
//! mode = "ftfw"                 # ftfw | notrack (conntrackd's Mode FTFW / NOTRACK)
//! interface = "sync0"           # the dedicated link: a kernel interface, not one xdpgw takes
//! address = "10.77.0.1"         # this node's address on it (UDP: IPv4_address;
//!                               # multicast: IPv4_interface)
//! peer = "10.77.0.2"            # UDP: the other node (IPv4_Destination_Address)
//! # multicast_group = "225.0.0.50"  # instead of peer: multicast (Multicast's IPv4_address)
//! port = 3780                   # UDP Port, or the multicast Group
//! window = 300                  # FTFW WindowSize
//! resend_queue = 131072         # FTFW ResendQueueSize
//! cache_max = 131072            # entries kept from the peer (General's HashLimit)
//! # or, instead of all the above:
//! # conntrackd_conf = "/etc/conntrackd/conntrackd.conf"
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::session::Mode;
use crate::config::ConfigError;

/// How the sync reaches its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP to the peer's address (conntrackd's `UDP { }`).
    Udp { peer: Ipv4Addr },
    /// UDP to a multicast group (conntrackd's `Multicast { }`).
    Multicast { group: Ipv4Addr },
}

/// The checked sync configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    pub mode: Mode,
    /// The dedicated link (its MTU sizes the datagrams).
    pub interface: String,
    /// This node's address on it: what the sockets bind to.
    pub address: Ipv4Addr,
    pub transport: Transport,
    pub port: u16,
    pub window: u32,
    pub resend_queue: usize,
    pub cache_max: usize,
    /// The conntrackd.conf it came from, if any.
    pub from_file: Option<PathBuf>,
}

/// conntrackd's defaults (`read_config_yy.y`).
const DEFAULT_WINDOW: u32 = 300;
const DEFAULT_RESEND_QUEUE: usize = 131_072;
const DEFAULT_CACHE_MAX: usize = 131_072;
const DEFAULT_PORT: u16 = 3780;

/// `[sync]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSync {
    mode: Option<Spanned<String>>,
    interface: Option<Spanned<String>>,
    address: Option<Spanned<String>>,
    peer: Option<Spanned<String>>,
    multicast_group: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    window: Option<Spanned<i64>>,
    resend_queue: Option<Spanned<i64>>,
    cache_max: Option<Spanned<i64>>,
    conntrackd_conf: Option<Spanned<String>>,
}

fn mode_of(s: &str) -> Option<Mode> {
    match s.to_ascii_lowercase().as_str() {
        "ftfw" => Some(Mode::Ftfw),
        "notrack" => Some(Mode::Notrack),
        _ => None,
    }
}

impl RawSync {
    /// Checks `[sync]`; `at` makes an error at a span of the TOML file,
    /// `base` is its directory (a relative `conntrackd_conf` is resolved
    /// against it).
    pub(crate) fn check(
        &self,
        base: &Path,
        at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
    ) -> Result<SyncConfig, ConfigError> {
        if let Some(f) = &self.conntrackd_conf {
            if let Some(other) = [
                self.mode.as_ref().map(Spanned::span),
                self.interface.as_ref().map(Spanned::span),
                self.address.as_ref().map(Spanned::span),
                self.peer.as_ref().map(Spanned::span),
                self.multicast_group.as_ref().map(Spanned::span),
            ]
            .into_iter()
            .flatten()
            .next()
            {
                return Err(at(
                    other,
                    "[sync] takes either conntrackd_conf or its own settings, not both".into(),
                ));
            }
            let path = base.join(f.get_ref());
            let text = std::fs::read_to_string(&path).map_err(|e| {
                at(
                    f.span(),
                    format!("cannot read conntrackd_conf {}: {e}", path.display()),
                )
            })?;
            return parse_conntrackd_conf(&path, &text);
        }
        fn need<'v>(
            v: &'v Option<Spanned<String>>,
            what: &str,
            at: &impl Fn(std::ops::Range<usize>, String) -> ConfigError,
        ) -> Result<&'v Spanned<String>, ConfigError> {
            v.as_ref()
                .ok_or_else(|| at(0..0, format!("[sync] needs {what}")))
        }
        let mode_s = need(&self.mode, "mode (\"ftfw\" or \"notrack\")", at)?;
        let mode = mode_of(mode_s.get_ref()).ok_or_else(|| {
            at(
                mode_s.span(),
                format!("bad sync mode '{}': ftfw or notrack", mode_s.get_ref()),
            )
        })?;
        let iface = need(&self.interface, "interface (the dedicated link)", at)?;
        let addr = |s: &Spanned<String>, what: &str| {
            s.get_ref().parse::<Ipv4Addr>().map_err(|_| {
                at(
                    s.span(),
                    format!("bad {what} '{}': an IPv4 address", s.get_ref()),
                )
            })
        };
        let address = addr(
            need(&self.address, "address (this node's on the link)", at)?,
            "address",
        )?;
        let transport = match (&self.peer, &self.multicast_group) {
            (Some(p), None) => Transport::Udp {
                peer: addr(p, "peer")?,
            },
            (None, Some(g)) => {
                let group = addr(g, "multicast_group")?;
                if !group.is_multicast() {
                    return Err(at(
                        g.span(),
                        format!("multicast_group {group} is not a multicast address"),
                    ));
                }
                Transport::Multicast { group }
            }
            (Some(p), Some(_)) => {
                return Err(at(
                    p.span(),
                    "[sync] takes peer (UDP) or multicast_group, not both".into(),
                ))
            }
            (None, None) => {
                return Err(at(
                    0..0,
                    "[sync] needs peer (UDP) or multicast_group".into(),
                ))
            }
        };
        let num = |v: &Option<Spanned<i64>>, what: &str, lo: i64, hi: i64, d: i64| match v {
            None => Ok(d),
            Some(n) if (lo..=hi).contains(n.get_ref()) => Ok(*n.get_ref()),
            Some(n) => Err(at(
                n.span(),
                format!("sync {what} {} is out of range: {lo} to {hi}", n.get_ref()),
            )),
        };
        Ok(SyncConfig {
            mode,
            interface: iface.get_ref().clone(),
            address,
            transport,
            port: num(&self.port, "port", 1, 65535, i64::from(DEFAULT_PORT))? as u16,
            window: num(
                &self.window,
                "window",
                1,
                1 << 20,
                i64::from(DEFAULT_WINDOW),
            )? as u32,
            resend_queue: num(
                &self.resend_queue,
                "resend_queue",
                1,
                1 << 24,
                DEFAULT_RESEND_QUEUE as i64,
            )? as usize,
            cache_max: num(
                &self.cache_max,
                "cache_max",
                1,
                1 << 24,
                DEFAULT_CACHE_MAX as i64,
            )? as usize,
            from_file: None,
        })
    }
}

/// A token of conntrackd.conf and where it starts (line, column from 1).
#[derive(Debug)]
struct Tok<'a> {
    text: &'a str,
    line: usize,
    col: usize,
}

/// conntrackd.conf's words and braces (`read_config_lex.l`: `#` starts a
/// comment; braces stand alone or stick to words).
fn tokens(text: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_text = line.split('#').next().unwrap_or("");
        let mut start: Option<usize> = None;
        for (i, c) in line_text.char_indices().chain([(line_text.len(), ' ')]) {
            let brace = c == '{' || c == '}';
            if c.is_whitespace() || brace {
                if let Some(s) = start.take() {
                    out.push(Tok {
                        text: &line_text[s..i],
                        line: n + 1,
                        col: s + 1,
                    });
                }
                if brace {
                    out.push(Tok {
                        text: &line_text[i..i + 1],
                        line: n + 1,
                        col: i + 1,
                    });
                }
            } else if start.is_none() {
                start = Some(i);
            }
        }
    }
    out
}

/// A `Name { ... }` block's contents: the tokens between its braces.
fn block<'t, 'a>(toks: &'t [Tok<'a>], open: usize) -> Option<(&'t [Tok<'a>], usize)> {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.text {
            "{" => depth += 1,
            "}" => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some((&toks[open + 1..i], i));
                }
            }
            _ => {}
        }
    }
    None
}

/// A statement at the top of a block's contents.
enum Item<'t, 'a> {
    /// `Key Value` (words after the value ignored).
    Pair(&'t Tok<'a>, &'t Tok<'a>),
    /// `Key [args] { inner }`, e.g. `Mode FTFW { ... }`.
    Block {
        key: &'t Tok<'a>,
        args: &'t [Tok<'a>],
        inner: &'t [Tok<'a>],
    },
    /// A word alone on its line (a list entry, e.g. `TCP`).
    Word,
}

/// The statements of a block's contents: the words of a line, with the
/// block that a `{` ending them opens (to its matching `}`, over lines).
/// `Err`: the token that opens a block never closed, or a stray `}`.
fn items<'t, 'a>(toks: &'t [Tok<'a>]) -> Result<Vec<Item<'t, 'a>>, &'t Tok<'a>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let first = &toks[i];
        if first.text == "}" || first.text == "{" {
            return Err(first);
        }
        let mut j = i;
        while j < toks.len()
            && toks[j].line == first.line
            && toks[j].text != "{"
            && toks[j].text != "}"
        {
            j += 1;
        }
        if toks.get(j).is_some_and(|t| t.text == "{") {
            let (inner, close) = block(toks, j).ok_or(first)?;
            out.push(Item::Block {
                key: first,
                args: &toks[i + 1..j],
                inner,
            });
            i = close + 1;
        } else {
            out.push(if j > i + 1 {
                Item::Pair(first, &toks[i + 1])
            } else {
                Item::Word
            });
            i = j;
        }
    }
    Ok(out)
}

/// The `Sync { }` section (and `General { HashLimit }`) of a
/// conntrackd.conf; other sections and options are left to conntrackd.
pub fn parse_conntrackd_conf(path: &Path, text: &str) -> Result<SyncConfig, ConfigError> {
    let err = |t: Option<&Tok<'_>>, message: String| ConfigError {
        file: path.display().to_string(),
        line: t.map_or(0, |t| t.line),
        column: t.map_or(0, |t| t.col),
        message,
    };
    let toks = tokens(text);
    let top = items(&toks).map_err(|t| err(Some(t), format!("unexpected '{}'", t.text)))?;
    let mut sync = None;
    let mut cache_max = DEFAULT_CACHE_MAX;
    for it in &top {
        if let Item::Block { key: k, inner, .. } = it {
            if k.text.eq_ignore_ascii_case("Sync") {
                sync = Some((*k, *inner));
            } else if k.text.eq_ignore_ascii_case("General") {
                for g in
                    items(inner).map_err(|t| err(Some(t), format!("unexpected '{}'", t.text)))?
                {
                    if let Item::Pair(k, v) = g {
                        if k.text.eq_ignore_ascii_case("HashLimit") {
                            cache_max = v
                                .text
                                .parse()
                                .map_err(|_| err(Some(v), format!("bad HashLimit '{}'", v.text)))?;
                        }
                    }
                }
            }
        }
    }
    let (_, sync) = sync.ok_or_else(|| err(None, "no Sync section".into()))?;
    let mut mode = None;
    let mut window = DEFAULT_WINDOW;
    let mut resend_queue = DEFAULT_RESEND_QUEUE;
    let mut channel: Option<(&Tok<'_>, Vec<Item<'_, '_>>)> = None;
    let unexpected = |t: &Tok<'_>| err(Some(t), format!("unexpected '{}'", t.text));
    for item in items(sync).map_err(unexpected)? {
        let (k, v, inner): (&Tok<'_>, Option<&Tok<'_>>, &[Tok<'_>]) = match item {
            Item::Pair(k, v) => (k, Some(v), &[]),
            Item::Block { key, args, inner } => (key, args.first(), inner),
            Item::Word => continue,
        };
        if k.text.eq_ignore_ascii_case("Mode") {
            let v = v.ok_or_else(|| err(Some(k), "Mode without a name".into()))?;
            mode = Some(mode_of(v.text).ok_or_else(|| {
                err(
                    Some(v),
                    format!("Mode {}: xdpgw syncs in FTFW or NOTRACK mode", v.text),
                )
            })?);
            for m in items(inner).map_err(unexpected)? {
                if let Item::Pair(k, v) = m {
                    let n = || {
                        v.text
                            .parse::<u32>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| err(Some(v), format!("bad {} '{}'", k.text, v.text)))
                    };
                    if k.text.eq_ignore_ascii_case("WindowSize") {
                        window = n()?;
                    } else if k.text.eq_ignore_ascii_case("ResendQueueSize") {
                        resend_queue = n()? as usize;
                    }
                }
            }
        } else if k.text.eq_ignore_ascii_case("UDP") || k.text.eq_ignore_ascii_case("Multicast") {
            if let Some((first, _)) = &channel {
                return Err(err(
                    Some(k),
                    format!(
                        "a second channel ({} after {} at line {}): xdpgw syncs over one",
                        k.text, first.text, first.line
                    ),
                ));
            }
            channel = Some((k, items(inner).map_err(unexpected)?));
        }
    }
    let mode = mode.ok_or_else(|| err(None, "Sync has no Mode".into()))?;
    let (ch, opts) =
        channel.ok_or_else(|| err(None, "Sync has no UDP or Multicast channel".into()))?;
    let get = |name: &str| {
        opts.iter().find_map(|o| match o {
            Item::Pair(k, v) if k.text.eq_ignore_ascii_case(name) => Some(*v),
            _ => None,
        })
    };
    let addr = |name: &str| -> Result<Ipv4Addr, ConfigError> {
        let v = get(name).ok_or_else(|| err(Some(ch), format!("{} has no {name}", ch.text)))?;
        v.text
            .parse()
            .map_err(|_| err(Some(v), format!("bad {name} '{}': an IPv4 address", v.text)))
    };
    let iface = get("Interface")
        .ok_or_else(|| err(Some(ch), format!("{} has no Interface", ch.text)))?
        .text
        .to_string();
    let multicast = ch.text.eq_ignore_ascii_case("Multicast");
    let port_name = if multicast { "Group" } else { "Port" };
    let port = match get(port_name) {
        None => DEFAULT_PORT,
        Some(v) => v
            .text
            .parse()
            .map_err(|_| err(Some(v), format!("bad {port_name} '{}'", v.text)))?,
    };
    let (address, transport) = if multicast {
        let group = addr("IPv4_address")?;
        (addr("IPv4_interface")?, Transport::Multicast { group })
    } else {
        (
            addr("IPv4_address")?,
            Transport::Udp {
                peer: addr("IPv4_Destination_Address")?,
            },
        )
    };
    Ok(SyncConfig {
        mode,
        interface: iface,
        address,
        transport,
        port,
        window,
        resend_queue,
        cache_max,
        from_file: Some(path.to_path_buf()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's example (`/usr/share/doc/conntrackd/examples/sync/ftfw/`),
    /// shortened.
    const FTFW_MULTICAST: &str = "\
Sync {
\tMode FTFW {
\t\tResendQueueSize 131072
\t\tWindowSize 20
\t}
\tMulticast {
\t\tIPv4_address 225.0.0.50
\t\tGroup 3780
\t\tIPv4_interface 192.168.100.100
\t\tInterface eth2
\t\tSndSocketBuffer 1249280
\t\tChecksum on
\t}
}
General {
\tHashSize 32768
\tHashLimit 131072
\tLockFile /var/lock/conntrack.lock
\tUNIX {
\t\tPath /var/run/conntrackd.ctl
\t}
\tFilter From Userspace {
\t\tProtocol Accept {
\t\t\tTCP
\t\t\tSCTP
\t\t}
\t\tAddress Ignore {
\t\t\tIPv4_address 127.0.0.1 # loopback
\t\t}
\t}
}
";

    #[test]
    fn conntrackd_conf_sync_sections() {
        let c = parse_conntrackd_conf(Path::new("c.conf"), FTFW_MULTICAST).expect("parses");
        assert_eq!(c.mode, Mode::Ftfw);
        assert_eq!(c.window, 20);
        assert_eq!(c.interface, "eth2");
        assert_eq!(c.address, Ipv4Addr::new(192, 168, 100, 100));
        assert_eq!(
            c.transport,
            Transport::Multicast {
                group: Ipv4Addr::new(225, 0, 0, 50)
            }
        );
        assert_eq!(c.port, 3780);
        let udp = "Sync {\n Mode NOTRACK { }\n UDP {\n  IPv4_address 10.77.0.1\n  \
                   IPv4_Destination_Address 10.77.0.2\n  Port 3781\n  Interface sync0\n }\n}\n";
        let c = parse_conntrackd_conf(Path::new("c.conf"), udp).expect("parses");
        assert_eq!(c.mode, Mode::Notrack);
        assert_eq!(
            c.transport,
            Transport::Udp {
                peer: Ipv4Addr::new(10, 77, 0, 2)
            }
        );
        assert_eq!(c.port, 3781);
    }

    fn toml_sync(text: &str) -> Result<SyncConfig, String> {
        let raw: RawSync = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.check(Path::new("/etc/xdpgw"), &|span, message| {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            ConfigError {
                file: "g.toml".into(),
                line,
                column: 1,
                message,
            }
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_sync_table() {
        let c = toml_sync(
            "mode = \"ftfw\"\ninterface = \"sync0\"\naddress = \"10.77.0.2\"\n\
             peer = \"10.77.0.1\"\nwindow = 50\n",
        )
        .expect("valid");
        assert_eq!(
            (c.mode, c.port, c.window, c.resend_queue, c.cache_max),
            (Mode::Ftfw, 3780, 50, 131_072, 131_072)
        );
        assert_eq!(
            c.transport,
            Transport::Udp {
                peer: Ipv4Addr::new(10, 77, 0, 1)
            }
        );
        let m = toml_sync(
            "mode = \"NOTRACK\"\ninterface = \"s\"\naddress = \"10.0.0.1\"\n\
             multicast_group = \"225.0.0.50\"\nport = 3781\n",
        )
        .expect("multicast");
        assert_eq!(m.mode, Mode::Notrack);
        for (text, want) in [
            (
                "mode = \"alarm\"\ninterface = \"s\"\naddress = \"10.0.0.1\"\npeer = \"10.0.0.2\"",
                "g.toml:1:1: bad sync mode 'alarm': ftfw or notrack",
            ),
            (
                "mode = \"ftfw\"\ninterface = \"s\"\naddress = \"10.0.0.1\"\n\
                 multicast_group = \"10.0.0.2\"",
                "g.toml:4:1: multicast_group 10.0.0.2 is not a multicast address",
            ),
            (
                "mode = \"ftfw\"\ninterface = \"s\"\naddress = \"10.0.0.1\"",
                "g.toml:1:1: [sync] needs peer (UDP) or multicast_group",
            ),
            (
                "conntrackd_conf = \"c.conf\"\nmode = \"ftfw\"",
                "g.toml:2:1: [sync] takes either conntrackd_conf or its own settings, not both",
            ),
            (
                "mode = \"ftfw\"\ninterface = \"s\"\naddress = \"10.0.0.1\"\npeer = \"10.0.0.2\"\n\
                 port = 0",
                "g.toml:5:1: sync port 0 is out of range: 1 to 65535",
            ),
        ] {
            assert_eq!(toml_sync(text).expect_err(text), want);
        }
        let missing = toml_sync("conntrackd_conf = \"/nonexistent/c.conf\"").expect_err("missing");
        assert!(
            missing.starts_with("g.toml:1:1: cannot read conntrackd_conf /nonexistent/c.conf"),
            "{missing}"
        );
    }

    #[test]
    fn conntrackd_conf_errors_say_where() {
        let e = parse_conntrackd_conf(
            Path::new("c.conf"),
            "Sync {\n Mode ALARM { }\n UDP { Interface x }\n}\n",
        )
        .expect_err("alarm");
        assert_eq!(
            e.to_string(),
            "c.conf:2:7: Mode ALARM: xdpgw syncs in FTFW or NOTRACK mode"
        );
        let e = parse_conntrackd_conf(
            Path::new("c.conf"),
            "Sync {\n Mode FTFW { }\n UDP {\n  IPv4_address 10.0.0.300\n }\n}\n",
        )
        .expect_err("address");
        assert!(
            e.to_string()
                .starts_with("c.conf:3:2: UDP has no Interface"),
            "{e}"
        );
        let e = parse_conntrackd_conf(Path::new("c.conf"), "General {\n}\n").expect_err("no sync");
        assert_eq!(e.to_string(), "c.conf: no Sync section");
        let e =
            parse_conntrackd_conf(Path::new("c.conf"), "Sync {\n Mode FTFW {\n").expect_err("open");
        assert!(
            e.to_string().starts_with("c.conf:1:1: unexpected 'Sync'"),
            "{e}"
        );
    }
}
