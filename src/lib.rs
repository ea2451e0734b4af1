//! Gallery: every role of the backend in one binary. The library holds the configuration and
//! the wiring, so tests can start any role in-process on port 0.

pub mod app;
pub mod config;
pub mod edge;
pub mod metrics;
pub mod supervise;
pub mod topics;

pub use app::{Roles, Running, StartError, start};
pub use config::{Config, ConfigError};
