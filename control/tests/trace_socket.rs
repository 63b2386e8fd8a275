//! `trace` over a real control socket, without a network: the server of
//! `api::server` for a gateway built in memory from conf/gateway.rules, a
//! worker fed frames by the test, and the streaming client of `api`.

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xdpgw_lab::WorkDir as TempDir;

use xdpgw_control::api::server::{Control, ControlSocket};
use xdpgw_control::api::{Client, Request};
use xdpgw_control::config::Config;
use xdpgw_control::explain::{build_frame, iface_mac, PacketSpec, PEER_MAC};
use xdpgw_dataplane::action::Action;
use xdpgw_dataplane::conntrack::ConntrackConfig;
use xdpgw_dataplane::flow::{Tuple, IPPROTO_TCP};
use xdpgw_dataplane::gateway::Gateway;
use xdpgw_dataplane::pipeline::{NoEmit, FRAME_SIZE};
use xdpgw_dataplane::worker::Worker;

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);
const WAIT: Duration = Duration::from_secs(10);

fn control() -> Control {
    let rules_file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conf/gateway.rules");
    let set = xdpgw_control::load_rules(&rules_file).expect("rules");
    let conf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conf/gateway.toml");
    let cfg = Config::load(&conf).expect("conf/gateway.toml");
    let gw = Gateway::new(
        cfg.gateway_config(|k| (iface_mac(k), 1500), ConntrackConfig::default()),
        &set,
    )
    .expect("gateway");
    gw.neigh.learn(0, CLIENT, PEER_MAC);
    gw.neigh.learn(1, SERVER, PEER_MAC);
    Control {
        gw: Arc::new(gw),
        rules_file,
        state: Mutex::new(set),
        workers: vec![],
        names: vec!["lan0".into(), "wan0".into()],
        ports: vec!["lan0".into(), "wan0".into()],
        now: || 0,
        events: Default::default(),
        events6: Default::default(),
        config_file: None,
        conntrack: Mutex::new(ConntrackConfig::default()),
        nat_log: Default::default(),
        sync: None,
        rules6: Mutex::default(),
        reloads: Default::default(),
    }
}

/// A SYN from the client to the server's `dport`, through `w`.
fn syn(w: &mut Worker, dport: u16) -> Action {
    let p = PacketSpec {
        in_iface: 0,
        tuple: Tuple {
            src: CLIENT.into(),
            dst: SERVER.into(),
            sport: 40000 + dport,
            dport,
            proto: IPPROTO_TCP,
        },
        tcp_flags: 0x02,
        seq: 1,
        ack: 0,
        icmp: (0, 0),
        tos: 0,
    };
    let mut buf = build_frame(&p, iface_mac(0));
    let len = buf.len();
    buf.resize(FRAME_SIZE, 0);
    w.batch(NoEmit).process(1_000_000, 0, &mut buf, len)
}

fn raw_call(path: &std::path::Path, line: &str) -> Vec<String> {
    let mut s = UnixStream::connect(path).expect("connect");
    s.write_all(format!("{line}\n").as_bytes()).expect("send");
    let mut r = BufReader::new(s);
    let mut out = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).expect("read") == 0 {
            break;
        }
        let l = l.trim_end().to_string();
        let end = l == ".";
        out.push(l);
        if end {
            break;
        }
    }
    out
}

