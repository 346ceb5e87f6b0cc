//! Key layout of the projection tree. Everything lives in one sled tree so that an update
//! and its checkpoint are written in one atomic batch. Timelines and lineage are one value
//! per order / source ref rather than one key per event: sled's cost is per inserted key,
//! and during a rebuild a batch then rewrites each order's keys once instead of once per
//! event. Parts of a key are separated by a
//! NUL byte (ids never contain one); numbers are big-endian with the sign bit flipped, so
//! byte order is numeric order.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `o/` | order ref | the order's [`OrderView`](crate::OrderView) and its [`TimelineEntry`](crate::TimelineEntry)s sorted by (saga id, seq); the view's `sagas` hold the last applied seq per saga (journal dedup) |
//! | `x/` | exception id | [`ExceptionView`](crate::ExceptionView) |
//! | `xo/` | category, exception id | empty: index of open exceptions |
//! | `l/` | source ref | [`LineageEntry`](crate::LineageEntry)s sorted by (topic, partition, offset); a command entry under `waybill:<key>` marks the key as applied (command dedup) |
//! | `p/` | posting id | the order ref holding the posting: index for [`posting`](crate::ProjectionStore::posting) |
//! | `ps/` | posting state, held at (i64), posting id | the order ref holding the posting: index of postings by state and age, for [`postings_by_age`](crate::ProjectionStore::postings_by_age) |
//! | `s/` | warehouse, sku | [`StockPosition`](crate::StockPosition) |
//! | `mv/` | sku | [`SkuMovements`](crate::SkuMovements): what moved the product's stock, summed |
//! | `rc/` | sku | [`StockCheck`](crate::StockCheck): where the product's reconciliation stands |
//! | `c/` | topic, partition | next offset to apply (i64) |
//! | `oa/` | order status, latest change (i64), order ref | empty: index of orders by status and age, for [`orders_by_age`](crate::ProjectionStore::orders_by_age) |
//! | `ns/` | order status | number of orders in it (i64) |
//! | `nx/` | category | number of open exceptions in it (i64) |
//! | `m/layout` | | layout version of this table |
//! | `m/clearing` | | present while [`clear`](crate::ProjectionStore::clear) runs |

/// Version of the key layout and value encoding; a store with another one must be rebuilt.
pub(crate) const LAYOUT_VERSION: &[u8] = b"9";

pub(crate) const ORDER: &[u8] = b"o/";
pub(crate) const ORDER_AGE: &[u8] = b"oa/";
pub(crate) const EXCEPTION: &[u8] = b"x/";
pub(crate) const OPEN_EXCEPTION: &[u8] = b"xo/";
pub(crate) const LINEAGE: &[u8] = b"l/";
pub(crate) const STOCK: &[u8] = b"s/";
pub(crate) const MOVEMENTS: &[u8] = b"mv/";
pub(crate) const STOCK_CHECK: &[u8] = b"rc/";
pub(crate) const POSTING: &[u8] = b"p/";
pub(crate) const POSTING_AGE: &[u8] = b"ps/";
pub(crate) const CHECKPOINT: &[u8] = b"c/";
pub(crate) const COUNT_STATUS: &[u8] = b"ns/";
pub(crate) const COUNT_OPEN: &[u8] = b"nx/";
pub(crate) const META_LAYOUT: &[u8] = b"m/layout";
pub(crate) const META_CLEARING: &[u8] = b"m/clearing";

const SEP: u8 = 0;

/// `i64` as 8 bytes whose byte order is numeric order.
pub(crate) fn ord_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// `i32` as 4 bytes whose byte order is numeric order.
pub(crate) fn ord_i32(v: i32) -> [u8; 4] {
    ((v as u32) ^ (1 << 31)).to_be_bytes()
}

/// Inverse of [`ord_i32`].
pub(crate) fn from_ord_i32(b: [u8; 4]) -> i32 {
    (u32::from_be_bytes(b) ^ (1 << 31)) as i32
}

fn join(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let len = prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.extend_from_slice(prefix);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p);
    }
    k
}

