//! Refcounted block pool with prefix caching.
//!
//! A sequence holds its blocks through a [`BlockTable`]; dropping the table returns the blocks,
//! so a cancelled, finished or preempted sequence can never leak KV memory. Full blocks are
//! registered in a prefix cache under a hash chain (hash of the parent block's hash and the
//! block's tokens), so identical prompt prefixes map to the same physical blocks. A freed
//! block whose content is cached stays reusable until the pool needs it (LRU eviction).
//!
//! Hits are token-granular where they can be without copying K/V: past the last full block
//! that matches, a prompt may take over an idle cached block (one no sequence holds) whose
//! tokens start like the prompt's next ones. The leading tokens the two share are already in
//! that block's slots; the new owner overwrites the rest, so the block leaves the cache. A
//! prompt sent again after its first run therefore computes only its last token (as
//! llama.cpp's prompt cache does), not up to a block of tokens per request.
//!
//! The engine thread alone owns the pool, hence `Rc<RefCell<..>>` rather than a lock.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    rc::Rc,
};

use super::blocks_for;

/// Prefix cache counters in tokens (vLLM counts tokens, not blocks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Prompt tokens looked up.
    pub queries: u64,
    /// Prompt tokens found in the cache.
    pub hits: u64,
}

/// What a cached block holds; kept to rule out hash collisions on lookup.
#[derive(Debug)]
struct Content {
    hash: u64,
    parent: u64,
    tokens: Vec<u32>,
}

#[derive(Debug)]
struct Pool {
    block_size: usize,
    num_blocks: usize,
    refcount: Vec<u32>,
    /// Free blocks with no cached content: taken first.
    free_plain: Vec<u32>,
    /// Free blocks whose content is still cached, keyed by the tick they were freed.
    evictable: BTreeMap<u64, u32>,
    evict_key: Vec<Option<u64>>,
    tick: u64,
    cached: HashMap<u64, u32>,
    /// Cached blocks by the hash of their parent: where a partial match is looked for.
    children: HashMap<u64, Vec<u32>>,
    content: Vec<Option<Content>>,
    prefix_caching: bool,
    stats: PrefixCacheStats,
}

impl Pool {
    fn num_free(&self) -> usize {
        self.free_plain.len() + self.evictable.len()
    }

    /// Takes one free block, evicting the least recently freed cached block if needed.
    fn take_free(&mut self) -> Option<u32> {
        let block = match self.free_plain.pop() {
            Some(b) => b,
            None => {
                let (_, b) = self.evictable.pop_first()?;
                self.evict_key[b as usize] = None;
                self.uncache(b);
                b
            }
        };
        self.refcount[block as usize] = 1;
        Some(block)
    }

    /// Takes a reference on a cached block (possibly reviving it from the evictable set).
    fn take_cached(&mut self, block: u32) {
        let i = block as usize;
        if self.refcount[i] == 0 {
            if let Some(key) = self.evict_key[i].take() {
                self.evictable.remove(&key);
            }
        }
        self.refcount[i] += 1;
    }

    fn put(&mut self, block: u32) {
        let i = block as usize;
        if self.refcount[i] == 0 {
            return;
        }
        self.refcount[i] -= 1;
        if self.refcount[i] == 0 {
            if self.content[i].is_some() {
                self.tick += 1;
                self.evictable.insert(self.tick, block);
                self.evict_key[i] = Some(self.tick);
            } else {
                self.free_plain.push(block);
            }
        }
    }

    /// Forgets a block's cached content (the block itself stays where it is).
    fn uncache(&mut self, block: u32) {
        let Some(c) = self.content[block as usize].take() else {
            return;
        };
        if self.cached.get(&c.hash) == Some(&block) {
            self.cached.remove(&c.hash);
        }
        if let Some(siblings) = self.children.get_mut(&c.parent) {
            siblings.retain(|&b| b != block);
            if siblings.is_empty() {
                self.children.remove(&c.parent);
            }
        }
    }

