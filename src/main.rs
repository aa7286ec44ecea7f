//! The `percore` command-line tool.
fn main() {}
