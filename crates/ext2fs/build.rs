//! Links libext2fs and libcom_err from e2fsprogs dynamically (they are LGPL)
//! by their runtime sonames, so that a machine with only the e2fsprogs
//! runtime installed (no `-dev` package, no `libext2fs.so` symlink) builds.

fn main() {
    println!("cargo:rustc-link-lib=dylib:+verbatim=libext2fs.so.2");
    println!("cargo:rustc-link-lib=dylib:+verbatim=libcom_err.so.2");
    println!("cargo:rerun-if-changed=build.rs");
}
