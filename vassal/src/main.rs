//! `rsgi`: the app server binary. Everything lives in the library; see [`rsgi::run`].

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(rsgi::run::main_with_args(&args));
}
