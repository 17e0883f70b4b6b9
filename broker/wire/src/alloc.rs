//! A global allocator that makes hostile array lengths cost address space,
//! not memory, so that malformed requests cannot abort the broker.
//!
//! # The defect this defends against
//!
//! kafka-protocol 0.18 decodes `Array` and `CompactArray` fields with
//! `Vec::with_capacity(n)`, where `n` is the element count declared in the
//! frame, before it reads a single element. A 20-byte frame declaring
//! `n = i32::MAX` elements (or `u32::MAX - 1` through a varint) asks for
//! hundreds of GiB at once. The system allocator refuses, Rust's allocation
//! error handler aborts the process (there is no stable hook to turn that
//! into an error), and every connection on the broker dies with it. The
//! crate cannot be patched from here, and pre-validating every message
//! schema by hand would duplicate the codec.
//!
//! # The defence
//!
//! [`LazyLargeAlloc`] forwards ordinary allocations to [`System`]. Requests
//! of [`LARGE_THRESHOLD`] (1 GiB) or more are served by an anonymous
//! `mmap(MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)`: the kernel hands out
//! address space without reserving memory or swap for it, and commits a page
//! only when it is first written. The decoder writes elements one at a time
//! and fails with "not enough bytes" as soon as the frame runs out, so it
//! touches at most as many elements as the frame (already capped by
//! `socket.request.max.bytes`) can hold. The hostile reservation is then
//! dropped and unmapped. On 64-bit Linux a process has 128 TiB of address
//! space, enough for the few such reservations nested message schemas can
//! stack up at once.
//!
//! Nothing legitimate in the broker allocates 1 GiB in one piece: request
//! frames are capped at `socket.request.max.bytes` (100 MiB by default),
//! fetch responses by `fetch.max.bytes` (50 MiB), segments are memory-mapped
//! files rather than heap buffers, and batches are `Bytes` slices of frames.
//! Anything that does cross the threshold still gets correct, zeroed,
//! page-aligned memory; it is only committed lazily.
//!
//! # Limits
//!
//! * `MAP_NORESERVE` is honoured when `vm.overcommit_memory` is 0 (heuristic,
//!   the Linux default and what Kubernetes nodes run) or 1 (always). Under
//!   mode 2 (strict accounting) the kernel ignores the flag and charges the
//!   whole mapping against the commit limit, so the `mmap` fails, the
//!   allocation returns null, and the process aborts as before: the defence
//!   degrades to the stock behaviour.
//! * An address-space limit (`ulimit -v`, `RLIMIT_AS`) below the hostile
//!   sizes has the same effect.
//! * Alignments above 4096 bytes (more than `mmap` guarantees on every
//!   platform) go to [`System`] whatever their size.
//!
//! # Use
//!
//! The allocator is opt-in per binary (the broker, the fuzz target, tests):
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: rivulet_wire::alloc::LazyLargeAlloc = rivulet_wire::alloc::LazyLargeAlloc;
//! ```

use std::{
    alloc::{GlobalAlloc, Layout, System},
    ptr,
};

/// Allocations of this many bytes or more are mapped lazily (1 GiB).
pub const LARGE_THRESHOLD: usize = 1 << 30;

/// The largest alignment served by `mmap`. Mappings start on a page
/// boundary; 4 KiB is the smallest page size Linux uses on any architecture.
const MAP_ALIGN: usize = 4096;

/// A [`GlobalAlloc`] that serves very large requests with lazily committed
/// `MAP_NORESERVE` mappings and everything else with [`System`].
///
/// See the [module documentation](self) for why the broker needs it.
#[derive(Debug, Default, Clone, Copy)]
pub struct LazyLargeAlloc;

/// Whether a layout is (or was) served by `mmap`. `dealloc` and `realloc`
/// receive the layout used to allocate, so this decides consistently.
#[inline]
fn is_large(size: usize, align: usize) -> bool {
    size >= LARGE_THRESHOLD && align <= MAP_ALIGN
}

/// Maps `size` bytes of zeroed, lazily committed memory; null on failure.
fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with a null hint has no
    // preconditions; failure is reported as MAP_FAILED, checked below.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Unmaps a region returned by [`map`] with the same `size`.
///
/// # Safety
/// `p` must come from `map(size)` and not have been unmapped yet.
unsafe fn unmap(p: *mut u8, size: usize) {
    // SAFETY: guaranteed by the caller; munmap only fails for invalid
    // arguments, which the contract excludes, so the result is not checked.
    unsafe {
        libc::munmap(p.cast(), size);
    }
}