/// Like [`join`], into `k` (cleared first), to look a key up without allocating.
fn join_into(k: &mut Vec<u8>, prefix: &[u8], parts: &[&[u8]]) {
    k.clear();
    k.extend_from_slice(prefix);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p);
    }
}

pub(crate) fn order_into(k: &mut Vec<u8>, order_ref: &str) {
    join_into(k, ORDER, &[order_ref.as_bytes()]);
}

pub(crate) fn exception_into(k: &mut Vec<u8>, id: &str) {
    join_into(k, EXCEPTION, &[id.as_bytes()]);
}

pub(crate) fn lineage_into(k: &mut Vec<u8>, source_ref: &str) {
    join_into(k, LINEAGE, &[source_ref.as_bytes()]);
}

pub(crate) fn stock_into(k: &mut Vec<u8>, warehouse: &str, sku: &str) {
    join_into(k, STOCK, &[warehouse.as_bytes(), sku.as_bytes()]);
}

pub(crate) fn movements_into(k: &mut Vec<u8>, sku: &str) {
    join_into(k, MOVEMENTS, &[sku.as_bytes()]);
}

pub(crate) fn stock_check_into(k: &mut Vec<u8>, sku: &str) {
    join_into(k, STOCK_CHECK, &[sku.as_bytes()]);
}

pub(crate) fn movements(sku: &str) -> Vec<u8> {
    join(MOVEMENTS, &[sku.as_bytes()])
}

pub(crate) fn checkpoint_into(k: &mut Vec<u8>, topic: &str, partition: i32) {
    join_into(k, CHECKPOINT, &[topic.as_bytes(), &ord_i32(partition)]);
}

pub(crate) fn order(order_ref: &str) -> Vec<u8> {
    join(ORDER, &[order_ref.as_bytes()])
}

pub(crate) fn posting(posting_id: &str) -> Vec<u8> {
    join(POSTING, &[posting_id.as_bytes()])
}

pub(crate) fn exception(id: &str) -> Vec<u8> {
    join(EXCEPTION, &[id.as_bytes()])
}

pub(crate) fn open_exception_prefix(category: &str) -> Vec<u8> {
    join(OPEN_EXCEPTION, &[category.as_bytes(), b""])
}

pub(crate) fn open_exception(category: &str, id: &str) -> Vec<u8> {
    join(OPEN_EXCEPTION, &[category.as_bytes(), id.as_bytes()])
}

pub(crate) fn lineage(source_ref: &str) -> Vec<u8> {
    join(LINEAGE, &[source_ref.as_bytes()])
}

pub(crate) fn stock(warehouse: &str, sku: &str) -> Vec<u8> {
    join(STOCK, &[warehouse.as_bytes(), sku.as_bytes()])
}

pub(crate) fn checkpoint(topic: &str, partition: i32) -> Vec<u8> {
    join(CHECKPOINT, &[topic.as_bytes(), &ord_i32(partition)])
}

/// Splits a checkpoint key back into topic and partition.
pub(crate) fn parse_checkpoint(key: &[u8]) -> Option<(String, i32)> {
    let rest = key.strip_prefix(CHECKPOINT)?;
    if rest.len() < 5 || rest[rest.len() - 5] != SEP {
        return None;
    }
    let (topic, part) = rest.split_at(rest.len() - 5);
    let topic = String::from_utf8(topic.to_vec()).ok()?;
    let partition = from_ord_i32(part[1..].try_into().ok()?);
    Some((topic, partition))
}

/// The index entry of an order in `status` whose latest change was at `at_us`.
pub(crate) fn order_age(status: &str, at_us: i64, order_ref: &str) -> Vec<u8> {
    join(ORDER_AGE, &[status.as_bytes(), &ord_i64(at_us), order_ref.as_bytes()])
}

/// The first index key of `status` with a latest change at `at_us` (or later).
pub(crate) fn order_age_from(status: &str, at_us: i64) -> Vec<u8> {
    join(ORDER_AGE, &[status.as_bytes(), &ord_i64(at_us)])
}

