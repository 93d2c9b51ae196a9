//! The restart delay: exponential, capped, jittered.
//!
//! The n-th consecutive restart without a stable run waits
//! `min(max, initial × multiplier^(n−1)) × (1 ± jitter)`, capped at `max` again; a restart after a
//! stable run (n = 0) is immediate. supervisord has no delay at all for a program that crashes
//! after it was RUNNING, and restarts it in a busy loop.

use std::time::Duration;

use crate::config::Backoff;

/// The delay before restart number `streak`; `sample` is a random value in -1.0..=1.0.
pub fn delay(b: &Backoff, streak: u32, sample: f64) -> Duration {
    if streak == 0 {
        return Duration::ZERO;
    }
    let max = b.max.as_secs_f64();
    let exponent = i32::try_from(streak - 1).unwrap_or(i32::MAX);
    let base = (b.initial.as_secs_f64() * b.multiplier.powi(exponent)).min(max);
    let jittered = base * (1.0 + b.jitter * sample.clamp(-1.0, 1.0));
    Duration::try_from_secs_f64(jittered.clamp(0.0, max)).unwrap_or(b.max)
}

/// A small xorshift generator for jitter: no cryptographic needs, no extra dependency.
#[derive(Debug)]
pub struct Jitter(u64);

impl Jitter {
    pub fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(t ^ (u64::from(std::process::id()) << 32) | 1)
    }

    /// The next sample in -1.0..=1.0.
    pub fn sample(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.5,
            reset: Duration::from_secs(10),
        }
    }

    #[test]
    fn grows_exponentially_and_caps() {
        let ms = |n| delay(&b(), n, 0.0).as_millis();
        assert_eq!(
            [ms(0), ms(1), ms(2), ms(3), ms(4), ms(5), ms(9)],
            [0, 100, 200, 400, 800, 1000, 1000]
        );
    }

    #[test]
    fn jitter_stretches_within_bounds() {
        assert_eq!(delay(&b(), 1, 1.0), Duration::from_millis(150));
        assert_eq!(delay(&b(), 1, -1.0), Duration::from_millis(50));
        // Never past max, whatever the sample.
        assert_eq!(delay(&b(), 5, 1.0), Duration::from_secs(1));
        let mut j = Jitter::seeded();
        for _ in 0..1000 {
            let s = j.sample();
            assert!((-1.0..=1.0).contains(&s), "{s}");
        }
    }

    #[test]
    fn huge_streaks_do_not_overflow() {
        assert_eq!(delay(&b(), u32::MAX, 0.0), Duration::from_secs(1));
    }
}
