//! Which partition a keyed event goes to: CRC-32 of its message key modulo the topic's
//! partition count. That is librdkafka's `consistent_random` partitioner, its default for
//! keyed messages, which the producer names explicitly ([`PARTITIONER`]) so that a keyed
//! event's partition can be computed without the producer (a takeover looks there for an
//! earlier attempt's event) and existing topics keep every key on the partition it always had.

/// The producer's `partitioner` setting; [`partition_of`] computes the same placement.
pub const PARTITIONER: &str = "consistent_random";

/// The partition the producer puts a message keyed `key` on, in a topic of `partitions`
/// partitions; `None` when the placement is random (an empty key) or there is no partition.
pub fn partition_of(key: &[u8], partitions: i32) -> Option<i32> {
    let count = u32::try_from(partitions).ok().filter(|n| *n > 0)?;
    if key.is_empty() {
        return None;
    }
    i32::try_from(crc32fast::hash(key) % count).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placement_is_crc32_of_the_key_modulo_the_partition_count() {
        // CRC-32's check value: crc32("123456789") = 0xcbf43926 = 3421780262.
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
        assert_eq!(partition_of(b"123456789", 1), Some(0));
        assert_eq!(partition_of(b"123456789", 3), Some(2));
        // 1633853056 and 3904355907, above i32::MAX: the modulo is unsigned, as librdkafka's.
        assert_eq!(partition_of(b"sunflowers", 6), Some(4));
        assert_eq!(partition_of(b"a", 6), Some(3));
    }

    #[test]
    fn no_placement_without_a_key_or_a_partition() {
        assert_eq!(partition_of(b"", 6), None);
        assert_eq!(partition_of(b"a", 0), None);
        assert_eq!(partition_of(b"a", -1), None);
    }
}
