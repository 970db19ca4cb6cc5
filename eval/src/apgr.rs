//! Routing quality as in RouteLLM's evaluation: send the prompts a router
//! scores highest to the strong model, the rest to the weak one, and watch
//! quality climb from the weak model's to the strong model's as the share of
//! strong calls grows. PGR (performance gap recovered) at a share is
//! `(quality − weak) / (strong − weak)`; APGR is the area under the PGR
//! curve over shares from 0 to 1: 0.5 for a random router, 1.0 for one that
//! recovers the whole gap with no strong call wasted.
//!
//! Prompts with equal scores are taken as one block in random order: the
//! curve is a straight line across them, so a router cannot gain by ties.

use crate::random::Random;

/// The PGR curve: points `(share of strong calls, PGR)` from (0, 0) to (1, 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub points: Vec<(f64, f64)>,
}

/// A prompt's router score and the two models' results on it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub score: f64,
    pub weak: f64,
    pub strong: f64,
}

impl Curve {
    /// The curve of routing `outcomes` by score; `None` when the strong
    /// model is not better overall (there is no gap to recover) or a score
    /// is not a number (it has no place in the order).
    pub fn of(outcomes: &[Outcome]) -> Option<Curve> {
        if outcomes.iter().any(|outcome| outcome.score.is_nan()) {
            return None;
        }
        let total = outcomes.len() as f64;
        let weak_total: f64 = outcomes.iter().map(|outcome| outcome.weak).sum();
        let strong_total: f64 = outcomes.iter().map(|outcome| outcome.strong).sum();
        let gap = strong_total - weak_total;
        if outcomes.is_empty() || gap <= f64::EPSILON {
            return None;
        }
        let mut sorted = outcomes.to_vec();
        sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut points = vec![(0.0, 0.0)];
        let (mut routed, mut gained) = (0usize, 0.0);
        for block in sorted.chunk_by(|a, b| a.score == b.score) {
            routed += block.len();
            gained += block.iter().map(|outcome| outcome.strong - outcome.weak).sum::<f64>();
            points.push((routed as f64 / total, gained / gap));
        }
        Some(Curve { points })
    }

    /// Area under the curve (trapezoids: straight lines across tie blocks).
    pub fn apgr(&self) -> f64 {
        self.points
            .windows(2)
            .map(|pair| (pair[1].0 - pair[0].0) * (pair[0].1 + pair[1].1) / 2.0)
            .sum()
    }

    /// PGR at a share of strong calls, read off the curve.
    pub fn pgr_at(&self, share: f64) -> f64 {
        for pair in self.points.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            if share <= x1 {
                return if x1 > x0 {
                    y0 + (y1 - y0) * (share - x0) / (x1 - x0)
                } else {
                    y1
                };
            }
        }
        self.points.last().map_or(0.0, |point| point.1)
    }

    /// The smallest share of strong calls that recovers `target` of the gap.
    pub fn share_for(&self, target: f64) -> Option<f64> {
        for pair in self.points.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            if y1 >= target {
                return Some(if y1 > y0 {
                    x0 + (x1 - x0) * (target - y0).max(0.0) / (y1 - y0)
                } else {
                    x0
                });
            }
        }
        None
    }
}

/// How much better one router is than another on the same prompts, with
/// the spread a different sample of prompts would give.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// APGR of the first router minus the second's, on all the prompts.
    pub observed: f64,
    /// 2.5th and 97.5th percentiles of that difference over the resamples.
    pub low: f64,
    pub high: f64,
    /// Share of resamples in which the first router's APGR was higher.
    pub wins: f64,
}

