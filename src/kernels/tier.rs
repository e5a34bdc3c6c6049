//! [`Tier`]: the CPU instruction-set tiers every fast kernel is written for,
//! and the one run-time detection they all use.

use std::sync::OnceLock;

/// Instruction-set tiers, lowest first. A kernel given a tier above what the
/// CPU has runs at the best available one ([`Tier::capped`]); entry points
/// that run one named path ([`sparse_matmul`](super::sparse::sparse_matmul))
/// reject a tier the CPU lacks ([`Tier::is_available`]).
///
/// ```
/// use squish::kernels::Tier;
/// let best = Tier::detect();
/// assert!(Tier::Portable.is_available());
/// assert_eq!(Tier::Avx512Vnni.capped(), best.min(Tier::Avx512Vnni));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2 + FMA.
    Avx2,
    /// AVX-512 F/BW/VL + BMI2 + POPCNT + FMA.
    Avx512,
    /// AVX-512 with VNNI (integer dot products).
    Avx512Vnni,
}

impl Tier {
    /// Every tier, lowest first (for tests that run each available path).
    pub const ALL: [Tier; 4] = [Tier::Portable, Tier::Avx2, Tier::Avx512, Tier::Avx512Vnni];

    /// The best tier this CPU supports (detected once, then cached), at
    /// most the one named by the environment variable `SQUISH_MAX_TIER`
    /// (`portable`, `avx2`, `avx512` or `avx512vnni`; like oneDNN's
    /// `ONEDNN_MAX_CPU_ISA`), so that a machine can run, test and measure
    /// the paths of a smaller CPU. Other values are ignored.
    pub fn detect() -> Tier {
        static BEST: OnceLock<Tier> = OnceLock::new();
        *BEST.get_or_init(|| {
            let cap = std::env::var("SQUISH_MAX_TIER").ok();
            detect_uncached().min(
                cap.as_deref()
                    .and_then(Tier::named)
                    .unwrap_or(Tier::Avx512Vnni),
            )
        })
    }

    /// The tier a `SQUISH_MAX_TIER` value names (case-insensitive).
    ///
    /// ```
    /// use squish::kernels::Tier;
    /// assert_eq!(Tier::named("AVX2"), Some(Tier::Avx2));
    /// assert_eq!(Tier::named("sse4"), None);
    /// ```
    pub fn named(name: &str) -> Option<Tier> {
        match name.to_ascii_lowercase().as_str() {
            "portable" => Some(Tier::Portable),
            "avx2" => Some(Tier::Avx2),
            "avx512" => Some(Tier::Avx512),
            "avx512vnni" => Some(Tier::Avx512Vnni),
            _ => None,
        }
    }

    /// `self`, capped at what the CPU supports.
    pub fn capped(self) -> Tier {
        self.min(Tier::detect())
    }

    /// Whether this CPU can run the tier.
    pub fn is_available(self) -> bool {
        self <= Tier::detect()
    }
}

fn detect_uncached() -> Tier {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        let avx512 = has!("avx512f")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("bmi2")
            && has!("popcnt")
            && has!("fma")
            && has!("avx2");
        if avx512 && has!("avx512vnni") {
            return Tier::Avx512Vnni;
        }
        if avx512 {
            return Tier::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Tier::Avx2;
        }
    }
    Tier::Portable
}
