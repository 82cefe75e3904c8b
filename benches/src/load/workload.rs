//! What requests a run sends: the operation mix (SET/GET by ratio or a YCSB
//! preset), which keys (see `zipf`), and key and value sizes.
//!
//! YCSB presets follow YCSB's workloads/workload{a..f} files, with one value
//! of `value_size` bytes per key instead of YCSB's ten fields:
//!
//! | preset | mix | distribution |
//! |---|---|---|
//! | A | 50% read, 50% update | zipfian |
//! | B | 95% read, 5% update | zipfian |
//! | C | 100% read | zipfian |
//! | D | 95% read, 5% insert | latest |
//! | E | 95% scan (length uniform in 1..=scan_length_max), 5% insert | zipfian |
//! | F | 50% read, 50% read-modify-write (get, then put of the same key) | zipfian |
//!
//! Invariants:
//! - key `i` is always the same bytes (its size too, for a size range), so a
//!   prefilled key space and later reads agree;
//! - keys of different indexes differ: the decimal index is zero-padded
//!   inside the key, never truncated (a key grows past `key_size` if its
//!   index needs more digits);
//! - the mix's weights are non-negative and sum to a positive number.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use super::zipf::fnv1a64;

/// An operation as the load generator counts it. A read-modify-write is one
/// operation of two requests; an insert is a put of a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Get,
    Set,
    Insert,
    Scan,
    Rmw,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [
        OpKind::Get,
        OpKind::Set,
        OpKind::Insert,
        OpKind::Scan,
        OpKind::Rmw,
    ];

    /// Position in `ALL`, for per-kind arrays.
    pub fn index(self) -> usize {
        match self {
            OpKind::Get => 0,
            OpKind::Set => 1,
            OpKind::Insert => 2,
            OpKind::Scan => 3,
            OpKind::Rmw => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::Set => "set",
            OpKind::Insert => "insert",
            OpKind::Scan => "scan",
            OpKind::Rmw => "rmw",
        }
    }
}

/// Relative weights of each operation kind.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Mix {
    pub get: f64,
    pub set: f64,
    pub insert: f64,
    pub scan: f64,
    pub rmw: f64,
}

impl Mix {
    /// `get_ratio` of gets, the rest sets. Panics outside [0, 1].
    pub fn get_set(get_ratio: f64) -> Mix {
        assert!(
            (0.0..=1.0).contains(&get_ratio),
            "get ratio {get_ratio} is not in [0, 1]"
        );
        Mix {
            get: get_ratio,
            set: 1.0 - get_ratio,
            insert: 0.0,
            scan: 0.0,
            rmw: 0.0,
        }
    }

    fn weights(&self) -> [f64; 5] {
        [self.get, self.set, self.insert, self.scan, self.rmw]
    }

    /// Draws one kind by weight.
    pub fn pick(&self, rng: &mut impl Rng) -> OpKind {
        let weights = self.weights();
        let total: f64 = weights.iter().sum();
        assert!(total > 0.0, "an operation mix needs a positive weight");
        let mut point = rng.gen::<f64>() * total;
        for (kind, weight) in OpKind::ALL.iter().zip(weights) {
            if point < weight {
                return *kind;
            }
            point -= weight;
        }
        // Rounding left `point` at the very top: the last kind with weight.
        OpKind::ALL
            .iter()
            .zip(weights)
            .rev()
            .find(|(_, weight)| *weight > 0.0)
            .map(|(kind, _)| *kind)
            .expect("total is positive, so some weight is")
    }

    /// Kinds with a positive weight.
    pub fn kinds(&self) -> Vec<OpKind> {
        OpKind::ALL
            .iter()
            .zip(self.weights())
            .filter(|(_, weight)| *weight > 0.0)
            .map(|(kind, _)| *kind)
            .collect()
    }
}

/// A workload preset as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Only SETs (like redis-benchmark -t set).
    Set,
    /// Only GETs (prefill with --load so they hit).
    Get,
    /// GETs and SETs, --get-ratio of them GETs.
    Mix,
    /// YCSB A: 50% read, 50% update, zipfian.
    #[value(name = "ycsb-a")]
    YcsbA,
    /// YCSB B: 95% read, 5% update, zipfian.
    #[value(name = "ycsb-b")]
    YcsbB,
    /// YCSB C: 100% read, zipfian.
    #[value(name = "ycsb-c")]
    YcsbC,
    /// YCSB D: 95% read, 5% insert, latest.
    #[value(name = "ycsb-d")]
    YcsbD,
    /// YCSB E: 95% scan, 5% insert, zipfian. Native protocol only.
    #[value(name = "ycsb-e")]
    YcsbE,
    /// YCSB F: 50% read, 50% read-modify-write, zipfian.
    #[value(name = "ycsb-f")]
    YcsbF,
}

