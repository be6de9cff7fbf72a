//! Retry delays: exponential from a base to a cap, with full jitter, so that many tasks
//! failing together (a peer restarting) do not retry together.

use rand::Rng as _;

/// The delay before attempt `attempt + 1` after `attempt` failures (1-based): a random
/// time between half and all of `base_ms · 2^(attempt-1)`, capped at `max_ms`.
pub fn delay_ms(attempt: u32, base_ms: u64, max_ms: u64) -> u64 {
    let exp = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(32));
    let ceiling = exp.min(max_ms).max(1);
    rand::thread_rng().gen_range(ceiling / 2..=ceiling)
}

#[cfg(test)]
mod tests {
    use super::delay_ms;

    #[test]
    fn delays_grow_to_the_cap_and_are_spread() {
        for attempt in 1..40 {
            let d = delay_ms(attempt, 100, 10_000);
            let ceiling = (100u64 << (attempt - 1).min(32)).min(10_000);
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d}");
        }
        let spread: std::collections::BTreeSet<u64> =
            (0..50).map(|_| delay_ms(5, 100, 10_000)).collect();
        assert!(spread.len() > 10, "{spread:?}");
    }
}
