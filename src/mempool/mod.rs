//! The mempool: one shared region mapped at the same address in every process of the tree.
