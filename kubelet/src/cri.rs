//! The CRI v1 protocol types, server and client stubs generated from `proto/runtime.proto`.
#![allow(clippy::all, missing_docs)]
tonic::include_proto!("runtime.v1");
