//! Generates the CRI v1 gRPC server and client from `proto/runtime.proto` (needs `protoc`,
//! Debian `protobuf-compiler`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/runtime.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/runtime.proto"], &["proto"])?;
    Ok(())
}
