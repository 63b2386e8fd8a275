//! The scale-out model's figures hold what `docs/scale-out.md` says of
//! them (deterministic: a fixed seed).

use xdpgw_benches::scale_out::{simulate, Change, Design, Population};

fn pop(nodes: usize) -> Population {
    Population {
        nodes,
        subscribers: 4_000,
        flows_per_subscriber: 20,
        ports_per_subscriber: 2016,
        seed: 7,
    }
}

fn near(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol
}

#[test]
fn a_shared_pool_without_sync_works_only_by_chance() {
    for n in [2, 4, 8] {
        let o = simulate(Design::EcmpNoSync, Change::Loss, &pop(n));
        let working = o.working_before as f64 / o.connections as f64;
        assert!(near(working, 1.0 / n as f64, 0.02), "{n}: {o:?}");
        // Of those, the dead node's share (1/n) breaks.
        assert!(
            near(o.broken_fraction(), 1.0 / n as f64, 0.03),
            "{n}: {o:?}"
        );
    }
}

#[test]
fn full_sync_breaks_nothing_at_n_times_the_memory() {
    for n in [2, 4, 8] {
        for change in [Change::Loss, Change::Addition] {
            let o = simulate(Design::EcmpFullSync, change, &pop(n));
            assert_eq!(
                (o.working_before, o.broken),
                (o.connections, 0),
                "{n}: {o:?}"
            );
            assert_eq!(o.sync_per_connection, n - 1);
        }
    }
}

#[test]
fn blocks_with_pair_sync_survive_a_loss_and_an_addition_moves_a_share() {
    for n in [2, 4, 8] {
        let loss = simulate(Design::BlocksPairSync, Change::Loss, &pop(n));
        assert_eq!(loss.broken, 0, "{n}: {loss:?}");
        let add = simulate(Design::BlocksPairSync, Change::Addition, &pop(n));
        assert!(
            near(add.broken_fraction(), 1.0 / (n + 1) as f64, 0.03),
            "{n}: {add:?}"
        );
    }
}

#[test]
fn deterministic_ports_lose_only_what_allocation_probed() {
    let o = simulate(Design::BlocksDeterministic, Change::Loss, &pop(4));
    // The dead node's quarter, times the share of ports that collided.
    assert!(o.broken > 0 && o.broken_fraction() < 0.25 * 0.05, "{o:?}");
    let roomy = Population {
        ports_per_subscriber: 64_512,
        ..pop(4)
    };
    let r = simulate(Design::BlocksDeterministic, Change::Loss, &roomy);
    assert!(r.broken < o.broken, "{r:?} {o:?}");
}
