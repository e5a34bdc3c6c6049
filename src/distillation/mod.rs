//! Knowledge distillation: training a small student from a large teacher.

mod distiller;

pub use distiller::Distiller;
