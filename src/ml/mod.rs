//! ML workloads as actors: tensors, training, inference serving. Not built yet; it will sit on
//! the runtime and the accelerator layer.
