//! The workspace the lab belongs to, and its binaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The workspace root: the parent of this crate's directory.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the lab crate lives inside the workspace")
        .to_path_buf()
}

/// The product binary, `xdpgw` ([`workspace_binary`]; `$XDPGW_BIN`
/// overrides it).
pub fn xdpgw_binary() -> PathBuf {
    workspace_binary("xdpgw-control", "xdpgw", "XDPGW_BIN")
}

/// The lab's traffic tools, `xdpgw-lab` ([`workspace_binary`];
/// `$XDPGW_LAB_BIN` overrides it). A test tool, not part of the product.
pub fn tools_binary() -> PathBuf {
    workspace_binary("xdpgw-lab", "xdpgw-lab", "XDPGW_LAB_BIN")
}

/// The binary `bin` of the workspace package `package`: `$env_var` if set,
/// else `target/<profile>/<bin>` of the test or bench that runs this,
/// which this builds first (once per process, with the `cargo` that runs
/// it, in the same profile): `cargo test -p xdpgw-vm-tests` alone does not
/// build other packages' binaries, and a stale one would make the tests
/// lie.
pub fn workspace_binary(package: &str, bin: &str, env_var: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = built.get(bin) {
        return p.clone();
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let path = profile_dir.join(bin);
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let target_dir = profile_dir.parent().expect("target/<profile>");
        let out = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", package, "--bin", bin])
            .args(["--profile", profile, "--target-dir"])
            .arg(target_dir)
            .current_dir(workspace_dir())
            .output()
            .unwrap_or_else(|e| panic!("cannot run cargo build: {e}"));
        assert!(
            out.status.success(),
            "cargo build -p {package} --bin {bin} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        path.is_file(),
        "{} does not exist: build it (`cargo build -p {package} --bin {bin}`) or point \
         {env_var} at it",
        path.display()
    );
    built.insert(bin.to_owned(), path.clone());
    path
}
