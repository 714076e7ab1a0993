//! Administration: what the `leadgate` command prints and (later) the local
//! admin socket of a running daemon.

pub mod report;
