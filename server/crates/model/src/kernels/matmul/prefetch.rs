//! Software prefetch: the hardware prefetchers alone leave DRAM idle while a weight row that
//! is already in cache is multiplied with several input rows.

/// Prefetch hints for a slice spread evenly over the `n` steps of a loop, one per
/// 64-byte line, so that the slice is in cache when the loop ends.
pub struct Spread<'a, P> {
    pf: &'a [P],
    next: usize,
    per_step: usize,
    per_line: usize,
}

impl<'a, P> Spread<'a, P> {
    #[inline(always)]
    pub fn new(pf: &'a [P], n: usize) -> Self {
        let per_line = (64 / core::mem::size_of::<P>().max(1)).max(1);
        Self {
            pf,
            next: 0,
            per_step: pf.len().div_ceil(n.max(1)).next_multiple_of(per_line),
            per_line,
        }
    }

    /// Issues this step's share of the hints.
    #[inline(always)]
    pub fn step(&mut self) {
        let end = (self.next + self.per_step).min(self.pf.len());
        while self.next < end {
            l2(&self.pf[self.next]);
            self.next += self.per_line;
        }
    }
}

/// Hints that the cache line holding `v` will be read soon (into L2). A hint only: it
/// never faults and has no effect on results.
#[inline(always)]
pub fn l2<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint that cannot fault, and the pointer comes from a live
    // reference.
    #[allow(unsafe_code)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(
            (v as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}
