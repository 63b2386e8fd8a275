//! Build script of xdpgw-control: the source revision that `xdpgw
//! --version` and the `xdpgw_build_info` metric show, as
//! `XDPGW_REVISION`.
//!
//! Where it comes from, first found wins:
//! 1. `$XDPGW_REVISION` at build time (a packager building from a tarball
//!    that knows its revision);
//! 2. the commit of the checkout (`git rev-parse`), 12 hex digits;
//! 3. the file `control/REVISION`, which `git archive`
//!    fills in (`export-subst` in `.gitattributes`): a tarball made with
//!    `git archive` knows its commit without `.git`;
//! 4. `unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().unwrap_or(&manifest).to_path_buf();
    println!("cargo:rerun-if-env-changed=XDPGW_REVISION");
    let revision_file = manifest.join("REVISION");
    println!("cargo:rerun-if-changed={}", revision_file.display());
    let revision = std::env::var("XDPGW_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| from_git(&root))
        .or_else(|| from_archive(&revision_file))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=XDPGW_REVISION={}", revision.trim());
}

/// Runs git in `dir`; its output when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status.success().then_some(())?;
    let s = String::from_utf8(out.stdout).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// The checkout's commit, and the files whose change means a new one: HEAD,
/// the branch it is on and the packed refs. (Uncommitted changes are not
/// marked: that would rebuild the crate whenever the index is touched.)
fn from_git(root: &Path) -> Option<String> {
    // Only the repository this workspace is the top of (not one that
    // happens to contain an unpacked tarball).
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(p) = git(root, &["rev-parse", "--git-path", &name]) {
            let p = root.join(p);
            // A path that does not exist would rerun this script (and
            // rebuild the crate) on every build.
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    git(root, &["rev-parse", "--short=12", "HEAD"])
}

/// `REVISION` as `git archive` substituted it (`$Format:%H$`), cut to 12
/// hex digits; unsubstituted, it is a plain copy of the checkout and says
/// nothing.
fn from_archive(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let rev = text.trim();
    (rev.len() >= 12 && rev.bytes().all(|b| b.is_ascii_hexdigit())).then(|| rev[..12].to_owned())
}
