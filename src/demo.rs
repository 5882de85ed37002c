//! The offline demo.
