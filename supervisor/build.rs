//! Links the daemon's hot functions side by side (supervisor/link/hot.ld, written by
//! scripts/bench/hot-functions): a few pages of code stay resident instead of most of the
//! binary (docs/DECISIONS.md, "Small PID 1").

fn main() {
    println!("cargo:rerun-if-changed=link/hot.ld");
    // An ELF linker script (GNU ld and lld read it alike); other systems link as they do.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-link-arg-bin=supervisor=-Wl,-T,{dir}/link/hot.ld");
        // The linker's map of where each function went, for scripts/hot-check.
        println!("cargo:rerun-if-env-changed=SUPERVISOR_LINK_MAP");
        if let Some(map) = std::env::var_os("SUPERVISOR_LINK_MAP") {
            let map = map.to_string_lossy();
            println!("cargo:rustc-link-arg-bin=supervisor=-Wl,-Map={map}");
        }
    }
}
