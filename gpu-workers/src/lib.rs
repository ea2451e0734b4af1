//! The AI painter: candle networks and the workers that consume generation requests and emit
//! exactly one terminal result event per request, with the pictures in object storage.
//! Topic `generation`, key: request id, so a request, its cancellation and its results are
//! read in order on one partition. See [`worker`] for how the exactly-once result is kept.
//! CUDA sits behind the `cuda` feature; the default build runs on the CPU. The `painter` section
//! of the configuration is [`settings::PainterSettings`].

pub mod device;
pub mod diffusion;
pub mod metrics;
pub mod settings;
pub mod style;
pub mod worker;

pub use worker::{
    Degradation, DeviceChoice, DiffusionPainter, FailureCode, PaintError, PaintJob, PaintParams,
    Painter, Painters, Progress, Rejection, SourceLimits, StylePainter, TextModel, Worker,
    WorkerError, WorkerSettings, load_painters,
};
