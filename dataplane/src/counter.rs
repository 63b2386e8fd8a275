//! Counters defined once: a set of `u64` counters ([`CounterSet`], declared
//! with [`counter_set!`](crate::counter_set)) is copied word by word
//! (published to the control plane through atomics: [`Published`]; summed
//! over workers: [`CounterSet::add`]), and described by one table of
//! [`CounterDef`]s from which `xdpgw stats`, the Prometheus metrics and the
//! exit report are rendered.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fixed set of `u64` counters, visited in one fixed order.
pub trait CounterSet: Sized {
    /// How many counters (words) the set has.
    const WORDS: usize;
    /// Every counter 0.
    fn zeroed() -> Self;
    /// Each counter, in order.
    fn visit(&self, f: &mut impl FnMut(u64));
    /// Each counter, mutably, in the same order.
    fn visit_mut(&mut self, f: &mut impl FnMut(&mut u64));
    /// Adds `other`'s counters to these (wrapping).
    fn add(&mut self, other: &Self);
}

impl CounterSet for u64 {
    const WORDS: usize = 1;
    fn zeroed() -> Self {
        0
    }
    #[inline]
    fn visit(&self, f: &mut impl FnMut(u64)) {
        f(*self);
    }
    #[inline]
    fn visit_mut(&mut self, f: &mut impl FnMut(&mut u64)) {
        f(self);
    }
    #[inline]
    fn add(&mut self, other: &Self) {
        *self = self.wrapping_add(*other);
    }
}

impl<const N: usize> CounterSet for [u64; N] {
    const WORDS: usize = N;
    fn zeroed() -> Self {
        [0; N]
    }
    fn visit(&self, f: &mut impl FnMut(u64)) {
        for v in self {
            f(*v);
        }
    }
    fn visit_mut(&mut self, f: &mut impl FnMut(&mut u64)) {
        for v in self {
            f(v);
        }
    }
    fn add(&mut self, other: &Self) {
        for (a, b) in self.iter_mut().zip(other) {
            *a = a.wrapping_add(*b);
        }
    }
}

/// Declares a struct whose fields are all counter sets (`u64`, arrays of
/// `u64`, or other counter sets), and its [`CounterSet`] implementation:
/// the fields are visited in declaration order.
#[macro_export]
macro_rules! counter_set {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                <Self as $crate::counter::CounterSet>::zeroed()
            }
        }

        impl $crate::counter::CounterSet for $name {
            const WORDS: usize = 0 $( + <$ty as $crate::counter::CounterSet>::WORDS )*;
            fn zeroed() -> Self {
                $name {
                    $( $field: <$ty as $crate::counter::CounterSet>::zeroed(), )*
                }
            }
            fn visit(&self, f: &mut impl FnMut(u64)) {
                $( $crate::counter::CounterSet::visit(&self.$field, f); )*
            }
            fn visit_mut(&mut self, f: &mut impl FnMut(&mut u64)) {
                $( $crate::counter::CounterSet::visit_mut(&mut self.$field, f); )*
            }
            fn add(&mut self, other: &Self) {
                $( $crate::counter::CounterSet::add(&mut self.$field, &other.$field); )*
            }
        }
    };
}

/// One counter as the views show it.
#[derive(Clone, Copy, Debug)]
pub struct CounterDef<T> {
    /// Its name in machine-read lines (`stats-sample`), snake_case; for
    /// conntrack's, its name in `conntrack -S` (None: not shown there).
    pub key: Option<&'static str>,
    /// How human-read lines call it (`xdpgw stats`, the exit report).
    pub label: &'static str,
    /// Its Prometheus metric, without the `xdpgw_` prefix (None: not
    /// exported on its own).
    pub metric: Option<&'static str>,
    /// The metric's help text.
    pub help: &'static str,
    /// A part of the counter before it (shown in parentheses after it).
    pub part: bool,
    /// Its value.
    pub get: fn(&T) -> u64,
}

/// A counter set published by its single writer (a worker) to readers on
/// other threads (the control socket's), one atomic per counter.
///
/// Relaxed stores and loads: each counter is an independent statistic,
/// and nothing else is published through them; a reader may see one
/// counter of a publication and another of the next.
#[derive(Debug)]
pub struct Published<T: CounterSet> {
    words: Box<[AtomicU64]>,
    _set: PhantomData<fn() -> T>,
}

impl<T: CounterSet> Default for Published<T> {
    fn default() -> Self {
        Published {
            words: (0..T::WORDS).map(|_| AtomicU64::new(0)).collect(),
            _set: PhantomData,
        }
    }
}

impl<T: CounterSet> Published<T> {
    /// Publishes `v` (its writer only).
    pub fn store(&self, v: &T) {
        let mut words = self.words.iter();
        v.visit(&mut |x| {
            if let Some(w) = words.next() {
                // Relaxed: see the type.
                w.store(x, Ordering::Relaxed);
            }
        });
    }

    /// The counters as last published.
    pub fn load(&self) -> T {
        let mut v = T::zeroed();
        let mut words = self.words.iter();
        v.visit_mut(&mut |x| {
            if let Some(w) = words.next() {
                // Relaxed: see the type.
                *x = w.load(Ordering::Relaxed);
            }
        });
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::counter_set! {
        struct Inner {
            a: u64,
            b: [u64; 3],
        }
    }

    crate::counter_set! {
        struct Outer {
            x: u64,
            inner: Inner,
            y: u64,
        }
    }

    #[test]
    fn a_set_is_visited_in_order_and_published_whole() {
        assert_eq!(Outer::WORDS, 6);
        let v = Outer {
            x: 1,
            inner: Inner { a: 2, b: [3, 4, 5] },
            y: 6,
        };
        let mut seen = Vec::new();
        v.visit(&mut |x| seen.push(x));
        assert_eq!(seen, [1, 2, 3, 4, 5, 6]);
        let p = Published::<Outer>::default();
        assert_eq!(p.load(), Outer::default());
        p.store(&v);
        assert_eq!(p.load(), v);
        let mut sum = v.clone();
        sum.add(&v);
        assert_eq!(sum.inner.b, [6, 8, 10]);
        assert_eq!(sum.y, 12);
    }
}
