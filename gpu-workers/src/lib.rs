//! The AI painter: candle networks and the workers that consume generation requests and emit
//! exactly one terminal result event per request. CUDA sits behind the `cuda` feature; the
//! default build runs on the CPU.

pub mod device;
pub mod style;
