//! Tests that run the real `epistle` binary as separate processes: crash
//! safety under `kill -9`, and several nodes sharing one database.

mod cli;
mod crash;
mod nodes;
mod server;
