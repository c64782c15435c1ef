//! Where criterion keeps its results, shared by `benches/workloads.rs` (which saves its
//! interleaved rounds beside them) and `examples/plot_speedup.rs` (which reads both).

use std::path::PathBuf;

/// Where criterion writes its results (as criterion finds it, short of asking `cargo
/// metadata`): `$CRITERION_HOME`, `$CARGO_TARGET_DIR/criterion`, `target/criterion`.
pub fn criterion_dir() -> PathBuf {
    match (
        std::env::var_os("CRITERION_HOME"),
        std::env::var_os("CARGO_TARGET_DIR"),
    ) {
        (Some(home), _) => home.into(),
        (None, Some(target)) => PathBuf::from(target).join("criterion"),
        (None, None) => PathBuf::from("target/criterion"),
    }
}