/// Splits an order-age key of `status` into (latest change, order ref).
pub(crate) fn parse_order_age(status: &str, key: &[u8]) -> Option<(i64, String)> {
    let rest = key.strip_prefix(ORDER_AGE)?.strip_prefix(status.as_bytes())?.strip_prefix(&[SEP])?;
    if rest.len() < 9 || rest[8] != SEP {
        return None;
    }
    let at = (u64::from_be_bytes(rest[..8].try_into().ok()?) ^ (1 << 63)) as i64;
    Some((at, String::from_utf8(rest[9..].to_vec()).ok()?))
}

/// The index entry of a posting in `state` held at `held_at_us`.
pub(crate) fn posting_age(state: &str, held_at_us: i64, posting_id: &str) -> Vec<u8> {
    join(POSTING_AGE, &[state.as_bytes(), &ord_i64(held_at_us), posting_id.as_bytes()])
}

/// The first posting-age key of `state` (the prefix of all of them).
pub(crate) fn posting_age_prefix(state: &str) -> Vec<u8> {
    join(POSTING_AGE, &[state.as_bytes(), b""])
}

/// Splits a posting-age key of `state` into (held at, posting id).
pub(crate) fn parse_posting_age(state: &str, key: &[u8]) -> Option<(i64, String)> {
    let rest = key.strip_prefix(POSTING_AGE)?.strip_prefix(state.as_bytes())?.strip_prefix(&[SEP])?;
    if rest.len() < 9 || rest[8] != SEP {
        return None;
    }
    let at = (u64::from_be_bytes(rest[..8].try_into().ok()?) ^ (1 << 63)) as i64;
    Some((at, String::from_utf8(rest[9..].to_vec()).ok()?))
}

pub(crate) fn count_status(status: &str) -> Vec<u8> {
    join(COUNT_STATUS, &[status.as_bytes()])
}

pub(crate) fn count_open(category: &str) -> Vec<u8> {
    join(COUNT_OPEN, &[category.as_bytes()])
}

/// A key for error messages: text with NUL separators shown as `|`.
pub(crate) fn display(key: &[u8]) -> String {
    String::from_utf8_lossy(key).replace('\0', "|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_numerically_as_bytes() {
        let mut v = [-5i64, 3, 0, i64::MAX, 10, -1, 256];
        let mut k: Vec<[u8; 8]> = v.iter().map(|x| ord_i64(*x)).collect();
        v.sort();
        k.sort();
        assert_eq!(k, v.iter().map(|x| ord_i64(*x)).collect::<Vec<_>>());
        assert!(ord_i32(-1) < ord_i32(0) && ord_i32(2) < ord_i32(10));
    }

    #[test]
    fn order_age_keys_round_trip_and_sort_by_time() {
        let k = order_age("picked", 0, "SO1");
        assert_eq!(parse_order_age("picked", &k), Some((0, "SO1".to_string())));
        assert_eq!(parse_order_age("picking", &k), None);
        assert!(order_age("picked", 5, "SO9") < order_age("picked", 6, "SO1"));
        assert!(order_age_from("picked", 6) > order_age("picked", 5, "SO9"));
        assert!(order_age_from("picked", 6) <= order_age("picked", 6, "SO1"));
    }

    #[test]
    fn posting_age_keys_round_trip_and_sort_by_time_then_id() {
        let k = posting_age("held", -3, "inv:SHP1");
        assert_eq!(parse_posting_age("held", &k), Some((-3, "inv:SHP1".to_string())));
        assert_eq!(parse_posting_age("approved", &k), None);
        assert!(k.starts_with(&posting_age_prefix("held")));
        assert!(posting_age("held", 5, "inv:Z") < posting_age("held", 6, "inv:A"));
        assert!(posting_age("held", 5, "inv:A") < posting_age("held", 5, "inv:AB"));
    }

    #[test]
    fn checkpoint_keys_round_trip() {
        let k = checkpoint("waybill.journal", 7);
        assert_eq!(parse_checkpoint(&k), Some(("waybill.journal".to_string(), 7)));
        // Partition 0 encodes as 80 00 00 00: NUL bytes inside still parse.
        assert_eq!(parse_checkpoint(&checkpoint("t", 0)), Some(("t".to_string(), 0)));
    }
}
