//! Control-plane speed: parse + validate + compile of a 100,000-rule
//! iptables-save file (the target: under 1 s on the 2-core machine).

use criterion::{criterion_group, criterion_main, Criterion};
use xdpgw_benches::big_rule_file;
use xdpgw_control::load_rules_str;
use xdpgw_dataplane::classify::compile;

fn load_100k(c: &mut Criterion) {
    let text = big_rule_file(100_000);
    let mut g = c.benchmark_group("rules");
    g.sample_size(10);
    g.bench_function("parse_validate_compile_100k", |b| {
        b.iter(|| {
            let set = load_rules_str("big.rules", &text).expect("valid");
            compile(&set, &["lan0", "wan0"]).expect("compiles")
        })
    });
    g.bench_function("parse_validate_100k", |b| {
        b.iter(|| load_rules_str("big.rules", &text).expect("valid"))
    });
    g.finish();
}

criterion_group!(benches, load_100k);
criterion_main!(benches);
