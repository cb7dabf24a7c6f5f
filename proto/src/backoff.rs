//! Exponential backoff, shared by the emperor's vassal lifecycle (a vassal that keeps
//! failing) and the vassal master's worker policy (a worker that keeps failing to start).

use std::time::Duration;

/// `min(base * 2^attempt, max)`, saturating (`attempt` 0 is the first retry).
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    1u32.checked_shl(attempt)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(max, |d| d.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_table() {
        let ms = Duration::from_millis;
        let rows = [
            (ms(100), ms(10_000), 0, ms(100)),
            (ms(100), ms(10_000), 1, ms(200)),
            (ms(100), ms(10_000), 6, ms(6_400)),
            (ms(100), ms(10_000), 7, ms(10_000)),
            (ms(500), ms(30_000), 31, ms(30_000)),
            (ms(500), ms(30_000), 32, ms(30_000)),
            (ms(500), ms(30_000), u32::MAX, ms(30_000)),
            (Duration::MAX, Duration::MAX, 1, Duration::MAX),
        ];
        for (base, max, attempt, want) in rows {
            assert_eq!(
                backoff(base, max, attempt),
                want,
                "{base:?} {max:?} {attempt}"
            );
        }
    }
}
