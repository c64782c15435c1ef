//! [`SharedHashMap<K, V>`]: a hash map of plain-data keys and values in the mempool,
//! shared by every process of the tree; open addressing with linear probing, grows.
//!
//! The data block holds `cap` (a power of two) control bytes (`EMPTY`, `FULL`,
//! `DELETED`), then `cap` keys, then `cap` values. Keys hash with SipHash under fixed keys
//! (`DefaultHasher::new()`), so every process of the tree, forked or started from a
//! fresh image of the same executable, probes the same slots. The table grows (doubles,
//! rehashing into a new block) when used plus deleted slots pass 7/8 of `cap`; a table
//! full of deletions is rehashed at the same size.
//!
//! Writes under the lock, in this order: key and value, then the control byte, then the
//! counts. A holder that dies between the control byte and the counts leaves the counts
//! off by one: the next locker recounts them from the control bytes (the repair). A
//! value overwritten in place by a dying `insert` may be torn; a key never is (a slot's
//! key is written only while its control byte says the slot is unused).

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytemuck::Pod;

use super::storage::Storage;
use super::{enter, HandleWait};
use crate::error::{Error, Result};
use crate::mempool::{pool_out_of_memory, Mempool};
use crate::sync::object::{typed_desc, Body, Kind, Object, Shape};
use crate::sync::raw_lock::{Held, RawLock};

const EMPTY: u8 = 0;
const FULL: u8 = 1;
const DELETED: u8 = 2;
/// Slots of a table's first data block.
const MIN_CAP: u64 = 16;

/// The block of a [`SharedHashMap<K, V>`].
#[repr(C)]
pub(crate) struct MapBody {
    lock: RawLock,
    /// Slots `FULL`.
    len: AtomicU64,
    /// Slots `DELETED`.
    deleted: AtomicU64,
    /// Slots in the data block (0 before the first insert).
    cap: AtomicU64,
    storage: Storage,
}

impl Body for MapBody {
    fn release(&self, pool: &Mempool) {
        self.storage.release(pool);
    }
}

/// Where the three arrays of a table of `cap` slots start in its block, and its size.
#[derive(Clone, Copy)]
struct Layout {
    cap: usize,
    keys: usize,
    values: usize,
    bytes: usize,
    align: usize,
}

impl Layout {
    fn new<K, V>(cap: u64) -> Option<Layout> {
        let cap = usize::try_from(cap).ok()?;
        let keys = cap.next_multiple_of(align_of::<K>());
        let values = keys
            .checked_add(cap.checked_mul(size_of::<K>())?)?
            .next_multiple_of(align_of::<V>());
        let bytes = values.checked_add(cap.checked_mul(size_of::<V>())?)?;
        Some(Layout {
            cap,
            keys,
            values,
            bytes,
            align: align_of::<K>().max(align_of::<V>()),
        })
    }
}

/// A table's arrays at `base`, laid out as `layout` says.
struct Table<K, V> {
    base: *mut u8,
    layout: Layout,
    _types: PhantomData<(K, V)>,
}

impl<K: Pod + Eq + Hash, V: Pod> Table<K, V> {
    /// # Safety
    /// `base` holds a table of `layout` (initialized control bytes; keys and values of
    /// `FULL` slots), and the caller holds the map's lock for as long as it uses it.
    unsafe fn new(base: *mut u8, layout: Layout) -> Self {
        Table {
            base,
            layout,
            _types: PhantomData,
        }
    }

    fn ctrl(&self, i: usize) -> u8 {
        debug_assert!(i < self.layout.cap);
        // SAFETY: `i < cap`, inside the control bytes (the `new` contract).
        unsafe { self.base.add(i).read() }
    }

    fn set_ctrl(&self, i: usize, c: u8) {
        debug_assert!(i < self.layout.cap);
        // SAFETY: as in `ctrl`; we hold the lock, so nobody else writes the table.
        unsafe { self.base.add(i).write(c) }
    }

    fn key_ptr(&self, i: usize) -> *mut K {
        debug_assert!(i < self.layout.cap);
        // SAFETY: inside the key array (`Layout` sizes it for `cap` keys, aligned).
        unsafe { self.base.add(self.layout.keys).cast::<K>().add(i) }
    }

    fn value_ptr(&self, i: usize) -> *mut V {
        debug_assert!(i < self.layout.cap);
        // SAFETY: inside the value array (`Layout` sizes it for `cap` values, aligned).
        unsafe { self.base.add(self.layout.values).cast::<V>().add(i) }
    }

