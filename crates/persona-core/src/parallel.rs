//! Work split over the machine's cores for the stages' bulk steps (decoding a chunk of
//! stored profiles, evaluating segments over a batch of changed ones), with scoped threads:
//! no pool to configure, and the caller's borrows stay valid.

use std::sync::OnceLock;

/// The cores to use.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs `work` on `items` split into one contiguous part per core, each part at least
/// `min_part` long (fewer parts when there is less, and no thread at all for one), and
/// returns the parts' results in order.
pub fn split_work<T: Send, R: Send>(
    items: &mut [T],
    min_part: usize,
    work: impl Fn(&mut [T]) -> R + Sync,
) -> Vec<R> {
    let parts = cores().min(items.len() / min_part.max(1)).max(1);
    if parts == 1 {
        return vec![work(items)];
    }
    let size = items.len().div_ceil(parts);
    std::thread::scope(|s| {
        let work = &work;
        let handles: Vec<_> = items
            .chunks_mut(size)
            .map(|part| s.spawn(move || work(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker does not panic"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_come_back_in_order_and_cover_every_item() {
        let mut items: Vec<u64> = (0..10_001).collect();
        let sums = split_work(&mut items, 100, |part| {
            for x in part.iter_mut() {
                *x *= 2;
            }
            (part[0], part.len())
        });
        assert_eq!(sums.iter().map(|s| s.1).sum::<usize>(), 10_001);
        assert!(sums.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(items.iter().enumerate().all(|(i, &x)| x == 2 * i as u64));
        // Too little work for a second thread: one part.
        assert_eq!(split_work(&mut items[..150], 100, |p| p.len()), [150]);
    }
}
