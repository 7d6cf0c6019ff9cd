//! How a Connector's rate adapts to its target's 429s, as pure steps: one runner's quota
//! takes them on its own rate ([`super::Quota`]); runners sharing a Connector take them on
//! the rate they publish to each other ([`super::ledger`]).

/// The rate never adapts below this share of the declared one.
pub const MIN_SHARE: f64 = 0.05;

/// The rate after a 429 and the rate learned from it: what got through since the previous
/// 429 (`measured`, per second) is what the target grants (a little more: its burst). Cut
/// to just under that, but at most by half (a quiet spell lets less through than the
/// target grants), or by 30% when nothing could be measured; never below [`MIN_SHARE`]
/// of the declared rate.
pub fn cut(rate: f64, declared: f64, measured: Option<f64>) -> (f64, f64) {
    let cut = measured.map_or(rate * 0.7, |m| (m.min(rate) * 0.97).max(rate * 0.5));
    // Without a measurement, the rate that was throttled bounds the grant.
    let learned = measured.map_or(rate, |_| cut / 0.97);
    (cut.max(declared * MIN_SHARE), learned)
}

/// The rate after a second of clean answers: quickly back to just under the rate learned
/// from the 429s (half the gap a second), slowly past it; never above the declared one.
pub fn probe(rate: f64, declared: f64, learned: Option<f64>) -> f64 {
    let step = match learned.map(|l| l * 0.97 - rate) {
        Some(gap) if gap <= 0.0 => declared * 0.01,
        Some(gap) => (gap / 2.0).max(declared * 0.05),
        None => declared * 0.05,
    };
    (rate + step).min(declared)
}
