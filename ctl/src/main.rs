//! rsgictl: the control client (not built yet; see issue 5).
fn main() {
    eprintln!("rsgictl: not implemented yet");
    std::process::exit(1);
}