/// Paired bootstrap of `APGR(first) - APGR(second)`: `rounds` resamples of
/// the prompts (with replacement, the same prompts for both routers, which
/// score them in the same order of `first` and `second`). `None` when the
/// two lists differ in length or a curve has no gap to recover.
pub fn paired_bootstrap(first: &[Outcome], second: &[Outcome], rounds: usize, seed: u64) -> Option<Difference> {
    if first.len() != second.len() || rounds == 0 {
        return None;
    }
    let observed = Curve::of(first)?.apgr() - Curve::of(second)?.apgr();
    let mut random = Random(seed | 1);
    let mut differences = Vec::with_capacity(rounds);
    let (mut sample_first, mut sample_second) = (Vec::with_capacity(first.len()), Vec::with_capacity(first.len()));
    for _ in 0..rounds {
        sample_first.clear();
        sample_second.clear();
        for _ in 0..first.len() {
            let pick = random.below(first.len());
            sample_first.push(first[pick]);
            sample_second.push(second[pick]);
        }
        // A resample without a gap to recover says nothing either way.
        if let (Some(a), Some(b)) = (Curve::of(&sample_first), Curve::of(&sample_second)) {
            differences.push(a.apgr() - b.apgr());
        }
    }
    if differences.is_empty() {
        return None;
    }
    differences.sort_by(f64::total_cmp);
    let at = |quantile: f64| differences[((differences.len() - 1) as f64 * quantile).round() as usize];
    let wins = differences.iter().filter(|difference| **difference > 0.0).count() as f64 / differences.len() as f64;
    Some(Difference {
        observed,
        low: at(0.025),
        high: at(0.975),
        wins,
    })
}

/// Colours of the plotted routers, in order.
const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];

