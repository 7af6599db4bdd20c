//! `pyro`: disposable Linux microVMs for coding agents and developers.
//!
//! This facade re-exports the SDK ([`workspace`]) and, for tools and tests
//! that need them, the layers below it: [`vmm`] (the VM monitor) and
//! [`images`] (how guest kernels and environments are built). It hosts
//! the end-to-end tests (`tests/`) and the Criterion benches (`benches/`).

#![forbid(unsafe_code)]

pub use pyro_images as images;
pub use pyro_vmm as vmm;
pub use pyro_workspace as workspace;
