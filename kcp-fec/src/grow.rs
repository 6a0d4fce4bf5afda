//! Bounded growth: collections double while they fill up, but never past the bound their
//! owner was configured for (a plain `reserve` would round a 40-entry queue up to 64).

use alloc::collections::VecDeque;

/// The capacity to grow to so that `len + additional` fits: double the current capacity (at
/// least 4), capped at `bound`, and never less than what is needed.
fn target(len: usize, cap: usize, additional: usize, bound: usize) -> usize {
    let need = len.saturating_add(additional);
    cap.saturating_mul(2).max(4).min(bound).max(need)
}

/// Makes room for `additional` more elements in `v` without growing its capacity past
/// `bound` (unless the elements themselves need more).
pub(crate) fn reserve_deque_within<T>(v: &mut VecDeque<T>, additional: usize, bound: usize) {
    let (len, cap) = (v.len(), v.capacity());
    if cap - len < additional {
        v.reserve_exact(target(len, cap, additional, bound) - len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_doubles_up_to_the_bound_and_stops_there() {
        let mut v: VecDeque<u8> = VecDeque::new();
        let mut caps = alloc::vec::Vec::new();
        for _ in 0..40 {
            reserve_deque_within(&mut v, 1, 40);
            v.push_back(0);
            if caps.last() != Some(&v.capacity()) {
                caps.push(v.capacity());
            }
        }
        assert_eq!(caps, [4, 8, 16, 32, 40]);
        // Past the bound only what is needed.
        reserve_deque_within(&mut v, 3, 40);
        assert_eq!(v.capacity(), 43);
    }
}
