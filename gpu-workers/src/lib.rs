//! The AI painter: candle workers that consume generation requests and emit exactly one
//! terminal result event per request. Not built yet; the crate exists so the workspace has
//! its final shape and the dependency direction (workers depend on `schemas` only) is fixed.

pub mod diffusion;
