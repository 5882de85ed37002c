//! The offline demo.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub async fn run(_out: &Path) -> Result<(), DemoError> {
    Ok(())
}
