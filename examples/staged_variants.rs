//! Prepare TG119 once, then optimise three variants through the staged API (issue 15): the
//! influence matrix is built once, each variant only re-solves. An observer counts solver
//! iterations per variant, and a fourth solve is cancelled from the observer at its second
//! iteration to show that cancellation stops a solve within one iteration.
//!
//! `cargo run --release --example staged_variants`

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rtopt::control::{CancelToken, Control};
use rtopt::optimize::observer::SolverIteration;
use rtopt::plan::{PlanObserver, PlanStage, Planner, Variant};

/// Counts solver iterations and cancels the token once `cancel_at` is reached (0: never).
#[derive(Default)]
struct Counter {
    iterations: AtomicUsize,
    cancel_at: AtomicUsize,
    token: CancelToken,
}

impl PlanObserver for Counter {
    fn stage_finished(&self, stage: PlanStage, seconds: f64, summary: &str) {
        eprintln!("  {stage:<22} {seconds:>6.2} s  {summary}");
    }
    fn solver_iteration(&self, _it: &SolverIteration) -> Control {
        let n = self.iterations.fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.cancel_at.load(Ordering::SeqCst);
        if at > 0 && n >= at {
            self.token.cancel();
        }
        Control::Continue
    }
}

fn main() -> rtopt::Result<()> {
    let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default())?;
    let protocol =
        rtopt::optimize::protocol::Protocol::load(Path::new("data/protocols/tg119.toml"))?;
    let counter = Arc::new(Counter::default());
    let t0 = Instant::now();
    let mut prepared = Planner::new(case, protocol)
        .with_observer(counter.clone())
        .with_cancel_token(counter.token.clone())
        .prepare()?;
    println!("prepared in {:.2} s", t0.elapsed().as_secs_f64());

    let variants = [
        Variant::new("as prescribed"),
        Variant::new("core sparing").weight("Core", "overdose", 3000.0),
        Variant::new("smoother target").weight("OuterTarget", "deviation", 300.0),
    ];
    println!(
        "{:<16} {:>10} {:>8} {:>14} {:>12}",
        "variant", "iterations", "solve s", "objective", "Core D10 Gy"
    );
    for v in &variants {
        counter.iterations.store(0, Ordering::SeqCst);
        let o = prepared.optimise(v)?;
        let d10 = o
            .result
            .goals
            .iter()
            .find(|g| g.structure == "Core" && g.description.contains("D10 <= 25"))
            .map(|g| g.achieved_gy)
            .unwrap_or(f64::NAN);
        println!(
            "{:<16} {:>10} {:>8.2} {:>14.4} {:>12.2}",
            v.name,
            counter.iterations.load(Ordering::SeqCst),
            o.seconds,
            o.result.objective,
            d10
        );
    }

    // Cancel from the observer at the second iteration: the solve ends there.
    counter.iterations.store(0, Ordering::SeqCst);
    counter.cancel_at.store(2, Ordering::SeqCst);
    match prepared.optimise(&Variant::new("cancelled")) {
        Err(rtopt::Error::Cancelled { stage }) => {
            let n = counter.iterations.load(Ordering::SeqCst);
            println!("cancelled during {stage} after {n} iterations");
            assert_eq!(n, 2, "the solve stops within one iteration of the cancel");
        }
        Err(e) => return Err(e),
        Ok(_) => panic!("the cancelled solve finished"),
    }
    Ok(())
}
