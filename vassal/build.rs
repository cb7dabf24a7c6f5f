//! Links CPython's core into `rsgi` statically, as Debian links its own `/usr/bin/python3`.
//!
//! Why: Debian's shared `libpython3.11.so` is position-independent code, and CPython's
//! eval loop pays for that on every global it touches. Calling a Django view costs
//! ~13% less CPU through the non-PIC `libpython3.11.a` (bench/PROFILE.md, "libpython");
//! the app server's own share of a request is a few percent, so this is the largest
//! single lever on a Python-bound row.
//!
//! How:
//! - pyo3 is told (`PYO3_CONFIG_FILE`, see `.cargo/config.toml` and `pyo3-config.txt`
//!   beside this file) that the interpreter is static and that this script, not
//!   pyo3-ffi's, writes the link lines;
//! - this script asks the Python named by `PYO3_PYTHON` (Debian's `/usr/bin/python3`)
//!   where its static library lives (`sysconfig`'s `LIBPL` and `LIBRARY`, from the
//!   `libpython3.11-dev` package) and which system libraries it needs (`LIBS`,
//!   `SYSLIBS`, `MODLIBS`), checks that its version is the one pyo3 compiles for, and
//!   links the whole archive (`+whole-archive`: a C extension module may call any part
//!   of the C API, not only what rsgi uses);
//! - the executable exports its symbols (`--export-dynamic`), so that C extension
//!   modules (the standard library's `lib-dynload`, wheels from PyPI) find the C API in
//!   it, as they do in `/usr/bin/python3`;
//! - the executable is not position-independent (`-no-pie`), since the non-PIC archive
//!   cannot go into a PIE; `/usr/bin/python3` is built the same way.
//!
//! A consequence worth knowing: the interpreter's core is part of the binary, so rsgi
//! must be rebuilt to pick up a security update of `libpython3.11` (the standard
//! library's `.py` files and extension modules are read from `/usr/lib/python3.11` at
//! run time, as before).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// What the build Python reports about itself.
struct BuildPython {
    /// `major.minor`.
    version: String,
    /// The directory holding the static library (`LIBPL`).
    libpl: String,
    /// The static library's file name (`LIBRARY`, e.g. `libpython3.11.a`).
    library: String,
    /// The system libraries the core needs (`-l` flags of `LIBS`, `SYSLIBS`, `MODLIBS`).
    syslibs: Vec<String>,
}

const QUERY: &str = "import sys, sysconfig as s
v = lambda k: s.get_config_var(k) or ''
print('%d.%d' % sys.version_info[:2])
print(v('LIBPL'))
print(v('LIBRARY'))
print(' '.join([v('LIBS'), v('SYSLIBS'), v('MODLIBS')]))";

fn ask(python: &str) -> Result<BuildPython, String> {
    let out = Command::new(python)
        .args(["-c", QUERY])
        .output()
        .map_err(|e| format!("cannot run PYO3_PYTHON={python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "PYO3_PYTHON={python} -c <sysconfig query> failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let mut next = |what: &str| {
        lines
            .next()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("PYO3_PYTHON={python} reports no {what}"))
    };
    let version = next("version")?;
    let libpl = next("LIBPL (the directory of libpythonX.Y.a)")?;
    let library = next("LIBRARY (the static library's name)")?;
    let flags = next("LIBS").unwrap_or_default();
    let mut seen = BTreeSet::new();
    let syslibs = flags
        .split_whitespace()
        .filter_map(|f| f.strip_prefix("-l"))
        .filter(|l| seen.insert(l.to_string()))
        .map(str::to_owned)
        .collect();
    Ok(BuildPython {
        version,
        libpl,
        library,
        syslibs,
    })
}

/// The `version=` line of pyo3's config file (`PYO3_CONFIG_FILE`, which must be set:
/// without it pyo3-ffi would write link lines of its own).
fn pyo3_config_version() -> Result<String, String> {
    let path = std::env::var_os("PYO3_CONFIG_FILE").ok_or(
        "PYO3_CONFIG_FILE is not set: rsgi links libpython itself and needs pyo3's link \
         lines off (see .cargo/config.toml)",
    )?;
    let path = Path::new(&path);
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("PYO3_CONFIG_FILE={}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("version="))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| format!("PYO3_CONFIG_FILE={}: no version= line", path.display()))
}

fn main() -> Result<(), String> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=PYO3_CONFIG_FILE");

    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let py = ask(&python)?;
    let configured = pyo3_config_version()?;
    if configured != py.version {
        return Err(format!(
            "PYO3_PYTHON={python} is Python {}, but pyo3 is configured for Python \
             {configured} (PYO3_CONFIG_FILE): point both at the same Python",
            py.version
        ));
    }
    let archive = Path::new(&py.libpl).join(&py.library);
    let Some(name) = py
        .library
        .strip_prefix("lib")
        .and_then(|n| n.strip_suffix(".a"))
    else {
        return Err(format!(
            "PYO3_PYTHON={python}: LIBRARY is {:?}, not a static library (libNAME.a)",
            py.library
        ));
    };
    if !archive.is_file() {
        return Err(format!(
            "{} is missing: rsgi links CPython statically; install libpython{}-dev",
            archive.display(),
            py.version
        ));
    }

    println!("cargo:rustc-link-search=native={}", py.libpl);
    // -bundle: the archive goes to the final link, not into the rlib.
    println!("cargo:rustc-link-lib=static:+whole-archive,-bundle={name}");
    for lib in &py.syslibs {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    println!("cargo:rustc-link-arg=-no-pie");
    println!("cargo:rustc-link-arg=-Wl,--export-dynamic");
    Ok(())
}