impl Preset {
    /// The preset's mix; `get_ratio` applies to `Mix` only.
    pub fn mix(self, get_ratio: f64) -> Mix {
        let mix = |get, set, insert, scan, rmw| Mix {
            get,
            set,
            insert,
            scan,
            rmw,
        };
        match self {
            Preset::Set => Mix::get_set(0.0),
            Preset::Get => Mix::get_set(1.0),
            Preset::Mix => Mix::get_set(get_ratio),
            Preset::YcsbA => mix(0.5, 0.5, 0.0, 0.0, 0.0),
            Preset::YcsbB => mix(0.95, 0.05, 0.0, 0.0, 0.0),
            Preset::YcsbC => mix(1.0, 0.0, 0.0, 0.0, 0.0),
            Preset::YcsbD => mix(0.95, 0.0, 0.05, 0.0, 0.0),
            Preset::YcsbE => mix(0.0, 0.0, 0.05, 0.95, 0.0),
            Preset::YcsbF => mix(0.5, 0.0, 0.0, 0.0, 0.5),
        }
    }

    /// The preset's default key distribution name.
    pub fn default_distribution(self) -> DistributionName {
        match self {
            Preset::Set | Preset::Get | Preset::Mix => DistributionName::Uniform,
            Preset::YcsbD => DistributionName::Latest,
            _ => DistributionName::Zipfian,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Set => "set",
            Preset::Get => "get",
            Preset::Mix => "mix",
            Preset::YcsbA => "ycsb-a",
            Preset::YcsbB => "ycsb-b",
            Preset::YcsbC => "ycsb-c",
            Preset::YcsbD => "ycsb-d",
            Preset::YcsbE => "ycsb-e",
            Preset::YcsbF => "ycsb-f",
        }
    }
}

/// A distribution as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DistributionName {
    Uniform,
    Zipfian,
    Latest,
}

/// A size in bytes, fixed (`100`) or an inclusive range (`64-128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SizeRange {
    pub min: usize,
    pub max: usize,
}

impl SizeRange {
    pub fn fixed(size: usize) -> SizeRange {
        SizeRange {
            min: size,
            max: size,
        }
    }

    /// A size in the range, chosen by `hash` (any well-mixed number).
    fn pick_by(&self, hash: u64) -> usize {
        let span = (self.max - self.min) as u64 + 1;
        self.min + (hash % span) as usize
    }
}

impl FromStr for SizeRange {
    type Err = String;

