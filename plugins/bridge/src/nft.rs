//! Running `nft`: one script is one kernel transaction, all or nothing.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("failed to run nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft failed: {0}")]
    Failed(String),
}

impl NftError {
    /// The listed table or chain does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, NftError::Failed(msg) if msg.contains("No such file or directory"))
    }
}

/// Runs `nft args`, feeding `input` on stdin; returns stdout.
pub fn run(args: &[&str], input: Option<&str>) -> Result<String, NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        // Our scripts are a few hundred bytes, far below the pipe buffer, so writing before
        // draining stdout cannot deadlock.
        stdin.write_all(text.as_bytes()).map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if !out.status.success() {
        return Err(NftError::Failed(
            String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
