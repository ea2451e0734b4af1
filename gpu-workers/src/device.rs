//! Which device the networks run on.

use candle_core::Device;

/// The first CUDA device when the crate is built with the `cuda` feature and one answers;
/// the CPU otherwise (also when CUDA fails to start, which is logged).
pub fn choose_device() -> Device {
    if cfg!(feature = "cuda") {
        match Device::new_cuda(0) {
            Ok(device) => return device,
            Err(error) => {
                tracing::warn!(%error, "no usable CUDA device, running on the CPU");
            }
        }
    }
    Device::Cpu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_cuda_the_cpu_is_chosen() {
        if !cfg!(feature = "cuda") {
            assert!(choose_device().is_cpu());
        }
    }
}