/// An SVG plot of PGR against the share of strong calls, one line per
/// `(label, curve)`, with the random router's diagonal.
pub fn svg(title: &str, curves: &[(String, Curve)]) -> String {
    const SIZE: f64 = 360.0;
    const LEFT: f64 = 60.0;
    const TOP: f64 = 40.0;
    let x = |share: f64| LEFT + share * SIZE;
    let y = |pgr: f64| TOP + (1.0 - pgr.clamp(-0.1, 1.1)) * SIZE;
    // About 7 px a character of legend text, after the line sample.
    let longest = curves.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0);
    let legend_width = 80.0 + 7.0 * (longest + 14) as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        LEFT + SIZE + legend_width,
        TOP + SIZE + 50.0,
        LEFT + SIZE / 2.0,
        escape(title)
    );
    for tick in 0..=5 {
        let value = f64::from(tick) / 5.0;
        out.push_str(&format!(
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0}\" y=\"{3}\" text-anchor=\"middle\">{4:.0}%</text>\n\
             <line x1=\"{5}\" y1=\"{6}\" x2=\"{7}\" y2=\"{6}\" stroke=\"#ddd\"/><text x=\"{8}\" y=\"{9}\" text-anchor=\"end\">{10:.1}</text>\n",
            x(value), y(0.0), y(1.0), y(0.0) + 16.0, value * 100.0,
            x(0.0), y(value), x(1.0), x(0.0) - 6.0, y(value) + 4.0, value
        ));
    }
    out.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">share of calls to the strong model</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {2})\">performance gap recovered</text>\n\
         <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"4 4\"/>\n",
        x(0.5), y(0.0) + 36.0, y(0.5), x(0.0), y(0.0), x(1.0), y(1.0)
    ));
    for (position, (label, curve)) in curves.iter().enumerate() {
        let colour = COLOURS[position % COLOURS.len()];
        let points: Vec<String> = curve
            .points
            .iter()
            .map(|(share, pgr)| format!("{:.1},{:.1}", x(*share), y(*pgr)))
            .collect();
        let legend_y = TOP + 10.0 + 20.0 * position as f64;
        out.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <line x1=\"{}\" y1=\"{legend_y}\" x2=\"{}\" y2=\"{legend_y}\" stroke=\"{colour}\" stroke-width=\"2\"/>\
             <text x=\"{}\" y=\"{}\">{} (APGR {:.3})</text>\n",
            points.join(" "),
            x(1.0) + 20.0,
            x(1.0) + 44.0,
            x(1.0) + 50.0,
            legend_y + 4.0,
            escape(label),
            curve.apgr()
        ));
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(rows: &[(f64, f64, f64)]) -> Vec<Outcome> {
        rows.iter()
            .map(|&(score, weak, strong)| Outcome { score, weak, strong })
            .collect()
    }

    #[test]
    fn a_perfect_router_sends_the_prompts_the_weak_model_fails_first() {
        // Two of four prompts need the strong model; it scores them highest.
        let curve = Curve::of(&outcomes(&[
            (0.9, 0.0, 1.0),
            (0.8, 0.0, 1.0),
            (0.2, 1.0, 1.0),
            (0.1, 1.0, 1.0),
        ]))
        .unwrap();
        assert_eq!(curve.pgr_at(0.5), 1.0);
        assert!((curve.apgr() - 0.75).abs() < 1e-9, "{}", curve.apgr());
        assert_eq!(curve.share_for(0.5), Some(0.25));
    }

    #[test]
    fn a_router_that_scores_everything_alike_is_random() {
        let curve = Curve::of(&outcomes(&[
            (0.5, 0.0, 1.0),
            (0.5, 1.0, 1.0),
            (0.5, 0.0, 1.0),
            (0.5, 1.0, 1.0),
        ]))
        .unwrap();
        assert!((curve.apgr() - 0.5).abs() < 1e-9);
        assert!((curve.share_for(0.8).unwrap() - 0.8).abs() < 1e-9);
    }

    #[test]
    fn a_backwards_router_scores_below_random() {
        let curve = Curve::of(&outcomes(&[(0.1, 0.0, 1.0), (0.9, 1.0, 1.0)])).unwrap();
        assert!(curve.apgr() < 0.5);
        assert_eq!(curve.pgr_at(0.5), 0.0);
    }

    #[test]
    fn there_is_no_curve_without_a_gap() {
        assert!(Curve::of(&outcomes(&[(0.3, 1.0, 1.0), (0.6, 1.0, 0.5)])).is_none());
        assert!(Curve::of(&[]).is_none());
        assert!(Curve::of(&outcomes(&[(f64::NAN, 0.0, 1.0), (0.5, 0.0, 1.0)])).is_none());
    }

    /// Forty prompts, half of which only the strong model answers; `perfect`
    /// scores those higher, `blind` scores every prompt alike.
    fn perfect_and_blind() -> (Vec<Outcome>, Vec<Outcome>) {
        let rows: Vec<(f64, f64)> = (0..40)
            .map(|i| if i % 2 == 0 { (0.0, 1.0) } else { (1.0, 1.0) })
            .collect();
        let perfect = rows
            .iter()
            .map(|&(weak, strong)| Outcome {
                score: 1.0 - weak,
                weak,
                strong,
            })
            .collect();
        let blind = rows
            .iter()
            .map(|&(weak, strong)| Outcome {
                score: 0.5,
                weak,
                strong,
            })
            .collect();
        (perfect, blind)
    }

    #[test]
    fn the_bootstrap_separates_a_clear_winner_and_not_a_router_from_itself() {
        let (perfect, blind) = perfect_and_blind();
        let clear = paired_bootstrap(&perfect, &blind, 200, 7).unwrap();
        assert!((clear.observed - 0.25).abs() < 1e-9, "{clear:?}");
        assert!(
            clear.low > 0.0 && clear.high >= clear.low && clear.wins == 1.0,
            "{clear:?}"
        );
        let same = paired_bootstrap(&blind, &blind, 200, 7).unwrap();
        assert_eq!((same.observed, same.low, same.high, same.wins), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn the_bootstrap_needs_the_same_prompts_on_both_sides() {
        let (perfect, blind) = perfect_and_blind();
        assert_eq!(paired_bootstrap(&perfect, &blind[1..], 200, 7), None);
        assert_eq!(paired_bootstrap(&perfect, &blind, 0, 7), None);
    }

    #[test]
    fn the_plot_has_one_line_per_router_and_escapes_labels() {
        let curve = Curve::of(&outcomes(&[(0.9, 0.0, 1.0), (0.1, 1.0, 1.0)])).unwrap();
        let plot = svg("math <val>", &[("new".into(), curve.clone()), ("length".into(), curve)]);
        assert_eq!(plot.matches("<polyline").count(), 2);
        assert!(plot.contains("math &lt;val&gt;"));
        assert!(plot.starts_with("<svg") && plot.ends_with("</svg>\n"));
    }
}
