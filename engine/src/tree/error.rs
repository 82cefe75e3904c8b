//! Errors of the tree: each says what failed, where (file, offset, page) and why.
//!
//! Input errors (a key too long) and I/O or corruption errors are values, never panics; panics
//! are reserved for bugs. After an I/O error on a write or sync the tree is poisoned and answers
//! every later call with [`TreeError::Poisoned`] until it is reopened.

use crate::storage::IoError;
use crate::tree::page::PageId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// The storage failed an operation.
    #[error("I/O error while {doing}: {source}")]
    Io {
        doing: &'static str,
        source: IoError,
    },

    /// A page failed validation after it was read.
    #[error("corrupt page {page_id} in {file} at offset {offset}: {detail}")]
    CorruptPage {
        file: String,
        offset: u64,
        page_id: PageId,
        detail: String,
    },

    /// The tree's structure is wrong (found by a read or by `check_integrity`).
    #[error("corrupt tree in {file}: {detail}")]
    CorruptTree { file: String, detail: String },

    /// Neither superblock slot is valid.
    #[error(
        "no valid superblock in {file}: slot A at offset {offset_a}: {error_a}; \
         slot B at offset {offset_b}: {error_b}"
    )]
    NoValidSuperblock {
        file: String,
        offset_a: u64,
        error_a: String,
        offset_b: u64,
        error_b: String,
    },

    /// The file was created with settings that differ from the configuration.
    #[error("{file} does not match the configuration: {detail}")]
    ConfigMismatch { file: String, detail: String },

    /// The configuration itself is invalid.
    #[error("invalid tree configuration: {detail}")]
    InvalidConfig { detail: String },

    #[error("key of {size} bytes exceeds the limit of {max} bytes (KEY_SIZE_MAX)")]
    KeyTooLarge { size: usize, max: usize },

    #[error(
        "value of {size} bytes exceeds the inline limit of {max} bytes (a quarter page; \
         larger values need the value log, not yet built)"
    )]
    ValueTooLarge { size: usize, max: usize },

    /// The tree would grow deeper than the format allows.
    #[error("tree height would exceed TREE_HEIGHT_MAX ({max})")]
    TreeTooTall { max: usize },

    /// `begin_commit` while a commit is running, or `commit_step` without one.
    #[error("commit protocol misuse: {detail}")]
    CommitState { detail: &'static str },

    /// A previous write or sync failed; the on-disk state is unknown until reopened.
    #[error("tree is poisoned by an earlier I/O failure ({first}); reopen to recover")]
    Poisoned { first: String },
}

pub type Result<T, E = TreeError> = std::result::Result<T, E>;