#[test]
fn trace_streams_packets_and_ends_with_its_client() {
    let dir = TempDir::new("socket");
    let ctl = control();
    let path = dir.path().join("c.sock");
    let sock = ControlSocket::bind(&path).expect("bind");
    let stop = AtomicBool::new(false);
    let mut worker = Worker::new(Arc::clone(&ctl.gw), 1);
    std::thread::scope(|s| {
        s.spawn(|| sock.serve(&ctl, &stop));
        // Stops the server when the test ends, also by a failed assertion.
        let _stopper = Stopper(&stop, &path);

        // A trace of two packets, read as it streams.
        let (tx, rx) = channel::<String>();
        let p = path.clone();
        let client = s.spawn(move || {
            let mut c = Client::connect(&p).expect("connect");
            let req = Request::new("trace")
                .arg("count", "2")
                .arg("word", "-p")
                .arg("word", "tcp")
                .arg("word", "--dport")
                .arg("word", "80");
            c.stream(&req, |l| {
                let _ = tx.send(l.to_string());
            })
        });
        let first = rx.recv_timeout(WAIT).expect("the trace is installed");
        assert_eq!(
            first,
            "tracing the next 2 packets matching '-p tcp --dport 80' (arriving on lan0, wan0); the trace ends when the client closes the connection"
        );
        // The socket serves other clients meanwhile; one trace at a time.
        let mut other = Client::connect(&path).expect("connect");
        assert!(other.call(&Request::new("ping")).expect("ping").ok);
        let busy = raw_call(&path, "XDPGW/1 trace word=-p word=udp");
        assert_eq!(
            busy,
            ["XDPGW/1 ERR another trace is running; one at a time", "."]
        );

        assert!(matches!(
            syn(&mut worker, 443),
            Action::Forward { iface: 1, .. }
        ));
        assert!(matches!(
            syn(&mut worker, 80),
            Action::Forward { iface: 1, .. }
        ));
        assert!(matches!(syn(&mut worker, 25), Action::Drop(_)));
        assert!(matches!(
            syn(&mut worker, 80),
            Action::Forward { iface: 1, .. }
        ));
        let result = client.join().expect("client thread");
        assert!(
            matches!(result, Ok(())),
            "the stream ends after 2 packets: {result:?}"
        );
        let lines: Vec<String> = rx.try_iter().collect();
        let text = lines.join("\n");
        assert_eq!(lines[0], "");
        assert_eq!(
            lines[1],
            "packet 1: lan0 tcp 192.168.10.2:40080 > 203.0.113.254:80 [SYN]"
        );
        assert!(text.contains("  nat POSTROUTING rule 1 (-A POSTROUTING -s 192.168.10.0/24 -o wan0 -j MASQUERADE): MASQUERADE source 192.168.10.2:40080 -> 203.0.113.1:40080"), "{text}");
        assert!(
            text.contains("\npacket 2: lan0 tcp 192.168.10.2:40080 > 203.0.113.254:80 [SYN]\n"),
            "{text}"
        );
        assert!(!text.contains(":443"), "{text}");
        assert!(!ctl.gw.tracer.active(), "removed at its count");

        // A client that goes away ends its trace.
        let mut gone = UnixStream::connect(&path).expect("connect");
        gone.write_all(b"XDPGW/1 trace count=5\n").expect("send");
        let mut r = BufReader::new(gone.try_clone().expect("clone"));
        let mut l = String::new();
        r.read_line(&mut l).expect("status");
        assert_eq!(l, "XDPGW/1 OK\n");
        assert!(ctl.gw.tracer.active());
        drop(r);
        drop(gone);
        let deadline = Instant::now() + WAIT;
        while ctl.gw.tracer.active() {
            assert!(Instant::now() < deadline, "the trace outlived its client");
            std::thread::sleep(Duration::from_millis(20));
        }

        // Errors are ordinary responses, naming the argument.
        let bad = raw_call(&path, "XDPGW/1 trace word=-p word=tcp word=--dport word=x");
        assert_eq!(
            bad,
            [
                "XDPGW/1 ERR trace MATCH argument 4: bad value 'x' for --dport: a port 0-65535 or a service name from /etc/services",
                "."
            ]
        );
        let bad = raw_call(&path, "XDPGW/1 trace word=-i word=eth9");
        assert_eq!(
            bad,
            [
                "XDPGW/1 ERR trace MATCH: 'eth9' is not an interface of this gateway (lan0, wan0)",
                "."
            ]
        );
    });
}

struct Stopper<'a>(&'a AtomicBool, &'a std::path::Path);

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        ControlSocket::wake(self.1);
    }
}
