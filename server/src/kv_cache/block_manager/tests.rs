use super::*;

fn toks(n: usize, base: u32) -> Vec<u32> {
    (0..n as u32).map(|i| base + i).collect()
}

#[test]
fn ensure_allocates_and_drop_frees() {
    let bm = BlockManager::new(8, 4, false);
    let (mut t, cached) = bm.allocate(&toks(10, 0));
    assert_eq!(cached, 0);
    assert!(t.ensure(10));
    assert_eq!(t.blocks().len(), 3);
    assert_eq!(bm.num_free(), 5);
    assert!((bm.usage() - 3.0 / 8.0).abs() < 1e-9);
    assert!(t.ensure(12), "still fits in 3 blocks");
    assert_eq!(t.blocks().len(), 3);
    drop(t);
    assert_eq!(bm.num_free(), 8);
    assert_eq!(bm.usage(), 0.0);
}

#[test]
fn ensure_is_all_or_nothing() {
    let bm = BlockManager::new(4, 4, false);
    let (mut a, _) = bm.allocate(&toks(8, 0));
    assert!(a.ensure(8));
    let (mut b, _) = bm.allocate(&toks(12, 0));
    assert!(!b.ensure(12), "needs 3 blocks, 2 free");
    assert_eq!(b.blocks().len(), 0);
    assert_eq!(bm.num_free(), 2);
    assert_eq!(b.missing_blocks(12), 3);
    assert!(b.ensure(8));
    assert_eq!(bm.num_free(), 0);
}

#[test]
fn prefix_hits_share_blocks_and_count_tokens() {
    let bm = BlockManager::new(16, 4, true);
    let prompt = toks(10, 100);
    let (mut a, cached) = bm.allocate(&prompt);
    assert_eq!(cached, 0);
    assert!(a.ensure(10));
    a.register_computed(&prompt, 10);
    // Same first 8 tokens, different tail.
    let mut other = prompt[..8].to_vec();
    other.extend([7, 7, 7]);
    let (mut b, cached) = bm.allocate(&other);
    assert_eq!(cached, 8);
    assert_eq!(&b.blocks()[..2], &a.blocks()[..2]);
    assert!(b.ensure(11));
    assert_ne!(b.blocks()[2], a.blocks()[2]);
    let s = bm.prefix_stats();
    assert_eq!(s.queries, 10 + 11);
    assert_eq!(s.hits, 8);
    // Shared blocks are held once in the usage count.
    assert_eq!(bm.num_free(), 16 - 3 - 1);
    drop(a);
    assert_eq!(bm.num_free(), 16 - 3, "shared blocks stay held by b");
    drop(b);
    assert_eq!(bm.num_free(), 16);
    assert_eq!(bm.usage(), 0.0);
}

#[test]
fn fully_cached_prompt_leaves_last_block_to_compute() {
    let bm = BlockManager::new(8, 4, true);
    let prompt = toks(8, 0);
    let (mut a, _) = bm.allocate(&prompt);
    assert!(a.ensure(8));
    a.register_computed(&prompt, 8);
    // While `a` holds its blocks, the last one is recomputed, never shared for writing.
    let (b, cached) = bm.allocate(&prompt);
    assert_eq!(cached, 4);
    drop(b);
    drop(a);
    // Once idle, it is taken over: all but the last token are in the cache.
    let (c, cached) = bm.allocate(&prompt);
    assert_eq!(cached, 7);
    assert_eq!(c.blocks().len(), 2);
}