    /// The idle cached child of `parent` sharing the longest run of leading tokens with
    /// `chunk` (at least one) that may be taken over, with that length. Taking a block over
    /// makes the cached blocks after it unreachable, so a block with cached children is taken
    /// only by a prompt that ends inside it (`prompt_ends` and the whole chunk shared: the
    /// same prompt sent again); a prompt that goes on past it (another conversation that
    /// diverges there) never cuts a cached conversation short.
    fn idle_partial(&self, parent: u64, chunk: &[u32], prompt_ends: bool) -> Option<(u32, usize)> {
        self.children
            .get(&parent)?
            .iter()
            .filter(|&&b| self.refcount[b as usize] == 0)
            .filter_map(|&b| {
                let c = self.content[b as usize].as_ref()?;
                let shared = c
                    .tokens
                    .iter()
                    .zip(chunk)
                    .take_while(|(x, y)| x == y)
                    .count();
                let leaf = !self.children.contains_key(&c.hash);
                let resent = prompt_ends && shared == chunk.len();
                (shared > 0 && (leaf || resent)).then_some((b, shared))
            })
            .max_by_key(|&(b, shared)| (shared, std::cmp::Reverse(b)))
    }

    /// Takes an idle cached block for one sequence to write into: it leaves the cache.
    fn adopt(&mut self, block: u32) {
        let i = block as usize;
        if let Some(key) = self.evict_key[i].take() {
            self.evictable.remove(&key);
        }
        self.uncache(block);
        self.refcount[i] = 1;
    }

    fn lookup(&self, parent: u64, chunk: &[u32]) -> Option<(u32, u64)> {
        let hash = chain_hash(parent, chunk);
        let &block = self.cached.get(&hash)?;
        let c = self.content[block as usize].as_ref()?;
        (c.parent == parent && c.tokens == chunk).then_some((block, hash))
    }
}

fn chain_hash(parent: u64, chunk: &[u32]) -> u64 {
    // SipHash with fixed keys: deterministic across runs, so hashes are stable in tests.
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    chunk.hash(&mut h);
    h.finish()
}

/// Hash-chain seed for the first block of a sequence.
const ROOT_HASH: u64 = 0x9e37_79b9_7f4a_7c15;

/// Cheap handle to the block pool (engine thread only).
#[derive(Debug, Clone)]
pub struct BlockManager {
    pool: Rc<RefCell<Pool>>,
}

impl BlockManager {
    pub fn new(num_blocks: usize, block_size: usize, prefix_caching: bool) -> Self {
        let block_size = block_size.max(1);
        // Reverse order so `pop` hands out low block ids first (easier to read in logs).
        let free_plain = (0..num_blocks as u32).rev().collect();
        let pool = Pool {
            block_size,
            num_blocks,
            refcount: vec![0; num_blocks],
            free_plain,
            evictable: BTreeMap::new(),
            evict_key: vec![None; num_blocks],
            tick: 0,
            cached: HashMap::new(),
            children: HashMap::new(),
            content: (0..num_blocks).map(|_| None).collect(),
            prefix_caching,
            stats: PrefixCacheStats::default(),
        };
        Self {
            pool: Rc::new(RefCell::new(pool)),
        }
    }

    pub fn block_size(&self) -> usize {
        self.pool.borrow().block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.pool.borrow().num_blocks
    }

    /// Blocks that can be handed out now (free, or holding evictable cached content).
    pub fn num_free(&self) -> usize {
        self.pool.borrow().num_free()
    }

    /// Fraction of blocks held by live sequences (cached-but-unused blocks count as free).
    pub fn usage(&self) -> f64 {
        let p = self.pool.borrow();
        if p.num_blocks == 0 {
            return 0.0;
        }
        1.0 - p.num_free() as f64 / p.num_blocks as f64
    }

    pub fn prefix_stats(&self) -> PrefixCacheStats {
        self.pool.borrow().stats
    }

