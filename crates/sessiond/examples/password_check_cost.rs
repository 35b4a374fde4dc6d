//! What one password-rule check costs at worst: zxcvbn on inputs built to
//! be slow for it (long, many dictionary words, mixed scripts), at every
//! length up to the 1024-character maximum. Prints the slowest check.
//!
//! `cargo run --release -p sessiond --example password_check_cost`

use std::time::{Duration, Instant};

use sessiond::password_rules::PasswordRules;

fn main() {
    let rules = PasswordRules::default();
    // The first check builds zxcvbn's dictionaries (once per process).
    let started = Instant::now();
    let _ = rules.check("warm-up-password", "alice");
    println!(
        "first_check_ms={:.3}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let pieces = [
        "password", "qwerty", "dragon", "monkey", "letmein", "1990", "abc", "Zz9!", "é", "ж", "漢",
    ];
    let mut slowest = (Duration::ZERO, 0usize, String::new());
    let mut checks = 0;
    for len in (8..=1024).step_by(8) {
        for (i, _) in pieces.iter().enumerate() {
            let input: String = pieces
                .iter()
                .cycle()
                .skip(i)
                .flat_map(|p| p.chars())
                .take(len)
                .collect();
            let started = Instant::now();
            let _ = rules.check(&input, "alice");
            let took = started.elapsed();
            checks += 1;
            if took > slowest.0 {
                slowest = (took, len, input.chars().take(24).collect());
            }
        }
    }
    println!(
        "checks={checks} slowest_ms={:.3} at_length={} starting={:?}",
        slowest.0.as_secs_f64() * 1000.0,
        slowest.1,
        slowest.2
    );
}