#[test]
fn an_idle_partially_matching_block_is_taken_over_and_leaves_the_cache() {
    let bm = BlockManager::new(16, 4, true);
    // A 10-token prompt and 2 generated tokens: 3 full blocks, all registered.
    let mut run = toks(10, 100);
    run.extend([7, 8]);
    let (mut a, _) = bm.allocate(&run);
    assert!(a.ensure(12));
    a.register_computed(&run, 12);
    let a_blocks = a.blocks().to_vec();
    drop(a);
    // The same prompt again: 2 full blocks, then 1 token of the third (shared with the
    // prompt's last 2 tokens, of which the last is left to compute).
    let prompt = &run[..10];
    let (mut b, cached) = bm.allocate(prompt);
    assert_eq!(cached, 9);
    assert_eq!(b.blocks(), &a_blocks[..]);
    let s = bm.prefix_stats();
    assert_eq!((s.queries, s.hits), (12 + 10, 9));
    // The taken block is b's alone now: its old content is found by nobody.
    let (c, cached) = bm.allocate(&run);
    assert_eq!(cached, 8, "the third block left the cache");
    assert_ne!(c.blocks().get(2), Some(&a_blocks[2]));
    drop(c);
    // b writes its own tokens there; once full, the block is cached under its new content.
    let mut other = prompt.to_vec();
    other.extend([1, 2]);
    assert!(b.ensure(12));
    b.register_computed(&other, 12);
    drop(b);
    let (_d, cached) = bm.allocate(&[other.clone(), vec![3]].concat());
    assert_eq!(cached, 12);
    // It shares 2 tokens with `run`'s third block, but d holds it: never taken.
    let (_e, cached) = bm.allocate(&run);
    assert_eq!(cached, 8);
}

#[test]
fn freed_cached_blocks_are_reused_until_evicted_lru() {
    let bm = BlockManager::new(3, 2, true);
    let p1 = vec![1, 2, 3];
    let (mut a, _) = bm.allocate(&p1);
    assert!(a.ensure(3));
    a.register_computed(&p1, 3);
    drop(a);
    assert_eq!(bm.num_free(), 3);
    // Cached block survives the free and is found again.
    let (b, cached) = bm.allocate(&p1);
    assert_eq!(cached, 2);
    drop(b);
    // Fill the whole pool: the cached block gets evicted.
    let p2 = vec![9, 9, 9, 9, 9, 9];
    let (mut c, cached) = bm.allocate(&p2);
    assert_eq!(cached, 0);
    assert!(c.ensure(6));
    drop(c);
    let (_d, cached) = bm.allocate(&p1);
    assert_eq!(cached, 0, "evicted content is no longer found");
}

#[test]
fn chain_hash_depends_on_parent() {
    let bm = BlockManager::new(8, 2, true);
    let p1 = vec![1, 2, 5, 6, 0];
    let (mut a, _) = bm.allocate(&p1);
    assert!(a.ensure(5));
    a.register_computed(&p1, 5);
    // Second block's tokens match but its parent differs: no hit past the first block.
    let p2 = vec![3, 4, 5, 6, 0];
    let (_b, cached) = bm.allocate(&p2);
    assert_eq!(cached, 0);
    let p3 = vec![1, 2, 5, 6, 1];
    let (_c, cached) = bm.allocate(&p3);
    assert_eq!(cached, 4);
}

#[test]
fn prefix_caching_off_never_hits() {
    let bm = BlockManager::new(8, 2, false);
    let p = vec![1, 2, 3, 4, 5];
    let (mut a, _) = bm.allocate(&p);
    assert!(a.ensure(5));
    a.register_computed(&p, 5);
    let (_b, cached) = bm.allocate(&p);
    assert_eq!(cached, 0);
}

#[test]
fn a_prompt_diverging_inside_a_cached_conversation_does_not_cut_it_short() {
    let bm = BlockManager::new(32, 4, true);
    // Conversation A: 20 tokens computed, 5 full blocks cached, idle.
    let a_run = toks(20, 100);
    let (mut a, _) = bm.allocate(&a_run);
    assert!(a.ensure(20));
    a.register_computed(&a_run, 20);
    drop(a);
    // B shares A's first 6 tokens, then goes on: A's second block (which has cached
    // children) is not taken over, so B computes from token 4.
    let mut b_prompt = a_run[..6].to_vec();
    b_prompt.extend([1, 2, 3, 4, 5, 6]);
    let (b, cached) = bm.allocate(&b_prompt);
    assert_eq!(cached, 4);
    drop(b);
    // A's next turn still finds all of A.
    let mut a_next = a_run.clone();
    a_next.extend([9, 9]);
    let (_a2, cached) = bm.allocate(&a_next);
    assert_eq!(cached, 20);
}
