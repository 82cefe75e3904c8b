//! Configuration and counters of one shard's tree.

use crate::constants::{CACHE_PAGES_MIN, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, PAGE_SIZE_MIN};
use crate::tree::error::TreeError;

/// Settings of one tree. `page_size` is fixed at creation and checked at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeConfig {
    /// Bytes per page: a power of two in 4 KiB..=64 KiB.
    pub page_size: usize,
    /// Byte budget of the page cache (clean, dirty and spilled-then-reloaded pages alike).
    pub cache_bytes: usize,
    /// Largest value stored inline; `None` means a quarter page, which is also the maximum.
    pub value_inline_max: Option<usize>,
    /// The shard this tree belongs to, recorded in the superblock and checked at open.
    pub shard_id: u32,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig {
            page_size: PAGE_SIZE_DEFAULT,
            cache_bytes: 64 << 20,
            value_inline_max: None,
            shard_id: 0,
        }
    }
}

impl TreeConfig {
    /// The inline value limit in force.
    pub fn value_inline_max(&self) -> usize {
        let quarter = self.page_size / 4;
        self.value_inline_max
            .map_or(quarter, |max| max.min(quarter))
    }

    /// How many pages the cache holds before it evicts.
    pub fn cache_pages(&self) -> usize {
        (self.cache_bytes / self.page_size).max(CACHE_PAGES_MIN)
    }

    pub fn validate(&self) -> Result<(), TreeError> {
        let size = self.page_size;
        if !size.is_power_of_two() || !(PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&size) {
            return Err(TreeError::InvalidConfig {
                detail: format!(
                    "page_size {size} is not a power of two in {PAGE_SIZE_MIN}..={PAGE_SIZE_MAX}"
                ),
            });
        }
        if self.cache_bytes < CACHE_PAGES_MIN * size {
            return Err(TreeError::InvalidConfig {
                detail: format!(
                    "cache_bytes {} is below {CACHE_PAGES_MIN} pages of {size} bytes",
                    self.cache_bytes
                ),
            });
        }
        Ok(())
    }
}

/// Counters of one tree, cumulative since open (except the gauges, marked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeStats {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_evictions: u64,
    /// Dirty pages written before their commit to make room in the cache.
    pub cache_spills: u64,
    /// Gauge: bytes of dirty pages in the cache.
    pub dirty_bytes: u64,
    /// Gauge: bytes of pages in the cache.
    pub resident_bytes: u64,
    pub pages_read: u64,
    pub pages_written: u64,
    pub commits: u64,
    /// Page splits (a new root counts as a split of the old one).
    pub splits: u64,
    /// Pages merged into a sibling on underflow.
    pub merges: u64,
    /// Sibling pairs whose records were redistributed on underflow.
    pub redistributions: u64,
    /// Times the root branch was replaced by its only child.
    pub root_collapses: u64,
    /// Gauge: the tree's height (1 = root is a leaf).
    pub tree_height: u64,
    /// Gauge: keys in the tree.
    pub key_count: u64,
    /// Gauge: page-count high-water mark.
    pub page_count: u64,
    /// Gauge: pages reusable now.
    pub free_pages: u64,
    /// Gauge: pages freed but reusable only after a pending commit is durable.
    pub pending_free_pages: u64,
}
