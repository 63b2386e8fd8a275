//! A gateway namespace with two veth interfaces, `lan0` and `wan0`, whose
//! peers `p0` (192.168.10.2/24) and `p1` sit in a second namespace, and a
//! world-readable working directory holding a configuration for them
//! (`gateway.toml` running `conf/gateway.rules`, its control socket in the
//! directory). Smaller than the gateway lab: for tests about running xdpgw
//! itself (doctor, service integration, privileges).

use std::path::{Path, PathBuf};

use crate::lab::{veth, WorkDir};
use crate::{workspace_dir, Netns};

/// See the module documentation. Dropping it removes the namespaces (and
/// with them the interfaces and any XDP program on them) and the directory.
pub struct TwoPorts {
    /// The namespace with lan0 and wan0.
    pub gw: Netns,
    /// The namespace with their peers p0 and p1.
    pub peer: Netns,
    dir: WorkDir,
}

/// The gateway's address on lan0 in the configuration.
pub const GATEWAY_LAN: &str = "192.168.10.1";

impl TwoPorts {
    /// Builds it; `tag` names the namespaces.
    pub fn new(tag: &str) -> TwoPorts {
        let gw = Netns::new(&format!("{tag}-gw"));
        let peer = Netns::new(&format!("{tag}-p"));
        veth(&gw, "lan0", &peer, "p0");
        veth(&gw, "wan0", &peer, "p1");
        peer.exec_ok(&["ip", "addr", "add", "192.168.10.2/24", "dev", "p0"]);
        let workdir = WorkDir::new(tag);
        let dir = workdir.path();
        let rules = std::fs::read_to_string(workspace_dir().join("conf/gateway.rules"))
            .expect("read conf/gateway.rules");
        std::fs::write(dir.join("gateway.rules"), rules).expect("write gateway.rules");
        std::fs::write(
            dir.join("gateway.toml"),
            format!(
                "rules = \"gateway.rules\"\ncontrol_socket = \"{}\"\n\n\
                 [[interface]]\nname = \"lan0\"\naddress = \"{GATEWAY_LAN}/24\"\n\n\
                 [[interface]]\nname = \"wan0\"\naddress = \"203.0.113.1/24\"\n",
                dir.join("xdpgw.sock").display()
            ),
        )
        .expect("write gateway.toml");
        // Readable by anyone, the directory writable by anyone (sticky):
        // the service tests run xdpgw as an unprivileged user.
        use std::os::unix::fs::PermissionsExt;
        for f in ["gateway.rules", "gateway.toml"] {
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        TwoPorts {
            gw,
            peer,
            dir: workdir,
        }
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration file.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// The XDP programs attached to `ifname` in the gateway namespace, as
    /// `ip -d link show` reports them (e.g. `prog/xdp id 12`), or none.
    pub fn xdp_programs(&self, ifname: &str) -> Vec<String> {
        let out = self
            .gw
            .exec_ok(&["ip", "-d", "link", "show", "dev", ifname]);
        out.split_whitespace()
            .collect::<Vec<_>>()
            .windows(3)
            .filter(|w| w[0].starts_with("prog/xdp"))
            .map(|w| w.join(" "))
            .collect()
    }
}
