//! The Media API client and the emulator, without a mount: the client against the emulator and
//! against scripted hostile servers, property tests of its parsers, and the emulator's HTTP
//! surface. One test binary, so the test build links one executable for all four.
//!
//! `api_client` installs a recording logger for the whole binary (the `log` crate allows one
//! per process); no other module here installs one.

mod api_client;
mod api_proptest;
mod emulator;
mod hostile_server;
