//! [`MlError`], the typed errors of the ML layer. Owns nothing else.

use crate::accelerator::AccelError;

/// What went wrong in a tensor operation, a model or an optimizer.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// Shapes that an operation cannot combine.
    #[error("shape mismatch in {op}: {detail}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// What does not fit, with the shapes.
        detail: String,
    },
    /// A value outside what an operation or setting accepts.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The argument or setting.
        what: &'static str,
        /// Why, and what is accepted.
        detail: String,
    },
    /// A class label at or above the number of classes.
    #[error("label {label} in row {row} is out of range for {classes} classes")]
    Label {
        /// The label.
        label: usize,
        /// Its row in the batch.
        row: usize,
        /// Number of classes (columns of the logits).
        classes: usize,
    },
    /// A CSV value or record that cannot be read.
    #[error("CSV line {line}, column {column:?}: {detail}")]
    Csv {
        /// 1-based line of the record.
        line: u64,
        /// The column's name (empty when the whole record is at fault).
        column: String,
        /// What is wrong.
        detail: String,
    },
    /// Saved state that does not fit the optimizer or model it is loaded into.
    #[error("state does not fit: {0}")]
    State(String),
    /// The accelerator layer refused an operation.
    #[error(transparent)]
    Accel(#[from] AccelError),
}

/// The ML layer's result type.
pub type Result<T> = std::result::Result<T, MlError>;

pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> MlError {
    MlError::Shape {
        op,
        detail: detail.into(),
    }
}

pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> MlError {
    MlError::Invalid {
        what,
        detail: detail.into(),
    }
}