    fn key(&self, i: usize) -> K {
        // SAFETY: `key_ptr` is in bounds and aligned; any bytes are a valid `K: Pod`.
        unsafe { self.key_ptr(i).read() }
    }

    fn value(&self, i: usize) -> V {
        // SAFETY: as in `key`.
        unsafe { self.value_ptr(i).read() }
    }

    /// The slot holding `key`, or `Err(slot to insert it at)`.
    fn find(&self, key: &K) -> std::result::Result<usize, usize> {
        let mask = self.layout.cap - 1;
        let mut i = hash(key) as usize & mask;
        let mut first_free = None;
        for _ in 0..self.layout.cap {
            match self.ctrl(i) {
                EMPTY => return Err(first_free.unwrap_or(i)),
                FULL if self.key(i) == *key => return Ok(i),
                DELETED if first_free.is_none() => first_free = Some(i),
                _ => {}
            }
            i = (i + 1) & mask;
        }
        // No empty slot (growth keeps one, but a repaired table may lack it).
        Err(first_free.unwrap_or(usize::MAX))
    }
}

/// `i` if it is a slot of `table`: `make_room` always leaves a free slot, so none
/// means the map's memory was scribbled over.
fn free_slot<K: Pod + Eq + Hash, V: Pod>(i: usize, table: &Table<K, V>) -> Result<usize> {
    if i < table.layout.cap {
        Ok(i)
    } else {
        Err(Error::descriptor(
            "SharedHashMap table has no free slot: its memory was overwritten",
        ))
    }
}

fn hash<K: Hash>(key: &K) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// A hash map of plain-data keys and values shared by every process of the tree. See
/// the module docs.
///
/// # Examples
///
/// ```
/// let pool = procyon::Mempool::new(4 << 20)?;
/// let m = procyon::collections::SharedHashMap::<u64, u32>::new(&pool)?;
/// assert_eq!(m.insert(7, 1)?, None);
/// assert_eq!(m.insert(7, 2)?, Some(1));
/// assert_eq!(m.get(&7)?, Some(2));
/// assert_eq!(m.remove(&7)?, Some(2));
/// assert!(m.is_empty());
/// # Ok::<(), procyon::Error>(())
/// ```
pub struct SharedHashMap<K: Pod + Eq + Hash, V: Pod> {
    obj: Object<MapBody>,
    wait: HandleWait,
    _types: PhantomData<(K, V)>,
}

typed_desc! {
    /// The plain-data descriptor of a [`SharedHashMap<K, V>`]: `Copy`, serde, valid in
    /// every process of the tree.
    SharedHashMapDesc<K, V>
}

impl<K: Pod + Eq + Hash, V: Pod> SharedHashMapDesc<K, V> {
    /// A handle of the map in this process.
    ///
    /// # Errors
    /// [`Error::InvalidDescriptor`] if it was freed, the pool is unknown here, or the
    /// block is not a map of these key and value types.
    pub fn open(&self) -> Result<SharedHashMap<K, V>> {
        Ok(SharedHashMap {
            obj: Object::open(&self.raw, Shape::of2::<K, V>(Kind::HashMap))?,
            wait: HandleWait::default(),
            _types: PhantomData,
        })
    }
}

impl<K: Pod + Eq + Hash, V: Pod> SharedHashMap<K, V> {
    /// An empty map in `pool` (no table until the first insert).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if its header does not fit.
    pub fn new(pool: &Mempool) -> Result<Self> {
        let obj = Object::create(
            pool,
            Shape::of2::<K, V>(Kind::HashMap),
            |body: NonNull<MapBody>| {
                // SAFETY: `create` hands us the zeroed (empty map, no table), unshared body;
                // the lock is at its final address.
                unsafe { (*body.as_ptr()).lock.init() }
            },
        )?;
        Ok(SharedHashMap {
            obj,
            wait: HandleWait::default(),
            _types: PhantomData,
        })
    }

    /// The descriptor, for other processes of the tree.
    pub fn desc(&self) -> SharedHashMapDesc<K, V> {
        SharedHashMapDesc::from_raw(self.obj.desc())
    }

    /// Bounds every lock wait of this handle (`None`, the default: unbounded).
    pub fn set_lock_timeout(&mut self, timeout: Option<Duration>) {
        self.wait.set(timeout);
    }

