//! Which device the networks run on, and what it reports about itself: its name and, on a
//! GPU, its memory. The CUDA side is compiled only with the `cuda` feature (through
//! `cudarc`, the driver API candle itself uses); the default build knows only the CPU.

use candle_core::{Device, DeviceLocation};

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

/// What a device is, for logs and gauges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `"cpu"` or `"cuda"` (`"metal"` for candle's Metal devices, which this crate never
    /// builds).
    pub kind: &'static str,
    /// The device's ordinal among its kind; 0 for the CPU.
    pub ordinal: usize,
    /// The name the driver gives the GPU (`"cuda:<ordinal>"` when it cannot be read);
    /// `"cpu"` for the CPU.
    pub name: String,
}

/// A GPU's memory, in bytes: what is in use (by any process) and what there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    pub used_bytes: u64,
    pub total_bytes: u64,
}

/// Names `device`.
pub fn describe(device: &Device) -> DeviceInfo {
    let ordinal = match device.location() {
        DeviceLocation::Cpu => 0,
        DeviceLocation::Cuda { gpu_id } | DeviceLocation::Metal { gpu_id } => gpu_id,
    };
    match device {
        Device::Cpu => DeviceInfo {
            kind: "cpu",
            ordinal,
            name: "cpu".to_owned(),
        },
        Device::Cuda(cuda) => DeviceInfo {
            kind: "cuda",
            ordinal,
            name: gauges::name(cuda).unwrap_or_else(|| format!("cuda:{ordinal}")),
        },
        Device::Metal(_) => DeviceInfo {
            kind: "metal",
            ordinal,
            name: format!("metal:{ordinal}"),
        },
    }
}

/// The memory of `device` when it is a CUDA GPU; `None` on the CPU, and when the driver
/// does not answer (logged at debug level: a gauge that cannot be read is not an error).
pub fn memory(device: &Device) -> Option<DeviceMemory> {
    match device {
        Device::Cuda(cuda) => gauges::memory(cuda),
        Device::Cpu | Device::Metal(_) => None,
    }
}

/// The driver calls, on the context candle's device already holds (its stream's), so no
/// second context is created.
#[cfg(feature = "cuda")]
mod gauges {
    use candle_core::CudaDevice;

    use super::DeviceMemory;

    pub(super) fn name(device: &CudaDevice) -> Option<String> {
        let stream = device.cuda_stream();
        let context = stream.context();
        context
            .name()
            .map_err(|error| {
                let ordinal = context.ordinal();
                tracing::debug!(ordinal, %error, "the CUDA device's name could not be read");
            })
            .ok()
    }

    pub(super) fn memory(device: &CudaDevice) -> Option<DeviceMemory> {
        let stream = device.cuda_stream();
        let context = stream.context();
        let (free, total) = context
            .mem_get_info()
            .map_err(|error| {
                let ordinal = context.ordinal();
                tracing::debug!(ordinal, %error, "the CUDA memory gauge could not be read");
            })
            .ok()?;
        let free = u64::try_from(free).ok()?;
        let total = u64::try_from(total).ok()?;
        Some(DeviceMemory {
            used_bytes: total.saturating_sub(free),
            total_bytes: total,
        })
    }
}

/// Without the `cuda` feature candle's `CudaDevice` is a placeholder that cannot be made.
#[cfg(not(feature = "cuda"))]
mod gauges {
    use candle_core::CudaDevice;

    use super::DeviceMemory;

    pub(super) fn name(_: &CudaDevice) -> Option<String> {
        None
    }

    pub(super) fn memory(_: &CudaDevice) -> Option<DeviceMemory> {
        None
    }
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

    #[test]
    fn the_cpu_is_described_as_the_cpu() {
        let info = describe(&Device::Cpu);
        assert_eq!(info.kind, "cpu");
        assert_eq!(info.ordinal, 0);
        assert_eq!(info.name, "cpu");
    }

    #[test]
    fn the_cpu_has_no_memory_gauge() {
        assert_eq!(memory(&Device::Cpu), None);
    }
}
