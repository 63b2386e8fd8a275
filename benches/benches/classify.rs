//! The classifier alone, per packet: rule sets of realistic shapes
//! (`xdpgw_benches::shapes`: a blocklist, a ClassBench-style ACL,
//! per-customer port forwards) of 1,000 to 100,000 rules, through the
//! indexed walk and (up to 10,000 rules) the linear one; and short chains
//! both ways (where indexing starts to pay: `INDEX_MIN_RULES`). Prints each
//! set's compile time and the memory of its indexes.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use xdpgw_benches::shapes::{self, Shape, IFACES};
use xdpgw_control::load_rules_str;
use xdpgw_dataplane::classify::{compile, CompiledRuleSet, EvalState};

fn compiled(shape: &Shape) -> CompiledRuleSet {
    let set = load_rules_str("shape.rules", &shape.rules).unwrap_or_else(|e| panic!("{e}"));
    // The best of three compiles (the machine is shared).
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..3 {
        let start = Instant::now();
        let c = compile(&set, &IFACES).expect("compiles");
        best = best.min(start.elapsed().as_secs_f64());
        out = Some(c);
    }
    let c = out.expect("compiled");
    println!(
        "{} {} rules: compiled in {:.1} ms, indexes {:.1} KiB",
        shape.name,
        shape.rules.lines().filter(|l| l.starts_with("-A")).count(),
        best * 1e3,
        c.index_bytes() as f64 / 1024.0
    );
    c
}

fn bench_shape(c: &mut Criterion, make: fn(usize) -> Shape) {
    let mut g = c.benchmark_group("classify");
    for n in [1_000usize, 10_000, 100_000] {
        let shape = make(n);
        let rules = compiled(&shape);
        let mut st = EvalState::new(&rules);
        let (table, hook) = shape.at;
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new(shape.name, n), &n, |b, _| {
            b.iter(|| {
                let mut p = shape.packets[i % shape.packets.len()];
                i += 1;
                rules.eval(table, hook, &mut p, &mut st, 0)
            })
        });
        if n <= 10_000 {
            g.bench_with_input(
                BenchmarkId::new(format!("{}_linear", shape.name), n),
                &n,
                |b, _| {
                    b.iter(|| {
                        let mut p = shape.packets[i % shape.packets.len()];
                        i += 1;
                        rules.eval_linear_observed(table, hook, &mut p, &mut st, 0, &mut ())
                    })
                },
            );
        }
    }
    g.finish();
}

fn blocklist(c: &mut Criterion) {
    bench_shape(c, shapes::blocklist);
}

fn classbench(c: &mut Criterion) {
    bench_shape(c, shapes::classbench);
}

fn port_forwards(c: &mut Criterion) {
    bench_shape(c, shapes::port_forwards);
}

/// Short chains (blocklists of `n`), every chain indexed and none: the
/// length from which the index pays.
fn short_chains(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    for n in [8usize, 16, 32, 64, 128] {
        let shape = shapes::blocklist(n);
        let set = load_rules_str("shape.rules", &shape.rules).unwrap_or_else(|e| panic!("{e}"));
        let mut rules = compile(&set, &IFACES).expect("compiles");
        let (table, hook) = shape.at;
        for (name, min) in [("short_indexed", 1), ("short_linear", usize::MAX)] {
            rules.set_index_min_rules(min);
            let mut st = EvalState::new(&rules);
            let mut i = 0usize;
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let mut p = shape.packets[i % shape.packets.len()];
                    i += 1;
                    rules.eval(table, hook, &mut p, &mut st, 0)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, short_chains, blocklist, classbench, port_forwards);
criterion_main!(benches);
