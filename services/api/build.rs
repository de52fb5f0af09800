fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
    // The embedded web app and SDK (src/web.rs): a new file must rebuild.
    println!("cargo:rerun-if-changed=../web/app");
    println!("cargo:rerun-if-changed=../web/sdk/dist");
}
