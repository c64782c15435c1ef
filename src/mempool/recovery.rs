//! Recovery after a lock holder died, and the full invariant check used by tests.
//!
//! Recovery relies only on the physical block chain, which every critical section keeps
//! walkable at every instruction (see "Crash consistency" in the mempool module docs).
//! Everything else (prev-physical links, free lists, bitmaps, statistics) is derived from
//! the chain and rebuilt. Recovery is itself crash-consistent and idempotent: its only
//! chain changes are single-store merges of adjacent free blocks, so if the recovering
//! process dies too, the next locker gets `EOWNERDEAD` again and simply recovers again.
//!
//! Every access here happens with the lock held, hence `Relaxed` (as in [`super::heap`]):
//! the lock orders them with the accesses of earlier and later holders, and the kernel's
//! handling of the holder's death (which hands us the lock) orders its stores before ours.

use std::sync::atomic::Ordering::Relaxed;

use super::heap::Locked;
use super::layout::{
    class_of, flag, round_up, FL_COUNT, GRANULE, HEADER, MIN_BLOCK, NIL, SL_COUNT, STATE_UNRESERVED,
};
use super::testing::{crash_point, CrashPoint, HeapReport};

impl Locked<'_> {
    /// Repairs the heap after the previous lock holder died mid-critical-section.
    ///
    /// Errors (the chain itself is broken, which no crash point can cause) leave the
    /// pool poisoned: later operations fail instead of corrupting memory.
    pub(crate) fn recover(&self) -> Result<(), String> {
        let hdr = self.hdr;
        let heap = self.heap();

        // Pass 1: walk the chain, fix prev links, merge adjacent free blocks, clear the
        // generation of free blocks (a death between "mark free" and "clear generation").
        let mut off = heap.start;
        let mut prev = NIL;
        let mut prev_free = false;
        while off < heap.end {
            let b = self.block(off);
            let sf = b.size_flags.load(Relaxed);
            let size = sf & !flag::MASK;
            if size < MIN_BLOCK || size % GRANULE != 0 || size > heap.end - off {
                hdr.stats.poisoned.store(1, Relaxed);
                return Err(format!("block at {off} has impossible size {size}"));
            }
            // A death between a seal and the size store it goes with leaves a stale seal:
            // re-seal from the chain (what recovery trusts), keeping the state bit.
            let state = b.state.load(Relaxed) & STATE_UNRESERVED;
            b.state.store(self.seal(off, size) | state, Relaxed);
            let free = sf & flag::FREE != 0;
            if free && prev_free {
                let p = self.block(prev);
                let p_sf = p.size_flags.load(Relaxed);
                let p_size = p_sf & !flag::MASK;
                let merged = p_size + size;
                let watermark = hdr.stats.populated.load(Relaxed);
                let estimate = self.populated_estimate(prev, p_size, p_sf, watermark)
                    + self.populated_estimate(off, size, sf, watermark);
                p.len.store(estimate.min(merged), Relaxed);
                // One store, like the merges of `free`: a death here leaves a valid chain.
                self.store_size(
                    prev,
                    merged | flag::FREE | ((p_sf | sf) & flag::UNPOPULATED),
                    0,
                );
                crash_point(CrashPoint::RecoveryAfterMerge);
                off += size;
                continue;
            }
            b.prev_phys.store(prev, Relaxed);
            if free {
                b.generation.store(0, Relaxed);
            }
            prev = off;
            prev_free = free;
            off += size;
        }

        // Pass 2: rebuild the free lists, bitmaps, cache count and statistics from the
        // chain.
        hdr.cached.store(0, Relaxed);
        hdr.fl_bitmap.store(0, Relaxed);
        for fl in 0..FL_COUNT {
            hdr.sl_bitmap[fl].store(0, Relaxed);
            for sl in 0..SL_COUNT {
                hdr.heads[fl][sl].store(NIL, Relaxed);
            }
        }
        let stats = &hdr.stats;
        let (mut in_use, mut live, mut max_gen) = (0, 0, 0);
        let last_header = prev.max(heap.start);
        let covered = round_up(last_header + HEADER, self.page).expect("inside the region");
        if covered > stats.populated.load(Relaxed) {
            stats.populated.store(covered, Relaxed);
        }
        let mut off = heap.start;
        while off < heap.end {
            let b = self.block(off);
            let sf = b.size_flags.load(Relaxed);
            let size = sf & !flag::MASK;
            if sf & flag::FREE != 0 {
                if let Err(c) = self.insert_free(off, size) {
                    stats.poisoned.store(1, Relaxed);
                    return Err(c.0);
                }
            } else {
                in_use += size;
                live += 1;
                max_gen = max_gen.max(b.generation.load(Relaxed));
            }
            off += size;
        }
        // An allocation that died between its commit and raising the populated watermark
        // leaves a reachable header above it. Its page was written, hence populated; the
        // pages between the old watermark and it are either populated already (small
        // allocations populate before writing), or the payload of a used block in state
        // UNRESERVED, or the interior of a front piece flagged UNPOPULATED (large ones).
        stats.in_use.store(in_use, Relaxed);
        stats.live.store(live, Relaxed);
        stats
            .peak
            .store(stats.peak.load(Relaxed).max(in_use), Relaxed);
        stats
            .generation
            .store(stats.generation.load(Relaxed).max(max_gen), Relaxed);
        stats
            .recoveries
            .store(stats.recoveries.load(Relaxed) + 1, Relaxed);
        Ok(())
    }

    /// Walks the whole heap and checks every invariant; the first violation is the error.
    pub(crate) fn check(&self) -> Result<HeapReport, String> {
        let hdr = self.hdr;
        let heap = self.heap();
        let stats = &hdr.stats;
        let watermark = stats.populated.load(Relaxed);
        if watermark % self.page != 0 || watermark > self.end() {
            return Err(format!(
                "populate watermark {watermark} not a page boundary in the region"
            ));
        }
        let mut report = HeapReport {
            recoveries: stats.recoveries.load(Relaxed),
            ..HeapReport::default()
        };
        let (mut off, mut prev, mut prev_free) = (heap.start, NIL, false);
        while off < heap.end {
            if off >= watermark {
                return Err(format!(
                    "block header at {off} above the watermark {watermark}"
                ));
            }
            let (b, sf) = self.checked(off).map_err(|c| c.0)?;
            let size = sf & !flag::MASK;
            if size % GRANULE != 0 {
                return Err(format!("block at {off}: bad size {size}"));
            }
            if b.prev_phys.load(Relaxed) != prev {
                return Err(format!("block at {off}: prev_phys != {prev}"));
            }
            if sf & flag::FREE != 0 {
                if prev_free {
                    return Err(format!("adjacent free blocks at {prev} and {off}"));
                }
                if b.generation.load(Relaxed) != 0 {
                    return Err(format!("free block at {off} has a generation"));
                }
                if !self.in_free_list(off, size) {
                    return Err(format!("free block at {off} ({size} B) not in its list"));
                }
                report.free_blocks += 1;
                report.free_bytes += size as usize;
                report.cached += b.tag.load(Relaxed) as usize;
                report.largest_free = report.largest_free.max(size as usize);
            } else {
                if sf & (flag::UNPOPULATED | flag::ZEROED) != 0 {
                    return Err(format!("used block at {off} has free-block flags"));
                }
                let generation = b.generation.load(Relaxed);
                if generation == 0 || generation > stats.generation.load(Relaxed) {
                    return Err(format!("used block at {off}: bad generation {generation}"));
                }
                if b.len.load(Relaxed) > size - HEADER {
                    return Err(format!("used block at {off}: len exceeds size"));
                }
                report.used_blocks += 1;
                report.used_bytes += size as usize;
            }
            prev = off;
            prev_free = sf & flag::FREE != 0;
            off += size;
        }
        if off != heap.end {
            return Err(format!("chain ends at {off}, heap ends at {}", heap.end));
        }
        let listed = self.count_listed()?;
        if hdr.cached.load(Relaxed) != report.cached as u64 {
            return Err(format!(
                "the cache count says {} B, the free blocks were counted with {} B",
                hdr.cached.load(Relaxed),
                report.cached
            ));
        }
        if listed != report.free_blocks {
            return Err(format!(
                "{listed} blocks in free lists, {} free blocks in the chain",
                report.free_blocks
            ));
        }
        let in_use = stats.in_use.load(Relaxed) as usize;
        let live = stats.live.load(Relaxed) as usize;
        if in_use != report.used_bytes || live != report.used_blocks {
            return Err(format!(
                "stats say {in_use} B in {live} blocks, the walk found {} B in {}",
                report.used_bytes, report.used_blocks
            ));
        }
        if (stats.peak.load(Relaxed) as usize) < in_use {
            return Err("peak below in_use".to_string());
        }
        Ok(report)
    }

    fn in_free_list(&self, off: u64, size: u64) -> bool {
        let (fl, sl) = class_of(size);
        let mut cur = self.hdr.heads[fl][sl].load(Relaxed);
        for _ in 0..self.max_blocks() {
            if cur == NIL {
                return false;
            }
            if cur == off {
                return true;
            }
            let Ok((b, _)) = self.checked(cur) else {
                return false;
            };
            cur = b.next_free.load(Relaxed);
        }
        false
    }

    /// Counts list entries, checking links, classes and bitmaps on the way.
    fn count_listed(&self) -> Result<usize, String> {
        let hdr = self.hdr;
        let mut count = 0;
        for fl in 0..FL_COUNT {
            let sl_map = hdr.sl_bitmap[fl].load(Relaxed);
            if ((hdr.fl_bitmap.load(Relaxed) >> fl) & 1 == 1) != (sl_map != 0) {
                return Err(format!("fl bitmap disagrees with sl bitmap {fl}"));
            }
            for sl in 0..SL_COUNT {
                let mut cur = hdr.heads[fl][sl].load(Relaxed);
                if ((sl_map >> sl) & 1 == 1) != (cur != NIL) {
                    return Err(format!("sl bitmap disagrees with list ({fl},{sl})"));
                }
                let mut prev = NIL;
                while cur != NIL {
                    let (b, sf) = self.checked(cur).map_err(|c| c.0)?;
                    if sf & flag::FREE == 0 {
                        return Err(format!("used block {cur} in free list ({fl},{sl})"));
                    }
                    if class_of(sf & !flag::MASK) != (fl, sl) {
                        return Err(format!("block {cur} in the wrong list ({fl},{sl})"));
                    }
                    if b.prev_free.load(Relaxed) != prev {
                        return Err(format!("block {cur}: bad prev_free"));
                    }
                    count += 1;
                    if count > (self.heap().end / GRANULE) as usize {
                        return Err("free list cycle".to_string());
                    }
                    prev = cur;
                    cur = b.next_free.load(Relaxed);
                }
            }
        }
        Ok(count)
    }
}
