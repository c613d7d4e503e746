//! Copies the eBPF object built by `cargo xtask build-ebpf` into OUT_DIR so the proxy can embed
//! it. Default location: `<workspace>/target/ebpf/ekube.bpf.o`; override with
//! `EKUBE_BPF_OBJECT=<path>`. Without an object the crate still builds (with a warning) and
//! `Datapath::open` reports how to build it.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=EKUBE_BPF_OBJECT");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let source = env::var_os("EKUBE_BPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/ebpf/ekube.bpf.o"));
    println!("cargo:rerun-if-changed={}", source.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("ekube.bpf.o");
    match fs::read(&source) {
        Ok(bytes) => fs::write(&out, bytes).expect("writing the embedded eBPF object"),
        Err(_) => {
            println!(
                "cargo:warning=eBPF object {} not found; run `cargo xtask build-ebpf` first \
                 (this build cannot load the datapath)",
                source.display()
            );
            fs::write(&out, []).expect("writing the empty eBPF object");
        }
    }
    println!("cargo:rustc-env=EKUBE_BPF_OBJECT_EMBED={}", out.display());
}
