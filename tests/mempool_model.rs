//! The allocator against a model: random sequences of allocations (any size and
//! alignment, tagged or not), frees, hand-overs through `RawBlock` and tagged frees,
//! checking after every step that blocks are aligned and keep their contents (no two
//! live blocks overlap), that the statistics match the model exactly, and that the heap
//! walk finds every invariant intact.

use procyon::{Block, Mempool};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_log: u32,
        tag: u64,
    },
    Free(usize),
    Handover(usize),
    FreeTagged(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..70_000, 0u32..13, 0u64..3)
            .prop_map(|(size, align_log, tag)| Op::Alloc { size, align_log, tag }),
        3 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::Handover),
        1 => (1u64..3).prop_map(Op::FreeTagged),
    ]
}

struct Live {
    block: Block,
    fill: u8,
    tag: u64,
    align: usize,
}

/// Smallest block a request of `size` bytes takes: a 64-byte header plus the size rounded
/// up to 64 (a split leftover under 128 bytes may add 64 more).
fn min_block(size: usize) -> usize {
    64 + size.max(1).div_ceil(64) * 64
}

fn check(pool: &Mempool, live: &[Live]) -> Result<(), TestCaseError> {
    for l in live {
        prop_assert_eq!(l.block.as_ptr() as usize % l.align.max(64), 0);
        prop_assert!(
            l.block.as_bytes().iter().all(|&b| b == l.fill),
            "contents lost"
        );
    }
    let usage = pool.usage();
    prop_assert_eq!(usage.allocations, live.len());
    let min: usize = live.iter().map(|l| min_block(l.block.len())).sum();
    prop_assert!(usage.in_use >= min && usage.in_use <= min + 64 * live.len());
    let report = pool.__check_invariants().map_err(TestCaseError::fail)?;
    prop_assert_eq!(report.used_blocks, live.len());
    prop_assert!(
        report.free_blocks <= live.len() + 1,
        "uncoalesced free blocks"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn allocator_matches_the_model(ops in proptest::collection::vec(op(), 1..160)) {
        let pool = Mempool::new(8 << 20).unwrap();
        let heap = pool.__check_invariants().unwrap().largest_free;
        let mut live: Vec<Live> = Vec::new();
        let mut live_bytes = 0usize;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Alloc { size, align_log, tag } => {
                    let align = 1usize << align_log;
                    // Far from full (live <= 1 MiB of 8), an allocation must succeed.
                    if live_bytes + size > 1 << 20 {
                        continue;
                    }
                    let mut block = pool.alloc_tagged(size, align, tag).unwrap();
                    let fill = (step % 251) as u8 + 1;
                    block.as_bytes_mut().fill(fill);
                    live_bytes += size;
                    live.push(Live { block, fill, tag, align });
                }
                Op::Free(i) if !live.is_empty() => {
                    let l = live.swap_remove(i % live.len());
                    live_bytes -= l.block.len();
                }
                Op::Handover(i) if !live.is_empty() => {
                    let i = i % live.len();
                    let l = live.swap_remove(i);
                    let raw = l.block.into_raw();
                    let block = pool.adopt(raw).unwrap();
                    prop_assert!(pool.adopt(raw).is_err());
                    live.push(Live { block, ..l });
                }
                Op::FreeTagged(tag) => {
                    let (gone, kept): (Vec<Live>, Vec<Live>) =
                        live.into_iter().partition(|l| l.tag == tag);
                    live = kept;
                    let raws: Vec<_> = gone.into_iter().map(|l| l.block.into_raw()).collect();
                    // SAFETY: the tagged blocks' handles were turned into `raws`, which are
                    // only used below to check they are dead.
                    let freed = unsafe { pool.free_tagged(tag) }.unwrap();
                    prop_assert_eq!(freed, raws.len());
                    for raw in raws {
                        live_bytes -= raw.len() as usize;
                        prop_assert!(pool.free_raw(raw).is_err());
                    }
                }
                _ => {}
            }
            check(&pool, &live)?;
        }
        live.clear();
        let report = pool.__check_invariants().unwrap();
        prop_assert_eq!((report.free_blocks, report.largest_free), (1, heap));
        prop_assert_eq!(pool.usage().in_use, 0);
    }
}
