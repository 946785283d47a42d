//! Plan the shipped TG-119 case through the library API and print the goal table.
//! `cargo run --release --example plan_tg119`
use std::path::Path;

fn main() -> rtopt::Result<()> {
    let case = rtopt::Case::load(Path::new("data/tg119"), &Default::default())?;
    let protocol =
        rtopt::optimize::protocol::Protocol::load(Path::new("data/protocols/tg119.toml"))?;
    let plan = rtopt::plan::Planner::new(case, protocol).run()?;
    print!("{}", plan.report.goal_table());
    plan.write(
        Path::new("rtopt-tg119-example"),
        rtopt::outputs::Replace::PreviousOutput,
    )
}
