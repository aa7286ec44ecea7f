//! Storage: io_uring file I/O with a std fallback; block, key-value and object stores; WAL and
//! snapshots for actor state. Not built yet. Must not import transport.
