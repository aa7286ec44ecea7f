//! The runtime: pinned per-core app workers, each with its own executor; the SPSC ring mesh
//! between them; typed actors; partitioners; hardware detection, profiles and configuration.
//! Knows nothing of the layers above it (transport, storage, accelerator, ml).
