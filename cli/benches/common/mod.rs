//! Set-up shared by the CLI package's benches.

use pyro_workspace::{Pyro, VMM_BIN_ENV};

/// An SDK whose VM processes are run by `pyro_bin` (the freshly built
/// binary cargo names), with the shared image cache and workspace state
/// in a scratch directory removed when the returned guard drops.
pub fn scratch_pyro(pyro_bin: &str) -> (tempfile::TempDir, Pyro) {
    std::env::set_var(VMM_BIN_ENV, pyro_bin);
    let scratch = tempfile::tempdir().unwrap();
    let pyro = Pyro::with_paths(pyro_images::Paths {
        cache: pyro_images::Paths::from_env().cache,
        data: scratch.path().join("data"),
    });
    (scratch, pyro)
}
