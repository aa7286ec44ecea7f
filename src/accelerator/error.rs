//! The accelerator layer's error type. Owns only [`AccelError`]; every fallible public function
//! of `percore::accelerator` returns it. Must not touch devices or threads.

/// Why an accelerator call failed. Shape and size problems are found before anything is
/// dispatched; device failures (lost device, out of memory) never reach the caller because the
/// worker reruns the task on the CPU backend.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccelError {
    /// `PERCORE_ACCEL` (or another setting) had a value outside the accepted set.
    #[error("{setting}={value:?}: expected {expected}")]
    InvalidSetting {
        /// The setting (for example `PERCORE_ACCEL`).
        setting: String,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The inputs do not fit the kernel (wrong count, shape, or element type).
    #[error("shape mismatch in {kernel}: {detail}")]
    ShapeMismatch {
        /// The kernel's name.
        kernel: &'static str,
        /// What does not fit.
        detail: String,
    },
    /// A buffer would exceed the device's largest storage-buffer binding.
    #[error("buffer of {bytes} bytes exceeds the device limit of {limit} bytes ({kernel})")]
    BufferTooLarge {
        /// The kernel's name.
        kernel: &'static str,
        /// Size the buffer would need.
        bytes: u64,
        /// The device's `max_storage_buffer_binding_size` (or the CPU backend's limit).
        limit: u64,
    },
    /// A label of a cross-entropy task is not a valid class index.
    #[error("label {label} at row {row} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// The row.
        row: usize,
        /// The label found.
        label: u32,
        /// Number of classes (columns of the logits).
        classes: usize,
    },
    /// A tensor's data length does not match its shape.
    #[error("tensor of shape {rows}x{cols} holds {len} elements")]
    BadTensor {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Elements present.
        len: usize,
    },
    /// A hybrid pipeline was empty or malformed.
    #[error("pipeline: {0}")]
    Pipeline(String),
    /// Reading or writing a crossover file failed.
    #[error("crossover file: {0}")]
    Io(String),
    /// The accelerator worker has stopped; the task was not run.
    #[error("the accelerator worker has stopped")]
    Stopped,
    /// The worker thread could not be started, or a runtime call failed.
    #[error("accelerator worker start failed: {0}")]
    Start(String),
    /// A device failure the CPU fallback could not absorb (only returned by the low-level
    /// `gpu::GpuDevice` API; the workers reroute instead).
    #[error("device failure: {0}")]
    Device(String),
}
