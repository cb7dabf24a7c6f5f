//! rsgi-proto: the contracts shared by rsgi's programs.
//!
//! No tokio, no pyo3: everything here is plain data and pure functions, so the emperor
//! (`rsgid`), the app server (`rsgi`) and the control client (`rsgictl`) agree on one
//! definition.
//!
//! # Layout
//!
//! - [`config`]: the typed vassal configuration ([`config::VassalConfig`]).
//! - [`notify`]: vassal -> supervisor notify messages and exit-code constants.
#![deny(missing_docs)]

pub mod config;
pub mod notify;
