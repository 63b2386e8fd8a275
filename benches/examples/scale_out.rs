//! The figures of `docs/scale-out.md`: for 2 to 16 active nodes, the
//! connections a node's loss and a node's addition break under each design
//! (`xdpgw_benches::scale_out`). Deterministic:
//!
//! ```sh
//! cargo run --release -p xdpgw-benches --example scale_out
//! ```

use xdpgw_benches::scale_out::{simulate, Change, Design, Population};

fn main() {
    let base = Population {
        nodes: 4,
        subscribers: 20_000,
        flows_per_subscriber: 20,
        ports_per_subscriber: 2016,
        seed: 0x005c_a1e0_u64,
    };
    println!(
        "{} subscribers x {} connections, {} ports per subscriber\n",
        base.subscribers, base.flows_per_subscriber, base.ports_per_subscriber
    );
    println!("| design | nodes | working before | broken by a loss | broken by an addition | entries per node | sync msgs per connection |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for design in Design::ALL {
        for nodes in [2, 4, 8, 16] {
            let pop = Population { nodes, ..base };
            let loss = simulate(design, Change::Loss, &pop);
            let add = simulate(design, Change::Addition, &pop);
            println!(
                "| {} | {nodes} | {:.1}% | {:.2}% | {:.2}% | {:.0}x | {} |",
                design.name(),
                100.0 * loss.working_before as f64 / loss.connections as f64,
                100.0 * loss.broken_fraction(),
                100.0 * add.broken_fraction(),
                loss.entries_per_node,
                loss.sync_per_connection,
            );
        }
    }
    println!("\nper-node blocks, deterministic ports, 4 nodes: loss by ports per subscriber");
    for (ports, flows) in [
        (512, 20),
        (2016, 20),
        (2016, 100),
        (4032, 100),
        (64512, 100),
    ] {
        let pop = Population {
            ports_per_subscriber: ports,
            flows_per_subscriber: flows,
            subscribers: 4_000,
            ..base
        };
        let loss = simulate(Design::BlocksDeterministic, Change::Loss, &pop);
        println!(
            "| {ports} ports, {flows} connections | {:.2}% |",
            100.0 * loss.broken_fraction()
        );
    }
}
