//! Progress through the network: a hook called after every layer of a forward pass, which
//! can stop the run there.

use std::ops::ControlFlow;

use super::error::{Result, StyleError};

/// `hook(done, total)` after each layer (a convolution and the norm after it) of a forward
/// pass; `ControlFlow::Break` stops the run at once with [`StyleError::Stopped`].
pub type LayerHook<'a> = &'a mut dyn FnMut(u32, u32) -> ControlFlow<()>;

/// A hook that never stops the run.
pub(crate) fn keep_going(_: u32, _: u32) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

/// The steps of one forward pass and its hook.
pub(crate) struct Steps<'h> {
    done: u32,
    total: u32,
    /// Steps a layer counts: the samples it runs at once.
    per_layer: u32,
    hook: LayerHook<'h>,
}

impl<'h> Steps<'h> {
    pub(crate) fn new(total: u32, per_layer: u32, hook: LayerHook<'h>) -> Self {
        Self {
            done: 0,
            total,
            per_layer,
            hook,
        }
    }

    /// A layer's result: counts the layer when it succeeded and asks the hook whether to go
    /// on.
    pub(crate) fn after<T>(&mut self, layer: candle_core::Result<T>) -> Result<T> {
        let out = layer?;
        self.done = self.done.saturating_add(self.per_layer);
        match (self.hook)(self.done, self.total) {
            ControlFlow::Continue(()) => Ok(out),
            ControlFlow::Break(()) => Err(StyleError::Stopped {
                at: self.done,
                total: self.total,
            }),
        }
    }
}