    fn from_str(text: &str) -> Result<SizeRange, String> {
        let parse = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|e| format!("bad size {part:?}: {e}"))
        };
        let range = match text.split_once('-') {
            Some((min, max)) => SizeRange {
                min: parse(min)?,
                max: parse(max)?,
            },
            None => SizeRange::fixed(parse(text)?),
        };
        if range.min > range.max {
            return Err(format!("size range {text:?} has min above max"));
        }
        Ok(range)
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// Writes key `index` into `out` (cleared first): `k` then the decimal index
/// zero-padded to the key's size. The size is fixed, or for a range chosen by
/// a hash of the index so it is the same every time; a size too small for
/// the digits grows to fit them, keeping keys distinct.
pub fn write_key(key_size: SizeRange, index: u64, out: &mut Vec<u8>) {
    out.clear();
    let size = if key_size.min == key_size.max {
        key_size.min
    } else {
        key_size.pick_by(fnv1a64(index))
    };
    let mut digits = [0u8; 20];
    let mut rest = index;
    let mut digit_count = 0;
    loop {
        digits[digit_count] = b'0' + (rest % 10) as u8;
        digit_count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.push(b'k');
    let padding = size.saturating_sub(1 + digit_count);
    out.resize(1 + padding, b'0');
    out.extend(digits[..digit_count].iter().rev());
}

/// Bytes to slice values from: random, so a compressing server cannot cheat,
/// and shared so making a value costs no allocation.
#[derive(Debug, Clone)]
pub struct ValuePool {
    bytes: Vec<u8>,
    value_size: SizeRange,
}

/// Distinct starting offsets a value can have in the pool.
const VALUE_POOL_OFFSETS: usize = 64 * 1024;

impl ValuePool {
    pub fn new(value_size: SizeRange, rng: &mut impl Rng) -> ValuePool {
        let mut bytes = vec![0u8; VALUE_POOL_OFFSETS + value_size.max];
        rng.fill(bytes.as_mut_slice());
        ValuePool { bytes, value_size }
    }

    /// A value: a size from the range, at a random offset.
    pub fn value(&self, rng: &mut impl Rng) -> &[u8] {
        let size = if self.value_size.min == self.value_size.max {
            self.value_size.min
        } else {
            rng.gen_range(self.value_size.min..=self.value_size.max)
        };
        let offset = rng.gen_range(0..VALUE_POOL_OFFSETS);
        &self.bytes[offset..offset + size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn mix_ratios_hold() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let draws = 100_000;
        for (preset, get_ratio) in [
            (Preset::Mix, 0.9),
            (Preset::YcsbA, 0.0),
            (Preset::YcsbB, 0.0),
        ] {
            let mix = preset.mix(get_ratio);
            let mut counts = [0usize; 5];
            for _ in 0..draws {
                counts[mix.pick(&mut rng).index()] += 1;
            }
            let weights = mix.weights();
            let total: f64 = weights.iter().sum();
            for (count, weight) in counts.iter().zip(weights) {
                let expected = weight / total;
                let got = *count as f64 / draws as f64;
                assert!(
                    (got - expected).abs() < 0.01,
                    "{preset:?}: share {got} where {expected} was asked"
                );
            }
        }
    }

    #[test]
    fn presets_have_the_ycsb_mixes() {
        assert_eq!(Preset::YcsbC.mix(0.5).kinds(), vec![OpKind::Get]);
        assert_eq!(
            Preset::YcsbD.mix(0.5).kinds(),
            vec![OpKind::Get, OpKind::Insert]
        );
        assert_eq!(
            Preset::YcsbE.mix(0.5).kinds(),
            vec![OpKind::Insert, OpKind::Scan]
        );
        assert_eq!(
            Preset::YcsbF.mix(0.5).kinds(),
            vec![OpKind::Get, OpKind::Rmw]
        );
        assert_eq!(Preset::Set.mix(0.5).kinds(), vec![OpKind::Set]);
        assert_eq!(
            Preset::YcsbD.default_distribution(),
            DistributionName::Latest
        );
    }

    #[test]
    fn keys_have_their_size_and_stay_distinct() {
        let mut key = Vec::new();
        write_key(SizeRange::fixed(16), 42, &mut key);
        assert_eq!(key, b"k000000000000042");
        // Too small for the digits: grows rather than collides.
        write_key(SizeRange::fixed(3), 12345, &mut key);
        assert_eq!(key, b"k12345");
        let range = SizeRange { min: 10, max: 20 };
        let mut seen = std::collections::HashSet::new();
        let mut sizes = std::collections::HashSet::new();
        for index in 0..1000 {
            write_key(range, index, &mut key);
            assert!((10..=20).contains(&key.len()));
            sizes.insert(key.len());
            assert!(seen.insert(key.clone()), "key {index} repeats");
            let mut again = Vec::new();
            write_key(range, index, &mut again);
            assert_eq!(again, key, "key {index} is not stable");
        }
        assert!(sizes.len() > 5, "a size range should give several sizes");
    }

    #[test]
    fn size_ranges_parse() {
        assert_eq!("100".parse(), Ok(SizeRange::fixed(100)));
        assert_eq!("64-128".parse(), Ok(SizeRange { min: 64, max: 128 }));
        assert!("128-64".parse::<SizeRange>().is_err());
        assert!("x".parse::<SizeRange>().is_err());
        assert_eq!(SizeRange { min: 1, max: 2 }.to_string(), "1-2");
    }

    #[test]
    fn values_have_sizes_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let pool = ValuePool::new(SizeRange { min: 5, max: 9 }, &mut rng);
        for _ in 0..1000 {
            assert!((5..=9).contains(&pool.value(&mut rng).len()));
        }
    }
}