    fn lock(&self) -> Result<Held<'_>> {
        enter(&self.obj.body().lock, self.wait.get(), || self.recount())
    }

    /// The repair after a holder died: recount `len` and `deleted` from the control
    /// bytes (see the module docs).
    fn recount(&self) {
        let Ok(Some(table)) = self.table() else {
            return;
        };
        let (mut full, mut deleted) = (0, 0);
        for i in 0..table.layout.cap {
            match table.ctrl(i) {
                FULL => full += 1,
                DELETED => deleted += 1,
                _ => {}
            }
        }
        let body = self.obj.body();
        body.len.store(full, Relaxed);
        body.deleted.store(deleted, Relaxed);
    }

    /// The current table (`None` before the first insert); call with the lock held.
    fn table(&self) -> Result<Option<Table<K, V>>> {
        let body = self.obj.body();
        let cap = body.cap.load(Relaxed);
        if cap == 0 {
            return Ok(None);
        }
        let layout = Layout::new::<K, V>(cap)
            .ok_or_else(|| Error::descriptor("map table size overflows"))?;
        let Some(base) = body.storage.ptr(self.obj.pool())? else {
            return Ok(None);
        };
        // SAFETY: the storage holds the table of `cap` slots the last growth wrote; the
        // caller holds the lock.
        Ok(Some(unsafe { Table::new(base, layout) }))
    }

    /// Makes room for one more entry, growing (or cleaning) the table; lock held.
    fn make_room(&self) -> Result<Table<K, V>> {
        let body = self.obj.body();
        let cap = body.cap.load(Relaxed);
        let (len, deleted) = (body.len.load(Relaxed), body.deleted.load(Relaxed));
        if cap > 0 && (len + deleted + 1) * 8 <= cap * 7 {
            if let Some(t) = self.table()? {
                return Ok(t);
            }
        }
        let new_cap = if cap == 0 {
            MIN_CAP
        } else if (len + 1) * 2 <= cap {
            cap // mostly deletions: rehash at the same size
        } else {
            cap.checked_mul(2)
                .ok_or_else(|| pool_out_of_memory(usize::MAX, 0, self.obj.pool().capacity()))?
        };
        self.rehash(new_cap)?;
        Ok(self.table()?.expect("a table after rehashing"))
    }

    /// Moves every entry into a new table of `new_cap` slots; lock held.
    fn rehash(&self, new_cap: u64) -> Result<()> {
        let body = self.obj.body();
        let layout = Layout::new::<K, V>(new_cap)
            .ok_or_else(|| pool_out_of_memory(usize::MAX, 0, self.obj.pool().capacity()))?;
        let old = self.table()?.map(|t| t.layout);
        let mut moved = 0u64;
        body.storage.replace(
            self.obj.pool(),
            layout.bytes,
            layout.align,
            |old_base, new_base| {
                // SAFETY: the new block holds `layout.bytes` bytes, ours alone until the
                // switch; zeroed control bytes mark every slot EMPTY.
                unsafe { std::ptr::write_bytes(new_base, EMPTY, layout.cap) };
                // SAFETY: as above; keys and values of non-FULL slots are never read.
                let new: Table<K, V> = unsafe { Table::new(new_base, layout) };
                if let (Some(old_base), Some(old_layout)) = (old_base, old) {
                    // SAFETY: the current table, under the lock.
                    let old: Table<K, V> = unsafe { Table::new(old_base.cast_mut(), old_layout) };
                    for i in 0..old_layout.cap {
                        if old.ctrl(i) != FULL {
                            continue;
                        }
                        let key = old.key(i);
                        if let Err(slot) = new.find(&key) {
                            // SAFETY: `slot` is an empty slot of the new table, in bounds.
                            unsafe {
                                new.key_ptr(slot).write(key);
                                new.value_ptr(slot).write(old.value(i));
                            }
                            new.set_ctrl(slot, FULL);
                            moved += 1;
                        }
                    }
                }
            },
        )?;
        body.cap.store(new_cap, Relaxed);
        body.len.store(moved, Relaxed);
        body.deleted.store(0, Relaxed);
        Ok(())
    }

    /// Inserts `key -> value`; the value it replaced, if any.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the table must grow and the pool has no room (the map is
    /// unchanged); [`Error::Timeout`] past the handle's lock timeout.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let _held = self.lock()?;
        let table = self.make_room()?;
        let body = self.obj.body();
        match table.find(&key) {
            Ok(i) => {
                let old = table.value(i);
                // SAFETY: slot `i` is in bounds; we hold the lock.
                unsafe { table.value_ptr(i).write(value) };
                Ok(Some(old))
            }
            Err(i) => {
                let i = free_slot(i, &table)?;
                let was_deleted = table.ctrl(i) == DELETED;
                // SAFETY: slot `i` is free and in bounds; we hold the lock.
                unsafe {
                    table.key_ptr(i).write(key);
                    table.value_ptr(i).write(value);
                }
                table.set_ctrl(i, FULL);
                body.len.fetch_add(1, Relaxed);
                if was_deleted {
                    body.deleted.fetch_sub(1, Relaxed);
                }
                Ok(None)
            }
        }
    }

    /// A copy of the value of `key`.
    ///
    /// # Errors
    /// [`Error::Timeout`] past the handle's lock timeout.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let _held = self.lock()?;
        let Some(table) = self.table()? else {
            return Ok(None);
        };
        Ok(table.find(key).ok().map(|i| table.value(i)))
    }

    /// Whether `key` is in the map.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Runs `f` on the value of `key` (inserting `default` first if absent) under the
    /// lock: a read-modify-write no other process interleaves with.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procyon::Mempool::new(4 << 20)?;
    /// let counts = procyon::collections::SharedHashMap::<u8, u32>::new(&pool)?;
    /// for b in b"hello" {
    ///     counts.update(*b, 0, |c| *c += 1)?;
    /// }
    /// assert_eq!(counts.get(&b'l')?, Some(2));
    /// # Ok::<(), procyon::Error>(())
    /// ```
    pub fn update<R>(&self, key: K, default: V, f: impl FnOnce(&mut V) -> R) -> Result<R> {
        let _held = self.lock()?;
        let table = self.make_room()?;
        let body = self.obj.body();
        let i = match table.find(&key) {
            Ok(i) => i,
            Err(i) => {
                let i = free_slot(i, &table)?;
                let was_deleted = table.ctrl(i) == DELETED;
                // SAFETY: slot `i` is free and in bounds; we hold the lock.
                unsafe {
                    table.key_ptr(i).write(key);
                    table.value_ptr(i).write(default);
                }
                table.set_ctrl(i, FULL);
                body.len.fetch_add(1, Relaxed);
                if was_deleted {
                    body.deleted.fetch_sub(1, Relaxed);
                }
                i
            }
        };
        let mut v = table.value(i);
        let r = f(&mut v);
        // SAFETY: slot `i` is FULL and in bounds; we hold the lock.
        unsafe { table.value_ptr(i).write(v) };
        Ok(r)
    }

    /// Removes `key`; its value, if it was there.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        let _held = self.lock()?;
        let Some(table) = self.table()? else {
            return Ok(None);
        };
        let Ok(i) = table.find(key) else {
            return Ok(None);
        };
        let v = table.value(i);
        table.set_ctrl(i, DELETED);
        let body = self.obj.body();
        body.len.fetch_sub(1, Relaxed);
        body.deleted.fetch_add(1, Relaxed);
        Ok(Some(v))
    }

    /// A copy of every entry, in table order.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Result<Vec<(K, V)>> {
        let _held = self.lock()?;
        let Some(table) = self.table()? else {
            return Ok(Vec::new());
        };
        Ok((0..table.layout.cap)
            .filter(|&i| table.ctrl(i) == FULL)
            .map(|i| (table.key(i), table.value(i)))
            .collect())
    }

    /// Entries in the map (a snapshot).
    pub fn len(&self) -> usize {
        // Relaxed: a snapshot.
        self.obj.body().len.load(Relaxed) as usize
    }

    /// Whether the map is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many processes died holding the map's lock (each time, the next locker
    /// recounted the entries; see the module docs).
    pub fn owner_deaths(&self) -> u32 {
        self.obj.body().lock.deaths()
    }
}

impl<K: Pod + Eq + Hash, V: Pod> Clone for SharedHashMap<K, V> {
    /// Another handle of the same map (with the default lock timeout).
    fn clone(&self) -> Self {
        SharedHashMap {
            obj: self.obj.clone_handle(),
            wait: HandleWait::default(),
            _types: PhantomData,
        }
    }
}

impl<K: Pod + Eq + Hash, V: Pod> fmt::Debug for SharedHashMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedHashMap")
            .field("desc", &self.obj.desc())
            .field("len", &self.len())
            .finish()
    }
}

crate::sync::handover::shared_desc!(impl[K: bytemuck::Pod + Eq + std::hash::Hash, V: bytemuck::Pod] SharedHashMapDesc<K, V> => SharedHashMap<K, V>);
