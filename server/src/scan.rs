//! Scans across shards: every shard returns its first `limit` entries of the range in scan order,
//! and a k-way merge (a binary heap holding the head of each shard's page) takes the first `limit`
//! overall.
//!
//! The continuation token is `[TOKEN_FORMAT, direction, last key returned...]`; the next page
//! starts strictly after that key (before it, in reverse). Invariants:
//! - a page never holds more than `limit` entries nor more than `SCAN_REPLY_SIZE_MAX` bytes of keys
//!   and values (a page cut short by size carries a token, so nothing is skipped);
//! - the token is present exactly when the range may hold more: the page is full or cut short,
//!   and some shard had entries left over or filled its own page;
//! - a token is accepted only with the direction it was made for.

use crate::call::{wrong_output, CallOutput, ShardOp};
use crate::constants::{SCAN_ENTRY_OVERHEAD_SIZE, SCAN_REPLY_SIZE_MAX};
use jube_protocol::{Entry, Failure, Scan, ScanReply, Status};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Bound;

/// First byte of every continuation token; a new layout would take another value.
const TOKEN_FORMAT: u8 = 1;
const FORWARD: u8 = 0;
const BACKWARD: u8 = 1;

fn direction(reverse: bool) -> u8 {
    if reverse {
        BACKWARD
    } else {
        FORWARD
    }
}

/// The token continuing after `last_key`.
pub fn encode_token(last_key: &[u8], reverse: bool) -> Vec<u8> {
    let mut token = Vec::with_capacity(last_key.len() + 2);
    token.push(TOKEN_FORMAT);
    token.push(direction(reverse));
    token.extend_from_slice(last_key);
    token
}

fn decode_token(token: &[u8], reverse: bool) -> Result<&[u8], Failure> {
    match token {
        [TOKEN_FORMAT, dir, key @ ..] if *dir == direction(reverse) && !key.is_empty() => Ok(key),
        [TOKEN_FORMAT, dir, _, ..] if *dir != direction(reverse) => Err(Failure::new(
            Status::InvalidRequest,
            "continuation token was made for a scan in the other direction",
        )),
        _ => Err(Failure::new(
            Status::InvalidRequest,
            "continuation token is not one this server made",
        )),
    }
}

/// The per-shard call of `scan`, with its bounds narrowed past the continuation token.
pub fn plan_scan(scan: &Scan) -> Result<ShardOp, Failure> {
    let mut start = scan.start.clone();
    let mut end = scan.end.clone();
    if let Some(token) = &scan.continuation {
        let key = decode_token(token, scan.reverse)?;
        if scan.reverse {
            end = narrow(end, key, Ordering::Less);
        } else {
            start = narrow(start, key, Ordering::Greater);
        }
    }
    Ok(ShardOp::Scan {
        start,
        end,
        limit: scan.limit_effective() as usize,
        reverse: scan.reverse,
    })
}

/// `bound` narrowed to exclude `key` and everything on the far side of it: the result keeps only
/// keys `k` with `k.cmp(key) == keep`.
fn narrow(bound: Bound<Vec<u8>>, key: &[u8], keep: Ordering) -> Bound<Vec<u8>> {
    match &bound {
        Bound::Included(edge) | Bound::Excluded(edge) if edge.as_slice().cmp(key) == keep => bound,
        _ => Bound::Excluded(key.to_vec()),
    }
}

/// One shard's next entry in the merge heap; ordered so that the heap's top is the next entry of
/// the scan (the smallest key forwards, the largest in reverse).
struct Head {
    key: Vec<u8>,
    value: Vec<u8>,
    source: usize,
    reverse: bool,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_key = self
            .key
            .cmp(&other.key)
            .then(self.source.cmp(&other.source));
        if self.reverse {
            by_key
        } else {
            by_key.reverse()
        }
    }
}

