//! pyro
