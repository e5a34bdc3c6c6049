//! [`Prepacked`]: where a kernel keeps its own copy of a matrix's codes,
//! repacked once for its instructions (like PyTorch's and ggml's prepacked
//! weights), beside the stored codes.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// One slot per kind of kept copy: the VNNI panels of dense blocks and of
/// N:M rows, and the decoded f32 copies of blocks and of N:M rows.
const SLOTS: usize = 4;

/// Slots filled on first use by the kernels that need them, then shared by
/// every clone of the values. They hold derived data: no part in equality,
/// in the byte accounting or in files, and the codes they were built from
/// never change (values are immutable once built).
#[derive(Clone, Default)]
pub(crate) struct Prepacked(OnceLock<Box<Slots>>);

/// The slots, allocated on the first copy (most values never have one).
type Slots = [OnceLock<Arc<dyn Any + Send + Sync>>; SLOTS];

impl Prepacked {
    /// The copy of type `T`, built by `init` on first use. Each type is
    /// filled and read by one kernel; a slot holding another kernel's type
    /// is passed over (a test may run two tiers' kernels on one matrix).
    pub(crate) fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> &T {
        let mut init = Some(init);
        for slot in self.0.get_or_init(Default::default).iter() {
            // `init` runs at most once: only in the slot it then fills.
            let held = slot.get_or_init(|| Arc::new(init.take().expect("not yet run")()));
            if let Some(t) = held.downcast_ref::<T>() {
                return t;
            }
        }
        unreachable!("{SLOTS} slots hold every kind of kept copy")
    }
}

impl PartialEq for Prepacked {
    /// Always equal: the slot holds what the codes determine.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl fmt::Debug for Prepacked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots = self.0.get().map_or(&[][..], |s| &s[..]);
        let filled = slots.iter().filter(|s| s.get().is_some()).count();
        write!(f, "Prepacked({filled} filled)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each type gets its own slot, built once and shared by clones, and
    /// filling one type never disturbs another (no panic when two
    /// kernels keep copies of one matrix).
    #[test]
    fn each_kind_of_copy_has_its_own_slot() {
        let p = Prepacked::default();
        assert_eq!(*p.get_or_init(|| 7u32), 7);
        assert_eq!(p.get_or_init(|| String::from("copy")), "copy");
        let q = p.clone();
        assert_eq!(*q.get_or_init(|| 9u32), 7, "built once, kept by clones");
        assert_eq!(*p.get_or_init(|| 1.5f64), 1.5);
        assert_eq!(*p.get_or_init(|| [1u8; 2]), [1, 1]);
        assert_eq!(*p.get_or_init(|| 8u32), 7);
        assert_eq!(format!("{p:?}"), "Prepacked(4 filled)");
    }
}
