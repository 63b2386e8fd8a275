//! A fixed-capacity chained hash of values: a bucket array of chain heads
//! over one slab of nodes, taken as needed up to the capacity reserved when
//! it is made (so adding never allocates) and reused through a free list.
//! The stateful matches' tables (`-m connlimit`, `-m hashlimit`) keep their
//! entries in one; the caller hashes and compares (a bucket may hold
//! several keys, or one key several times).

const NIL: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct BucketSlab<T> {
    heads: Box<[u32]>,
    /// (next in chain or free list, value).
    nodes: Vec<(u32, T)>,
    free: u32,
    cap: usize,
    len: usize,
}

impl<T> BucketSlab<T> {
    /// `buckets` (rounded up to a power of two, at least 1) chains over at
    /// most `cap` values (at most `u32::MAX - 1`).
    pub fn new(buckets: usize, cap: usize) -> BucketSlab<T> {
        let cap = cap.min(NIL as usize - 1);
        BucketSlab {
            heads: vec![NIL; buckets.max(1).next_power_of_two()].into_boxed_slice(),
            nodes: Vec::with_capacity(cap),
            free: NIL,
            cap,
            len: 0,
        }
    }

    /// The bucket of hash `h`.
    #[inline]
    pub fn bucket(&self, h: u64) -> usize {
        (h as usize) & (self.heads.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.cap
    }

    /// Adds `v` at the head of bucket `b`'s chain; gives it back when full.
    pub fn push(&mut self, b: usize, v: T) -> Result<(), T> {
        let i = if self.free != NIL {
            let i = self.free;
            let n = &mut self.nodes[i as usize];
            self.free = n.0;
            n.1 = v;
            i
        } else if self.nodes.len() < self.cap {
            // Within the capacity reserved by `new`: no allocation.
            self.nodes.push((NIL, v));
            (self.nodes.len() - 1) as u32
        } else {
            return Err(v);
        };
        self.nodes[i as usize].0 = self.heads[b];
        self.heads[b] = i;
        self.len += 1;
        Ok(())
    }

    /// Walks bucket `b`'s chain from its head: `f` says whether to keep
    /// each value (false unlinks it) and whether to go on.
    pub fn walk(&mut self, b: usize, mut f: impl FnMut(&mut T) -> (bool, bool)) {
        let mut prev = NIL;
        let mut i = self.heads[b];
        while i != NIL {
            let (keep, go_on) = f(&mut self.nodes[i as usize].1);
            let next = self.nodes[i as usize].0;
            if keep {
                prev = i;
            } else {
                if prev == NIL {
                    self.heads[b] = next;
                } else {
                    self.nodes[prev as usize].0 = next;
                }
                self.nodes[i as usize].0 = self.free;
                self.free = i;
                self.len -= 1;
            }
            if !go_on {
                return;
            }
            i = next;
        }
    }

    /// The first value of bucket `b` for which `f` holds.
    pub fn find_mut(&mut self, b: usize, mut f: impl FnMut(&T) -> bool) -> Option<&mut T> {
        let mut i = self.heads[b];
        while i != NIL {
            if f(&self.nodes[i as usize].1) {
                return Some(&mut self.nodes[i as usize].1);
            }
            i = self.nodes[i as usize].0;
        }
        None
    }

    /// Keeps only the values for which `f` holds, in every bucket.
    pub fn retain(&mut self, mut f: impl FnMut(&mut T) -> bool) {
        for b in 0..self.heads.len() {
            self.walk(b, |v| (f(v), true));
        }
    }

    /// Every value (tests).
    #[cfg(test)]
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        (0..self.heads.len()).flat_map(move |b| {
            let mut i = self.heads[b];
            std::iter::from_fn(move || {
                if i == NIL {
                    return None;
                }
                let n = &self.nodes[i as usize];
                i = n.0;
                Some(&n.1)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push(u8, u16),
        /// Remove from a bucket the values divisible by the divisor.
        Remove(u8, u16),
        RetainAll(u16),
        Find(u8, u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..8, 0u16..50).prop_map(|(b, v)| Op::Push(b, v)),
            2 => (0u8..8, 1u16..6).prop_map(|(b, d)| Op::Remove(b, d)),
            1 => (2u16..6).prop_map(Op::RetainAll),
            2 => (0u8..8, 0u16..50).prop_map(|(b, v)| Op::Find(b, v)),
        ]
    }

    proptest! {
        /// The slab holds what a plain list per bucket holds, refuses what
        /// goes beyond its capacity, and reuses freed nodes.
        #[test]
        fn agrees_with_plain_lists(cap in 0usize..20, ops in proptest::collection::vec(op(), 0..200)) {
            let mut s = BucketSlab::new(8, cap);
            let mut model: Vec<Vec<u16>> = vec![Vec::new(); 8];
            for o in ops {
                match o {
                    Op::Push(b, v) => {
                        let full = model.iter().map(Vec::len).sum::<usize>() >= cap;
                        prop_assert_eq!(s.push(usize::from(b), v).is_err(), full);
                        if !full {
                            model[usize::from(b)].insert(0, v);
                        }
                    }
                    Op::Remove(b, d) => {
                        s.walk(usize::from(b), |v| (*v % d != 0, true));
                        model[usize::from(b)].retain(|v| v % d != 0);
                    }
                    Op::RetainAll(d) => {
                        s.retain(|v| *v % d != 0);
                        for m in &mut model {
                            m.retain(|v| v % d != 0);
                        }
                    }
                    Op::Find(b, v) => {
                        let got = s.find_mut(usize::from(b), |x| *x == v).is_some();
                        prop_assert_eq!(got, model[usize::from(b)].contains(&v));
                    }
                }
                let mut all: Vec<u16> = s.values().copied().collect();
                let mut want: Vec<u16> = model.concat();
                all.sort_unstable();
                want.sort_unstable();
                prop_assert_eq!(all, want);
                prop_assert_eq!(s.len(), model.iter().map(Vec::len).sum::<usize>());
                prop_assert!(s.nodes.capacity() <= cap.max(s.nodes.len()));
            }
        }
    }

    #[test]
    fn a_walk_stops_when_told() {
        let mut s = BucketSlab::new(1, 4);
        for v in 0..4 {
            assert!(s.push(0, v).is_ok());
        }
        assert_eq!(s.push(0, 9), Err(9));
        let mut seen = Vec::new();
        s.walk(0, |v| {
            seen.push(*v);
            (true, *v != 2)
        });
        // Head first: the latest pushed.
        assert_eq!(seen, [3, 2]);
    }
}