/// Merges the shards' pages into one page of at most `limit` entries. Err if an output is not a
/// scan page (a bug: `Internal`).
pub fn merge_pages(
    outputs: Vec<CallOutput>,
    limit: usize,
    reverse: bool,
) -> Result<ScanReply, Failure> {
    let mut sources = Vec::with_capacity(outputs.len());
    let mut any_more = false;
    for output in outputs {
        let CallOutput::Entries { entries, more } = output else {
            return Err(wrong_output("Scan"));
        };
        any_more |= more;
        sources.push(entries.into_iter());
    }
    let mut heap = BinaryHeap::with_capacity(sources.len());
    for (source, entries) in sources.iter_mut().enumerate() {
        if let Some((key, value)) = entries.next() {
            heap.push(Head {
                key,
                value,
                source,
                reverse,
            });
        }
    }
    let mut page = Vec::new();
    let mut size = 0usize;
    let mut cut_short = false;
    while page.len() < limit {
        let Some(head) = heap.pop() else { break };
        let entry_size = head.key.len() + head.value.len() + SCAN_ENTRY_OVERHEAD_SIZE;
        if !page.is_empty() && size + entry_size > SCAN_REPLY_SIZE_MAX {
            cut_short = true;
            break;
        }
        size += entry_size;
        if let Some((key, value)) = sources[head.source].next() {
            heap.push(Head {
                key,
                value,
                source: head.source,
                reverse,
            });
        }
        page.push(Entry {
            key: head.key,
            value: head.value,
            ttl_ms: None,
        });
    }
    let full = page.len() >= limit && (!heap.is_empty() || any_more);
    let continuation = match page.last() {
        Some(last) if cut_short || full => Some(encode_token(&last.key, reverse)),
        _ => None,
    };
    Ok(ScanReply {
        entries: page,
        continuation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(keys: &[&str], more: bool) -> CallOutput {
        let entries = keys
            .iter()
            .map(|k| (k.as_bytes().to_vec(), b"v".to_vec()))
            .collect();
        CallOutput::Entries { entries, more }
    }

    fn keys(reply: &ScanReply) -> Vec<String> {
        reply
            .entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.key).into_owned())
            .collect()
    }

    #[test]
    fn merges_in_order_and_continues_after_the_last_key() {
        let reply = merge_pages(
            vec![page(&["a", "d"], false), page(&["b", "c", "e"], false)],
            3,
            false,
        )
        .expect("pages");
        assert_eq!(keys(&reply), ["a", "b", "c"]);
        assert_eq!(reply.continuation, Some(encode_token(b"c", false)));
        let reply = merge_pages(
            vec![page(&["e", "b"], false), page(&["d", "a"], false)],
            10,
            true,
        )
        .expect("pages");
        assert_eq!(keys(&reply), ["e", "d", "b", "a"]);
        assert_eq!(reply.continuation, None);
    }

    #[test]
    fn a_full_page_from_one_shard_means_more() {
        let reply =
            merge_pages(vec![page(&["a", "b"], true), page(&[], false)], 2, false).expect("pages");
        assert_eq!(reply.continuation, Some(encode_token(b"b", false)));
        let reply =
            merge_pages(vec![page(&["a", "b"], false), page(&[], false)], 2, false).expect("pages");
        assert_eq!(reply.continuation, None);
    }

    #[test]
    fn tokens_narrow_the_range_and_check_direction() {
        let mut scan = Scan::all();
        scan.start = Bound::Included(b"a".to_vec());
        scan.continuation = Some(encode_token(b"m", false));
        let ShardOp::Scan { start, .. } = plan_scan(&scan).expect("valid") else {
            panic!("not a scan")
        };
        assert_eq!(start, Bound::Excluded(b"m".to_vec()));
        scan.reverse = true;
        assert_eq!(
            plan_scan(&scan).expect_err("wrong direction").status,
            Status::InvalidRequest
        );
        scan.continuation = Some(encode_token(b"m", true));
        scan.end = Bound::Excluded(b"k".to_vec());
        let ShardOp::Scan { end, .. } = plan_scan(&scan).expect("valid") else {
            panic!("not a scan")
        };
        assert_eq!(end, Bound::Excluded(b"k".to_vec()));
        scan.continuation = Some(b"junk".to_vec());
        assert_eq!(
            plan_scan(&scan).expect_err("junk").status,
            Status::InvalidRequest
        );
    }
}
