//! Program output: captured through pipes, written to rotated files, echoed to stdout.
//!
//! # Layout
//! - [`rotation`]: a log file that rotates on line boundaries.
//! - [`capture`]: the per-pipe reader tasks and the echo thread.
//! - [`tail`]: the last lines of a log file.

pub mod capture;
pub mod rotation;
pub mod tail;
