//! Accelerator: dedicated accelerator workers that own a wgpu device (or the CPU backend) and run
//! compute tasks submitted by actors. Must not import transport or storage.
