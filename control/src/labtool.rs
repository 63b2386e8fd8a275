//! `xdpgw lab-tool`: the traffic tools the lab runs inside its namespaces.

use std::process::ExitCode;

pub fn main(_args: &[String]) -> ExitCode {
    eprintln!("xdpgw lab-tool: not available yet");
    ExitCode::FAILURE
}
