//! rsgid: the emperor (not built yet; see issue 4).
fn main() {
    eprintln!("rsgid: the emperor is not implemented yet");
    std::process::exit(1);
}