// SAFETY: every block handed out is either a System block (returned to
// System with the same layout) or a fresh private mapping at least `size`
// bytes long and page aligned (so aligned for any `align <= MAP_ALIGN`),
// unmapped exactly once. `is_large` depends only on the layout, which
// callers must pass back unchanged, so each block returns to its source.
unsafe impl GlobalAlloc for LazyLargeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's (valid, non-zero) layout.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            // Anonymous mappings are zero-filled by the kernel. Overriding
            // this matters: the default would write zeros over the whole
            // block and commit every page of a hostile `vec![0; n]`.
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_large(layout.size(), layout.align()) {
            // SAFETY: a large layout was allocated by `map(layout.size())`.
            unsafe { unmap(p, layout.size()) }
        } else {
            // SAFETY: a small layout was allocated by System.
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        let old_large = is_large(layout.size(), align);
        let new_large = is_large(new_size, align);
        if !old_large && !new_large {
            // SAFETY: both sides are System's; arguments forwarded unchanged.
            return unsafe { System.realloc(p, layout, new_size) };
        }
        #[cfg(target_os = "linux")]
        if old_large && new_large {
            // Moving page tables instead of copying keeps untouched pages
            // uncommitted; a copy would write (and so commit) all of them.
            // SAFETY: `p` is a live mapping of `layout.size()` bytes from
            // `map`; MREMAP_MAYMOVE lets the kernel relocate it, and on
            // success the old address is no longer ours to use.
            let q =
                unsafe { libc::mremap(p.cast(), layout.size(), new_size, libc::MREMAP_MAYMOVE) };
            return if q == libc::MAP_FAILED {
                ptr::null_mut()
            } else {
                q.cast()
            };
        }
        // Crossing the threshold or resizing a mapping: allocate the new
        // block from its own source, copy what both can hold, free the old.
        // SAFETY: the caller guarantees `new_size`, rounded up to `align`,
        // does not overflow isize, so this layout is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
        // SAFETY: new_layout is valid and non-zero (new_size > 0 per contract).
        let q = unsafe { self.alloc(new_layout) };
        if !q.is_null() {
            // SAFETY: `p` is valid for `layout.size()` bytes, `q` for
            // `new_size`; they are distinct live blocks, so no overlap.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
        }
        // On failure the old block stays valid, as GlobalAlloc requires.
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // These call the allocator directly; the crate's test binary itself
    // does not install it (tests/alloc_guard.rs does).

    #[test]
    fn small_blocks_round_trip_through_system() {
        let a = LazyLargeAlloc;
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: valid non-zero layout; the block is freed with it below.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(0xab, 100);
            let q = a.realloc(p, layout, 200);
            assert!(!q.is_null());
            assert_eq!(*q.add(99), 0xab);
            a.dealloc(q, Layout::from_size_align(200, 8).unwrap());
        }
    }

    #[test]
    fn huge_reservation_is_lazy_and_zeroed() {
        let a = LazyLargeAlloc;
        // 256 GiB: far beyond this machine's RAM, fine as address space.
        let layout = Layout::from_size_align(256 << 30, 8).unwrap();
        // SAFETY: valid layout; freed with the same layout.
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(
                !p.is_null(),
                "MAP_NORESERVE mapping refused (vm.overcommit_memory=2?)"
            );
            assert_eq!(p as usize % MAP_ALIGN, 0);
            assert_eq!(*p.add((256 << 30) - 1), 0);
            *p.add(12345) = 7;
            assert_eq!(*p.add(12345), 7);
            a.dealloc(p, layout);
        }
    }

    #[test]
    fn realloc_across_the_threshold_copies_both_ways() {
        let a = LazyLargeAlloc;
        let small = Layout::from_size_align(4096, 16).unwrap();
        // SAFETY: each block is used within its size and freed with the
        // layout it currently has.
        unsafe {
            let p = a.alloc(small);
            for i in 0..4096 {
                *p.add(i) = (i % 251) as u8;
            }
            // Up: System -> mmap.
            let big = a.realloc(p, small, LARGE_THRESHOLD + 1);
            assert!(!big.is_null());
            assert_eq!(big as usize % MAP_ALIGN, 0);
            for i in 0..4096 {
                assert_eq!(*big.add(i), (i % 251) as u8);
            }
            *big.add(LARGE_THRESHOLD) = 42;
            // mmap -> bigger mmap.
            let big_layout = Layout::from_size_align(LARGE_THRESHOLD + 1, 16).unwrap();
            let bigger = a.realloc(big, big_layout, 2 * LARGE_THRESHOLD);
            assert!(!bigger.is_null());
            assert_eq!(*bigger.add(LARGE_THRESHOLD), 42);
            assert_eq!(*bigger.add(4095), (4095 % 251) as u8);
            // Down: mmap -> System.
            let bigger_layout = Layout::from_size_align(2 * LARGE_THRESHOLD, 16).unwrap();
            let back = a.realloc(bigger, bigger_layout, 1000);
            assert!(!back.is_null());
            for i in 0..1000 {
                assert_eq!(*back.add(i), (i % 251) as u8);
            }
            a.dealloc(back, Layout::from_size_align(1000, 16).unwrap());
        }
    }

    #[test]
    fn over_aligned_large_blocks_use_system() {
        assert!(!is_large(LARGE_THRESHOLD, 2 * MAP_ALIGN));
        assert!(is_large(LARGE_THRESHOLD, MAP_ALIGN));
        assert!(!is_large(LARGE_THRESHOLD - 1, 8));
    }
}
