//! Deliverability: every segment of a sequenced plan checked against the mechanical limits of
//! the machine file, so that a plan a linac or its record-and-verify system would refuse is
//! refused here first, by name (`docs/machine.md`).
//!
//! Checked per segment: each jaw within its travel including over-travel (IEC 61217 X1/X2,
//! Y1/Y2), X1 <= X2 and Y1 <= Y2; each leaf within the MLC's travel, bank A <= bank B with at
//! least the minimum leaf gap; the leaf span of each bank (all leaves of a bank ride on one
//! carriage); neighbouring pairs not interdigitating where the MLC forbids it; the open area
//! inside the jaws at least the machine's minimum; the segment's MU at least the minimum
//! given. Positions are mm in the isocentre plane of the beam-limiting-device frame.

use crate::beams::Beam;
use crate::sequencing::{open_area_mm2, DeliveryMachine, SequencedBeam};

/// Slack of the position checks, mm: below the 0.1 mm resolution of a control system and
/// above the rounding of the decimal strings the plan is written with.
pub const POSITION_TOLERANCE_MM: f64 = 1e-3;

/// Slack of the minimum-area check, mm^2: the decimal strings of a written plan (1e-6 mm per
/// leaf) move an area by far less.
pub const AREA_TOLERANCE_MM2: f64 = 0.01;

/// One limit a segment breaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// BeamNumber of the beam.
    pub beam_number: usize,
    /// Index of the segment within the beam (0-based).
    pub segment: usize,
    /// Which limit, in the machine file's words (`jaws.x1_max_mm`, `mlc.max_leaf_span_mm`, ...).
    pub limit: &'static str,
    /// What was found against the limit.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "beam {} segment {}: {} ({})",
            self.beam_number,
            self.segment + 1,
            self.detail,
            self.limit
        )
    }
}

/// Every limit broken by the segments of `sequenced` (empty: deliverable). `beams` gives the
/// beam numbers (`SequencedBeam::beam_index` indexes it); `min_segment_mu` is the smallest
/// accepted segment MU (the machine's, times any normalisation factor below 1 applied after
/// the minimum was enforced).
pub fn violations(
    machine: &DeliveryMachine,
    beams: &[Beam],
    sequenced: &[SequencedBeam],
    min_segment_mu: f64,
) -> Vec<Violation> {
    let tol = POSITION_TOLERANCE_MM;
    let j = &machine.jaws;
    let mlc = &machine.mlc;
    let mut out = Vec::new();
    for sb in sequenced {
        let beam_number = beams
            .get(sb.beam_index)
            .map_or(sb.beam_index + 1, |b| b.number);
        for (k, s) in sb.segments.iter().enumerate() {
            let mut push = |limit: &'static str, detail: String| {
                out.push(Violation {
                    beam_number,
                    segment: k,
                    limit,
                    detail,
                })
            };
            let within = |v: f64, [lo, hi]: [f64; 2]| v >= lo - tol && v <= hi + tol;
            for (name, v, range, limit) in [
                (
                    "X1",
                    s.jaw_x_mm[0],
                    j.x1_range_mm(),
                    "jaws.x_min_mm/x1_max_mm",
                ),
                (
                    "X2",
                    s.jaw_x_mm[1],
                    j.x2_range_mm(),
                    "jaws.x2_min_mm/x_max_mm",
                ),
                (
                    "Y1",
                    s.jaw_y_mm[0],
                    j.y1_range_mm(),
                    "jaws.y_min_mm/y1_max_mm",
                ),
                (
                    "Y2",
                    s.jaw_y_mm[1],
                    j.y2_range_mm(),
                    "jaws.y2_min_mm/y_max_mm",
                ),
            ] {
                if !within(v, range) {
                    push(
                        limit,
                        format!(
                            "jaw {name} at {v:.1} mm, outside its travel [{:.1}, {:.1}] mm",
                            range[0], range[1]
                        ),
                    );
                }
            }
            if !(s.jaw_x_mm[0] <= s.jaw_x_mm[1] + tol && s.jaw_y_mm[0] <= s.jaw_y_mm[1] + tol) {
                push(
                    "jaws",
                    format!(
                        "jaws cross: X [{:.1}, {:.1}] mm, Y [{:.1}, {:.1}] mm",
                        s.jaw_x_mm[0], s.jaw_x_mm[1], s.jaw_y_mm[0], s.jaw_y_mm[1]
                    ),
                );
            }
            let area = open_area_mm2(s, &sb.leaf_boundaries_mm);
            if area < machine.min_segment_area_mm2 - AREA_TOLERANCE_MM2 {
                push(
                    "min_segment_area_mm2",
                    format!(
                        "open area {area:.1} mm^2, below the minimum {:.1} mm^2",
                        machine.min_segment_area_mm2
                    ),
                );
            }
            if !(s.mu.is_finite() && s.mu >= min_segment_mu - 1e-9) {
                push(
                    "min_segment_mu",
                    format!("{:.3} MU, below the minimum {min_segment_mu:.3} MU", s.mu),
                );
            }
            if s.leaf_pairs_mm.is_empty() {
                continue;
            }
            let mut first_leaf_fault = None;
            for (p, &[a, b]) in s.leaf_pairs_mm.iter().enumerate() {
                let travel = [mlc.x_min_mm, mlc.x_max_mm];
                if !(within(a, travel) && within(b, travel)) {
                    first_leaf_fault.get_or_insert((
                        "mlc.x_min_mm/x_max_mm",
                        format!(
                            "leaf pair {} at [{a:.1}, {b:.1}] mm, outside the leaf travel [{:.1}, {:.1}] mm",
                            p + 1,
                            travel[0],
                            travel[1]
                        ),
                    ));
                } else if b - a < mlc.min_leaf_gap_mm - tol {
                    first_leaf_fault.get_or_insert((
                        "mlc.min_leaf_gap_mm",
                        format!(
                            "leaf pair {} gap {:.2} mm, below the minimum {:.2} mm",
                            p + 1,
                            b - a,
                            mlc.min_leaf_gap_mm
                        ),
                    ));
                }
            }
            if let Some((limit, detail)) = first_leaf_fault {
                push(limit, detail);
            }
            if let Some(span) = mlc.max_leaf_span_mm {
                for (bank, side) in [("A", 0usize), ("B", 1usize)] {
                    let (lo, hi) = s
                        .leaf_pairs_mm
                        .iter()
                        .fold((f64::MAX, f64::MIN), |(lo, hi), l| {
                            (lo.min(l[side]), hi.max(l[side]))
                        });
                    if hi - lo > span + tol {
                        push(
                            "mlc.max_leaf_span_mm",
                            format!(
                                "bank {bank} leaf span {:.1} mm, above the maximum {span:.1} mm",
                                hi - lo
                            ),
                        );
                    }
                }
            }
            if !mlc.interdigitation {
                for p in 0..s.leaf_pairs_mm.len().saturating_sub(1) {
                    let (a, b) = (s.leaf_pairs_mm[p], s.leaf_pairs_mm[p + 1]);
                    if a[0] > b[1] + tol || b[0] > a[1] + tol {
                        push(
                            "mlc.interdigitation",
                            format!(
                                "leaf pairs {} and {} interdigitate, which the MLC forbids",
                                p + 1,
                                p + 2
                            ),
                        );
                        break;
                    }
                }
            }
        }
    }
    out
}

