//! `xdpgw run`: the gateway itself.

use std::path::Path;
use std::process::ExitCode;

pub fn main(_config: &Path) -> ExitCode {
    eprintln!("xdpgw run: not available yet");
    ExitCode::FAILURE
}
