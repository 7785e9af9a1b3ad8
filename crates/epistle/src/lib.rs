//! The Epistle program: configuration, wiring and the command line.
//! `main.rs` stays thin; [`startup::build`] starts a whole server (on port 0
//! in tests) and reports where it listens.

pub mod cli;
pub mod config;
pub mod logging;
pub mod secrets;
pub mod startup;

pub use config::Config;
pub use startup::{App, build};
