//! Key choosers with YCSB's request distributions: uniform, zipfian (scrambled
//! so hot keys spread over the key space) and latest (zipfian over the most
//! recently inserted keys).
//!
//! The zipfian generator is YCSB's `ZipfianGenerator`
//! (core/src/main/java/site/ycsb/generator/ZipfianGenerator.java), which
//! implements the rejection-free method of Gray et al., "Quickly Generating
//! Billion-Record Synthetic Databases", SIGMOD 1994. Like YCSB it grows its
//! item count incrementally (adding the new terms of zeta) so "latest" can
//! follow inserts without recomputing zeta from scratch.
//!
//! One deliberate difference: YCSB's `ScrambledZipfianGenerator` draws from a
//! fixed space of 10^10 items and folds the hash into the key count, which
//! flattens the skew for small key counts; here the draw is over exactly
//! `key_count` items and the FNV-1a hash only permutes which key is hot, so
//! theta means the same thing whatever the key count.
//!
//! Invariants:
//! - every chooser returns an index in `0..count` for the count it was asked
//!   about (clamped against floating-point rounding);
//! - the same seed gives the same sequence.

use rand::Rng;

/// Zipfian draws of ranks `0..count`, rank 0 the most popular.
#[derive(Debug, Clone)]
pub struct Zipfian {
    count: u64,
    theta: f64,
    alpha: f64,
    zeta2theta: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// Panics if `count` is 0 or `theta` is not in (0, 1): the formula
    /// divides by `1 - theta` (a caller bug; the CLI validates both).
    pub fn new(count: u64, theta: f64) -> Zipfian {
        assert!(count > 0, "a zipfian needs at least one item");
        assert!(
            theta > 0.0 && theta < 1.0,
            "zipfian theta must be in (0, 1), got {theta}"
        );
        let zeta2theta = zeta_range(0, 2, theta, 0.0);
        let zetan = zeta_range(0, count, theta, 0.0);
        let mut zipfian = Zipfian {
            count,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta2theta,
            zetan,
            eta: 0.0,
        };
        zipfian.eta = zipfian.eta_for(count);
        zipfian
    }

    fn eta_for(&self, count: u64) -> f64 {
        (1.0 - (2.0 / count as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2theta / self.zetan)
    }

    /// The number of items drawn from.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Extends the item space to `count` items (never shrinks it), adding
    /// only the new terms of zeta as YCSB does.
    pub fn grow(&mut self, count: u64) {
        if count <= self.count {
            return;
        }
        self.zetan = zeta_range(self.count, count, self.theta, self.zetan);
        self.count = count;
        self.eta = self.eta_for(count);
    }

    /// A rank in `0..count`.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.gen();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.count - 1);
        }
        let rank = (self.count as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.count - 1)
    }
}

/// Sum of 1/(i+1)^theta for i in `from..to`, added to `initial`.
fn zeta_range(from: u64, to: u64, theta: f64, initial: f64) -> f64 {
    (from..to).fold(initial, |sum, i| sum + 1.0 / ((i + 1) as f64).powf(theta))
}

/// FNV-1a, 64 bits, over the little-endian bytes of `value` (YCSB's
/// `Utils.fnvhash64` serves the same purpose: a cheap, fixed permutation).
pub fn fnv1a64(value: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    value.to_le_bytes().iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// Which keys requests go to.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Distribution {
    Uniform,
    Zipfian { theta: f64 },
    Latest { theta: f64 },
}

/// A per-worker key chooser for one `Distribution`.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    Uniform,
    /// Zipfian ranks scrambled by FNV-1a over the key count.
    Zipfian(Zipfian),
    /// `count - 1 - zipfian rank`: the newest keys are the hottest.
    Latest(Zipfian),
}

impl KeyChooser {
    /// A chooser over `key_count` keys. Computing zeta is O(key_count), so
    /// build one and clone it for each worker.
    pub fn new(distribution: Distribution, key_count: u64) -> KeyChooser {
        match distribution {
            Distribution::Uniform => KeyChooser::Uniform,
            Distribution::Zipfian { theta } => KeyChooser::Zipfian(Zipfian::new(key_count, theta)),
            Distribution::Latest { theta } => KeyChooser::Latest(Zipfian::new(key_count, theta)),
        }
    }