    /// A table for a sequence about to be (re)computed from `tokens`, pre-filled with the
    /// cached blocks of its longest cached prefix. Returns the table and how many tokens are
    /// already in the cache. At least one token is always left to compute (the model must run
    /// to produce logits), and a partially matching block is never shared: it is taken over
    /// only when idle (see the module docs).
    pub fn allocate(&self, tokens: &[u32]) -> (BlockTable, usize) {
        let mut table = BlockTable {
            pool: Rc::clone(&self.pool),
            blocks: Vec::new(),
            registered: 0,
            last_hash: ROOT_HASH,
        };
        let mut p = self.pool.borrow_mut();
        if !p.prefix_caching || tokens.is_empty() {
            return (table, 0);
        }
        let bs = p.block_size;
        let max_blocks = (tokens.len() - 1) / bs;
        for chunk in tokens.chunks_exact(bs).take(max_blocks) {
            match p.lookup(table.last_hash, chunk) {
                Some((block, hash)) => {
                    p.take_cached(block);
                    table.blocks.push(block);
                    table.registered += 1;
                    table.last_hash = hash;
                }
                None => break,
            }
        }
        let mut cached = table.blocks.len() * bs;
        let end = (cached + bs).min(tokens.len() - 1);
        let prompt_ends = end == tokens.len() - 1;
        if let Some((block, shared)) =
            p.idle_partial(table.last_hash, &tokens[cached..end], prompt_ends)
        {
            p.adopt(block);
            table.blocks.push(block);
            cached += shared;
        }
        p.stats.queries += tokens.len() as u64;
        p.stats.hits += cached as u64;
        (table, cached)
    }
}

/// The physical blocks of one sequence, in order. Dropping it returns them to the pool.
#[derive(Debug)]
pub struct BlockTable {
    pool: Rc<RefCell<Pool>>,
    blocks: Vec<u32>,
    /// Leading blocks whose content is registered in (or came from) the prefix cache.
    registered: usize,
    last_hash: u64,
}

impl BlockTable {
    pub fn blocks(&self) -> &[u32] {
        &self.blocks
    }

    /// Grows the table to hold `num_tokens` tokens. All or nothing: false (and no change)
    /// when the pool lacks free blocks.
    pub fn ensure(&mut self, num_tokens: usize) -> bool {
        let mut p = self.pool.borrow_mut();
        let need = blocks_for(num_tokens, p.block_size).saturating_sub(self.blocks.len());
        if need > p.num_free() {
            return false;
        }
        for _ in 0..need {
            match p.take_free() {
                Some(b) => self.blocks.push(b),
                None => return false,
            }
        }
        true
    }

    /// Blocks `ensure(num_tokens)` would still need to take from the pool.
    pub fn missing_blocks(&self, num_tokens: usize) -> usize {
        let bs = self.pool.borrow().block_size;
        blocks_for(num_tokens, bs).saturating_sub(self.blocks.len())
    }

    /// Registers the full blocks among the first `num_computed` of `tokens` (whose K/V are
    /// now written) in the prefix cache.
    pub fn register_computed(&mut self, tokens: &[u32], num_computed: usize) {
        let mut p = self.pool.borrow_mut();
        if !p.prefix_caching {
            return;
        }
        let bs = p.block_size;
        let full = (num_computed.min(tokens.len()) / bs).min(self.blocks.len());
        while self.registered < full {
            let i = self.registered;
            let chunk = &tokens[i * bs..(i + 1) * bs];
            let hash = chain_hash(self.last_hash, chunk);
            let block = self.blocks[i];
            // Another sequence may have cached the same content first: keep its block as the
            // canonical one; ours stays private and is freed plainly.
            if !p.cached.contains_key(&hash) && p.content[block as usize].is_none() {
                p.cached.insert(hash, block);
                p.children.entry(self.last_hash).or_default().push(block);
                p.content[block as usize] = Some(Content {
                    hash,
                    parent: self.last_hash,
                    tokens: chunk.to_vec(),
                });
            }
            self.registered += 1;
            self.last_hash = hash;
        }
    }
}

impl Drop for BlockTable {
    fn drop(&mut self) {
        // The pool is only borrowed inside BlockManager/BlockTable methods, never across a
        // drop, so this borrow cannot fail; if it ever did, leaking beats panicking in drop.
        if let Ok(mut p) = self.pool.try_borrow_mut() {
            for &b in self.blocks.iter().rev() {
                p.put(b);
            }
        } else {
            tracing::error!(
                blocks = self.blocks.len(),
                "KV block pool busy on drop; blocks leaked"
            );
        }
    }
}

#[cfg(test)]
#[path = "block_manager/tests.rs"]
mod tests;
