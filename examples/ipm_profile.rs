//! Scratch: profile the IPM on TG119 (verbose).
use std::path::Path;
use std::time::Instant;
fn main() -> rtopt::Result<()> {
    let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default())?;
    let protocol =
        rtopt::optimize::protocol::Protocol::load(Path::new("data/protocols/tg119.toml"))?;
    let mut opts = rtopt::plan::optimisation_defaults();
    opts.verbose = std::env::var("V").is_ok();
    let mut prepared = rtopt::plan::Planner::new(case, protocol)
        .with_optimize_options(opts.clone())
        .prepare()?;
    let t = Instant::now();
    let r = prepared.optimise(&rtopt::plan::Variant::default())?;
    eprintln!(
        "optimise {:.2} s {:?}",
        t.elapsed().as_secs_f64(),
        r.fidelity
    );
    Ok(())
}
