//! The production flavour of the generated code is committed (src/generated/,
//! written by `cargo run -p placement-proto-codegen`), so a build needs no
//! protoc. The simulation's flavour (madsim-tonic's stubs, `--cfg madsim`)
//! is generated here, at build time, into OUT_DIR.

#[cfg(madsim)]
#[path = "generate.rs"]
mod generate;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(madsim)]
    {
        println!("cargo:rerun-if-changed=generate.rs");
        for proto in generate::PROTOS {
            println!("cargo:rerun-if-changed={proto}");
        }
        let here = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
        generate::generate(&here, &std::path::PathBuf::from(std::env::var("OUT_DIR")?))?;
    }
    Ok(())
}
