//! rsgid: the emperor. Watches a directory of vassal files and runs one `rsgi` per file.
//!
//! (Placeholder crate docs: the layout and theory of operation follow with the actor.)

pub mod lifecycle;
pub mod scan;
pub mod settings;