/// Estimated time to deliver one beam, s: the beam-on time (MU at the machine's dose rate)
/// plus, between consecutive segments, the travel of the leaf that moves farthest at the
/// largest leaf speed (beam off while the leaves move, as in step-and-shoot). Jaw motion,
/// the beam-hold overhead per segment and the gantry's rotation between beams are not
/// included, so it is a lower bound. `None` when the machine file gives no leaf speed.
pub fn beam_delivery_time_s(machine: &DeliveryMachine, sb: &SequencedBeam) -> Option<f64> {
    let speed = machine.mlc.max_leaf_speed_mm_per_s?;
    let beam_on = sb.meterset_mu / (machine.dose_rate_mu_per_min / 60.0);
    let moving: f64 = sb
        .segments
        .windows(2)
        .map(|w| {
            w[0].leaf_pairs_mm
                .iter()
                .zip(&w[1].leaf_pairs_mm)
                .map(|(a, b)| (a[0] - b[0]).abs().max((a[1] - b[1]).abs()))
                .fold(0.0, f64::max)
                / speed
        })
        .sum();
    Some(beam_on + moving)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::MachineModel;
    use crate::sequencing::Segment;

    fn beam_with(segments: Vec<Segment>) -> SequencedBeam {
        SequencedBeam {
            beam_index: 0,
            segments,
            meterset_mu: 10.0,
            leaf_boundaries_mm: crate::machine::default_leaf_boundaries_mm(),
            transmission: Default::default(),
        }
    }

    /// A 40 x 40 mm square about `(cx, 0)`: pairs 26..=33 (0-based) open (5 mm leaves), the others
    /// parked closed under the X1 jaw.
    fn square(cx: f64, jaw_x: [f64; 2]) -> Segment {
        let b = crate::machine::default_leaf_boundaries_mm();
        let leaves = (0..60)
            .map(|p| {
                if b[p] >= -20.0 && b[p + 1] <= 20.0 {
                    [cx - 20.0, cx + 20.0]
                } else {
                    [jaw_x[0] - 0.5, jaw_x[0]]
                }
            })
            .collect();
        Segment {
            mu: 5.0,
            leaf_pairs_mm: leaves,
            jaw_x_mm: jaw_x,
            jaw_y_mm: [-20.0, 20.0],
        }
    }

    #[test]
    fn delivery_time_is_beam_on_plus_leaf_travel() {
        let m = DeliveryMachine::from(&MachineModel::default_6x());
        assert_eq!(m.mlc.max_leaf_speed_mm_per_s, Some(25.0));
        // Two 30 MU segments, the second shifted 25 mm: 60 MU at 600 MU/min is 6 s, the
        // leaves travel 25 mm at 25 mm/s in 1 s.
        let mut a = square(0.0, [-20.0, 20.0]);
        a.mu = 30.0;
        let mut b = square(25.0, [5.0, 45.0]);
        b.mu = 30.0;
        let mut sb = beam_with(vec![a, b]);
        sb.meterset_mu = 60.0;
        let t = beam_delivery_time_s(&m, &sb).expect("leaf speed given");
        assert!((t - 7.0).abs() < 1e-9, "{t}");
        let mut slow = m.clone();
        slow.mlc.max_leaf_speed_mm_per_s = None;
        assert_eq!(beam_delivery_time_s(&slow, &sb), None);
    }

    #[test]
    fn each_broken_limit_is_named() {
        let m = DeliveryMachine::from(&MachineModel::default_6x());
        // The shipped machine: X1 crosses the axis by at most 20 mm (Varian X jaw).
        assert_eq!(m.jaws.x1_range_mm(), [-200.0, 20.0]);
        let ok = square(0.0, [-20.0, 20.0]);
        assert!(violations(&m, &[], &[beam_with(vec![ok.clone()])], 1.0).is_empty());
        // A square at x = 50 mm: X1 at +30 mm is beyond its over-travel.
        let far = square(50.0, [30.0, 70.0]);
        let v = violations(&m, &[], &[beam_with(vec![ok.clone(), far])], 1.0);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].limit, "jaws.x_min_mm/x1_max_mm");
        assert_eq!(v[0].segment, 1);
        assert!(v[0].to_string().contains("jaw X1 at 30.0 mm"), "{}", v[0]);
        // The same aperture with X1 stopped at +20 mm is deliverable: the leaves shape it.
        let shaped = square(50.0, [20.0, 70.0]);
        assert!(violations(&m, &[], &[beam_with(vec![shaped])], 1.0).is_empty());
        // The mirrored limits: X2 beyond -20 mm, Y1 beyond +100 mm, Y2 beyond -100 mm.
        let mut mirrored = square(-50.0, [-70.0, -30.0]);
        let v = violations(&m, &[], &[beam_with(vec![mirrored.clone()])], 1.0);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].limit, "jaws.x2_min_mm/x_max_mm");
        mirrored = square(0.0, [-20.0, 20.0]);
        mirrored.jaw_y_mm = [120.0, 160.0];
        let v = violations(&m, &[], &[beam_with(vec![mirrored.clone()])], 1.0);
        assert!(
            v.iter().any(|x| x.limit == "jaws.y_min_mm/y1_max_mm"),
            "{v:?}"
        );
        mirrored.jaw_y_mm = [-160.0, -120.0];
        let v = violations(&m, &[], &[beam_with(vec![mirrored])], 1.0);
        assert!(
            v.iter().any(|x| x.limit == "jaws.y2_min_mm/y_max_mm"),
            "{v:?}"
        );
        // Too small, too few MU, too wide a span.
        let mut tiny = square(0.0, [-20.0, 20.0]);
        for l in tiny.leaf_pairs_mm.iter_mut().skip(28).take(4) {
            *l = [-1.0, 1.0];
        }
        for l in tiny.leaf_pairs_mm.iter_mut().filter(|l| l[1] - l[0] > 10.0) {
            *l = [-20.5, -20.0];
        }
        tiny.mu = 0.5;
        tiny.leaf_pairs_mm[0] = [150.0, 180.0];
        let limits: Vec<&str> = violations(&m, &[], &[beam_with(vec![tiny])], 1.0)
            .iter()
            .map(|v| v.limit)
            .collect();
        assert_eq!(
            limits,
            [
                "min_segment_area_mm2",
                "min_segment_mu",
                "mlc.max_leaf_span_mm",
                "mlc.max_leaf_span_mm"
            ]
        );
    }
}
