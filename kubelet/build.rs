//! Generates the device plugin API (`proto/deviceplugin.proto`, upstream's
//! `deviceplugin/v1beta1`) server and client; needs `protoc` (Debian `protobuf-compiler`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/deviceplugin.proto");
    tonic_prost_build::configure().compile_protos(&["proto/deviceplugin.proto"], &["proto"])?;
    Ok(())
}
