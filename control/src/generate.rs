//! `xdpgw generate DIR`: the man pages and shell completions, made from the
//! clap definitions of the command line so that they never drift from it.
//!
//! - `DIR/man8/xdpgw.8`, and `DIR/man8/xdpgw-SUBCOMMAND.8` for every
//!   subcommand that is not hidden (clap_mangen), section 8 (system
//!   administration: xdpgw runs as root or as a service with network
//!   capabilities);
//! - `DIR/completions/xdpgw.bash`, `_xdpgw` (zsh), `xdpgw.fish`
//!   (clap_complete).
//!
//! The Debian package's build (`pkg/build-deb.sh`) runs it with the binary
//! it packages; nothing generated is kept in the repository.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Writes every man page and completion file under `dir`; the files
/// written, in order.
pub fn write_all(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut cmd = without_hidden(cmd).disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    let man = dir.join("man8");
    std::fs::create_dir_all(&man)?;
    let source = format!("xdpgw {}", xdpgw_control::VERSION);
    let page = |c: clap::Command| -> std::io::Result<PathBuf> {
        let m = clap_mangen::Man::new(short_name(c))
            .section("8")
            .source(source.clone())
            .manual("System Administration");
        let path = man.join(m.get_filename());
        let mut text = Vec::new();
        m.render(&mut text)?;
        write_file(&path, &text)?;
        Ok(path)
    };
    written.push(page(cmd.clone())?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(page(sub.clone())?);
    }

    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, name) in [
        (Shell::Bash, "xdpgw.bash"),
        (Shell::Zsh, "_xdpgw"),
        (Shell::Fish, "xdpgw.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, "xdpgw", &mut text);
        let path = completions.join(name);
        write_file(&path, &text)?;
        written.push(path);
    }
    Ok(written)
}

/// `cmd` without its hidden subcommands (`generate`): clap_complete
/// offers hidden subcommands too.
fn without_hidden(cmd: clap::Command) -> clap::Command {
    let visible = cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned();
    let mut out = clap::Command::new("xdpgw")
        .version(xdpgw_control::VERSION)
        .args(cmd.get_arguments().cloned())
        .subcommand_required(cmd.is_subcommand_required_set())
        .subcommands(visible);
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(long) = cmd.get_long_about() {
        out = out.long_about(long.clone());
    }
    out
}

/// `c` with a NAME line of one sentence (the first of its help) and the
/// whole help as its DESCRIPTION: clap's `about` is the doc comment's first
/// paragraph, long for whatis(1) and apropos(1).
fn short_name(c: clap::Command) -> clap::Command {
    let Some(about) = c.get_about().map(ToString::to_string) else {
        return c;
    };
    let long = c
        .get_long_about()
        .map_or_else(|| about.clone(), ToString::to_string);
    let about = about.strip_prefix("xdpgw: ").unwrap_or(&about);
    let first = match about.find(". ") {
        Some(end) => &about[..end],
        None => about.trim_end_matches('.'),
    };
    let first = first.split_whitespace().collect::<Vec<_>>().join(" ");
    c.about(first).long_about(long)
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn pages_and_completions_cover_every_visible_subcommand() {
        let dir = xdpgw_lab::WorkDir::new("generate");
        let files = super::write_all(crate::Cli::command(), dir.path()).expect("generate");
        let cmd = crate::Cli::command();
        let visible: Vec<&str> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name())
            .collect();
        assert!(visible.contains(&"run") && !visible.contains(&"generate"));
        let man = dir.path().join("man8");
        let top = std::fs::read_to_string(man.join("xdpgw.8")).expect("xdpgw.8");
        assert!(top.contains(".TH xdpgw 8"), "{top}");
        for sub in &visible {
            let page = man.join(format!("xdpgw-{sub}.8"));
            assert!(files.contains(&page), "{}", page.display());
            let text = std::fs::read_to_string(&page).expect("page");
            assert!(text.contains(&format!(".TH xdpgw-{sub} 8")), "{text}");
            // Listed on the main page.
            assert!(top.contains(&format!("xdpgw\\-{sub}(8)")), "{sub}");
        }
        assert!(!man.join("xdpgw-generate.8").exists());
        for name in ["xdpgw.bash", "_xdpgw", "xdpgw.fish"] {
            let text =
                std::fs::read_to_string(dir.path().join("completions").join(name)).expect(name);
            for sub in &visible {
                assert!(text.contains(sub), "{name} lacks {sub}");
            }
            assert!(!text.contains("generate"), "{name} offers generate");
        }
    }
}
