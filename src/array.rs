//! `SharedArray<T>`: plain-data arrays in the mempool, shared by every process of the tree.
