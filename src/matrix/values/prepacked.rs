//! [`Prepacked`]: where a kernel keeps its own copy of a matrix's codes,
//! repacked once for its instructions (like PyTorch's and ggml's prepacked
//! weights), beside the stored codes.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// A slot filled on first use by the kernel that needs it, then shared by
/// every clone of the values. It is derived data: it takes no part in
/// equality, in the byte accounting or in files, and the codes it was
/// built from never change (values are immutable once built).
#[derive(Clone, Default)]
pub(crate) struct Prepacked(OnceLock<Arc<dyn Any + Send + Sync>>);

impl Prepacked {
    /// The slot's content, built by `init` on first use; one slot holds
    /// one type (the kernel that fills it is the only one that reads it).
    pub(crate) fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> &T {
        self.0
            .get_or_init(|| Arc::new(init()))
            .downcast_ref::<T>()
            .expect("a slot is filled and read by one kernel, with one type")
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
        let state = if self.0.get().is_some() {
            "filled"
        } else {
            "empty"
        };
        write!(f, "Prepacked({state})")
    }
}
