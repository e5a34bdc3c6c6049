//! The per-core L2 size that the cache policies are set against
//! ([`l2_bytes`]), detected once from the CPU.

use std::sync::OnceLock;

/// L2 size assumed where the CPU does not report one: the smallest per-core
/// L2 of the AVX2 servers measured (an AMD EPYC, 512 KiB).
pub const DEFAULT_L2_BYTES: usize = 512 << 10;

/// This CPU's per-core L2 size in bytes (detected once by CPUID, then
/// cached; [`DEFAULT_L2_BYTES`] where it reports none), or the value of the
/// environment variable `SQUISH_L2_BYTES` (like `SQUISH_MAX_TIER`, to run
/// and measure a smaller CPU's policies). Non-numbers and zero are ignored.
///
/// ```
/// let l2 = squish::kernels::cache::l2_bytes();
/// assert!(l2 >= 64 << 10, "{l2}");
/// ```
pub fn l2_bytes() -> usize {
    static L2: OnceLock<usize> = OnceLock::new();
    *L2.get_or_init(|| {
        std::env::var("SQUISH_L2_BYTES")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|&b: &usize| b > 0)
            .or_else(detect)
            .unwrap_or(DEFAULT_L2_BYTES)
    })
}

/// The L2 (data or unified) from CPUID's deterministic cache parameters
/// (leaf 4 on Intel, 0x8000_001D on AMD).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn detect() -> Option<usize> {
    use raw_cpuid::{CacheType, CpuId};
    CpuId::new().get_cache_parameters()?.find_map(|c| {
        let data = matches!(c.cache_type(), CacheType::Data | CacheType::Unified);
        (c.level() == 2 && data).then(|| {
            c.associativity() * c.physical_line_partitions() * c.coherency_line_size() * c.sets()
        })
    })
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn detect() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the kernel's own account of the same cache (Linux sysfs,
    /// which reads the same CPUID leaves independently).
    #[test]
    fn l2_agrees_with_sysfs() {
        let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
        let read = |i: usize, f: &str| std::fs::read_to_string(dir.join(format!("index{i}/{f}")));
        let l2 = (0..8).find_map(|i| {
            let level = read(i, "level").ok()?;
            let kind = read(i, "type").ok()?;
            (level.trim() == "2" && kind.trim() != "Instruction").then(|| read(i, "size").ok())?
        });
        let Some(size) = l2 else {
            return; // not Linux, or no cache description
        };
        let kib: usize = size.trim().trim_end_matches('K').parse().unwrap();
        assert_eq!(detect(), Some(kib << 10));
        if std::env::var("SQUISH_L2_BYTES").is_err() {
            assert_eq!(l2_bytes(), kib << 10);
        }
    }
}
