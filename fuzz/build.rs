//! The `rsgi` library links CPython's static, non-PIC core (see `vassal/build.rs`), so
//! every executable that contains it must be linked as a non-PIE, with its symbols
//! exported for C extension modules: the same two link flags `vassal/build.rs` gives its
//! own binaries, here for the fuzz targets.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
}