    /// A key index in `0..live_count`. `live_count` is the number of keys
    /// that exist now (it grows with inserts); zipfian keeps its initial key
    /// space, as YCSB does, while latest follows the inserts.
    pub fn next(&mut self, rng: &mut impl Rng, live_count: u64) -> u64 {
        assert!(live_count > 0, "no keys to choose from");
        match self {
            KeyChooser::Uniform => rng.gen_range(0..live_count),
            KeyChooser::Zipfian(zipfian) => {
                let rank = zipfian.sample(rng);
                fnv1a64(rank) % zipfian.count().min(live_count)
            }
            KeyChooser::Latest(zipfian) => {
                zipfian.grow(live_count);
                let rank = zipfian.sample(rng).min(live_count - 1);
                live_count - 1 - rank
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const DRAWS: usize = 200_000;

    fn counts(chooser: &mut KeyChooser, count: u64, seed: u64) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut counts = vec![0u64; count as usize];
        for _ in 0..DRAWS {
            let index = chooser.next(&mut rng, count);
            counts[index as usize] += 1;
        }
        counts
    }

    #[test]
    fn zipfian_rank_frequencies_follow_the_power_law() {
        // P(rank k) = 1 / ((k+1)^theta * zeta(n)). Gray's method is exact for
        // ranks 0 and 1 and approximates the rest with a continuous curve
        // (rank 2 comes out ~18% high), so single ranks are checked where the
        // method is exact and cumulative shares elsewhere.
        let (count, theta) = (1000u64, 0.99);
        let zipfian = Zipfian::new(count, theta);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut by_rank = vec![0u64; count as usize];
        for _ in 0..DRAWS {
            by_rank[zipfian.sample(&mut rng) as usize] += 1;
        }
        let zetan = zeta_range(0, count, theta, 0.0);
        let expected = |rank: usize| DRAWS as f64 / ((rank + 1) as f64).powf(theta) / zetan;
        let close = |got: f64, expected: f64, tolerance: f64, what: &str| {
            assert!(
                (got - expected).abs() / expected < tolerance,
                "{what}: {got} draws, expected about {expected:.0}"
            );
        };
        close(by_rank[0] as f64, expected(0), 0.03, "rank 0");
        close(by_rank[1] as f64, expected(1), 0.03, "rank 1");
        close(by_rank[9] as f64, expected(9), 0.1, "rank 9");
        for top in [10usize, 100, 500] {
            let got = by_rank[..top].iter().sum::<u64>() as f64;
            let want = (0..top).map(expected).sum::<f64>();
            close(got, want, 0.05, &format!("top {top} ranks"));
        }
    }

    #[test]
    fn scrambled_zipfian_is_skewed_and_uniform_is_not() {
        let count = 1000u64;
        let share_of_top_tenth = |counts: &mut Vec<u64>| {
            counts.sort_unstable_by(|a, b| b.cmp(a));
            counts[..counts.len() / 10].iter().sum::<u64>() as f64 / DRAWS as f64
        };
        let mut zipf = KeyChooser::new(Distribution::Zipfian { theta: 0.99 }, count);
        let mut uniform = KeyChooser::new(Distribution::Uniform, count);
        let zipf_share = share_of_top_tenth(&mut counts(&mut zipf, count, 1));
        let uniform_share = share_of_top_tenth(&mut counts(&mut uniform, count, 1));
        // With theta 0.99 over 1000 keys the hottest 10% take about 70%.
        assert!(zipf_share > 0.6, "zipfian top 10% share {zipf_share}");
        assert!(
            uniform_share < 0.15,
            "uniform top 10% share {uniform_share}"
        );
        // Scrambling: the hottest key is not simply index 0.
        let zipf_counts = counts(&mut zipf, count, 2);
        let hottest = (0..count as usize).max_by_key(|i| zipf_counts[*i]);
        assert_eq!(hottest, Some((fnv1a64(0) % count) as usize));
    }

    #[test]
    fn latest_prefers_the_newest_keys_and_follows_growth() {
        let mut latest = KeyChooser::new(Distribution::Latest { theta: 0.99 }, 100);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut newest = 0;
        for _ in 0..10_000 {
            let index = latest.next(&mut rng, 500);
            assert!(index < 500);
            if index >= 490 {
                newest += 1;
            }
        }
        assert!(
            newest > 3000,
            "only {newest} of 10000 draws hit the newest 10 keys"
        );
    }

    #[test]
    fn grow_matches_a_fresh_generator() {
        let mut grown = Zipfian::new(10, 0.9);
        grown.grow(5000);
        let fresh = Zipfian::new(5000, 0.9);
        assert!((grown.zetan - fresh.zetan).abs() < 1e-9);
        assert!((grown.eta - fresh.eta).abs() < 1e-9);
    }

    #[test]
    fn same_seed_same_keys() {
        let chooser = KeyChooser::new(Distribution::Zipfian { theta: 0.99 }, 10_000);
        let draw = |seed| {
            let mut chooser = chooser.clone();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..100)
                .map(|_| chooser.next(&mut rng, 10_000))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }
}
