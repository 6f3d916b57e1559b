//! Integration tests of the agent against a real receiver on loopback, with real files.

mod config;
mod decoders;
mod delivery;
mod host;
mod receiver;
mod records;
mod rotation;
mod support;
