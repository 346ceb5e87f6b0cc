//! Generates the gRPC code for `proto/waybill/v1/*.proto` into `OUT_DIR`, with the
//! `protoc` shipped by `protoc-bin-vendored` (no system protoc needed), plus the file
//! descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [root.join("waybill/v1/control.proto")];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // The CLI prints messages as JSON (`--output json`).
        .type_attribute(".waybill.v1", "#[derive(serde::Serialize)]")
        .file_descriptor_set_path(out.join("waybill_descriptor.bin"))
        .compile_with_config(config, &files, &[root])?;
    Ok(())
}
