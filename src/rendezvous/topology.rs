//! Which peers a pod links to: a pure function of its index and the world
//! size (docs/scale.md gives the reasoning and the arithmetic).
//!
//! * Up to [`MESH_MAX`] pods: a full mesh. Every pod links to every other,
//!   so every pair meets directly; at this size that costs nothing.
//! * Beyond: a tree of arity [`ARITY`] over the indices (the parent of `i`
//!   is `(i - 1) / ARITY`). A pod keeps [`UPLINKS`] links upwards, to its
//!   nearest ancestors that have arrived, falling back to the lowest
//!   indices. Records flood over every link, so each pod learns of every
//!   arrival through a bounded number of links and hops, and resolves only
//!   the names of the few ancestors it links to.
//!
//! Two uplinks instead of one mean that no single late, stalled or dead pod
//! cuts its subtree off: the grandparent link carries the records past it.

/// Largest world that uses the full mesh.
pub const MESH_MAX: u32 = 8;
/// Children per node of the tree.
pub const ARITY: u32 = 4;
/// Upward links a pod keeps in the tree.
pub const UPLINKS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Mesh,
    Tree,
}

impl Topology {
    pub fn for_world(world: u32) -> Topology {
        if world <= MESH_MAX {
            Topology::Mesh
        } else {
            Topology::Tree
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Topology::Mesh => "mesh",
            Topology::Tree => "tree",
        }
    }

    /// How many links a pod tries to hold to its candidates.
    pub fn wanted(self, world: u32) -> usize {
        match self {
            Topology::Mesh => world.saturating_sub(1) as usize,
            Topology::Tree => UPLINKS.min(world.saturating_sub(1) as usize),
        }
    }

    /// The peers `me` would link to, best first: in the mesh every other
    /// index; in the tree the ancestors nearest first, then the lowest
    /// indices (the fallback when the ancestors have not arrived).
    pub fn candidates(self, me: u32, world: u32) -> impl Iterator<Item = u32> {
        let ancestors: Vec<u32> = match self {
            Topology::Mesh => Vec::new(),
            Topology::Tree => std::iter::successors(parent(me), |&p| parent(p)).collect(),
        };
        let rest = (0..world).filter(move |i| *i != me);
        let listed = ancestors.clone();
        ancestors
            .into_iter()
            .chain(rest.filter(move |i| !listed.contains(i)))
    }
}

/// The tree parent of `i`; the root has none.
pub fn parent(i: u32) -> Option<u32> {
    (i > 0).then(|| (i - 1) / ARITY)
}

/// Depth of `i` in the tree (the root is 0).
#[cfg(test)]
pub fn depth(i: u32) -> u32 {
    std::iter::successors(parent(i), |&p| parent(p)).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(t: Topology, me: u32, world: u32, n: usize) -> Vec<u32> {
        t.candidates(me, world).take(n).collect()
    }

    #[test]
    fn small_worlds_are_a_full_mesh() {
        assert_eq!(Topology::for_world(1), Topology::Mesh);
        assert_eq!(Topology::for_world(MESH_MAX), Topology::Mesh);
        assert_eq!(Topology::for_world(MESH_MAX + 1), Topology::Tree);
        let m = Topology::Mesh;
        assert_eq!(m.wanted(3), 2);
        assert_eq!(m.wanted(1), 0);
        assert_eq!(first(m, 1, 3, 10), [0, 2]);
    }

    #[test]
    fn tree_shape() {
        assert_eq!(parent(0), None);
        assert_eq!((1..=4).map(parent).collect::<Vec<_>>(), [Some(0); 4]);
        assert_eq!(parent(5), Some(1));
        assert_eq!(parent(20), Some(4));
        assert_eq!(parent(21), Some(5));
        assert_eq!(depth(0), 0);
        assert_eq!(depth(4), 1);
        assert_eq!(depth(999), 5);
        // Depth grows with log4 of the world: the last of 100 000 pods is 9
        // links below the root.
        assert_eq!(depth(99_999), 9);
    }

    #[test]
    fn tree_candidates_are_ancestors_then_the_lowest_indices() {
        let t = Topology::Tree;
        assert_eq!(t.wanted(1000), UPLINKS);
        assert_eq!(first(t, 999, 1000, 6), [249, 62, 15, 3, 0, 1]);
        assert_eq!(first(t, 1, 1000, 3), [0, 2, 3]);
        assert_eq!(first(t, 0, 1000, 3), [1, 2, 3]);
        // Every index but its own appears exactly once.
        let all: Vec<u32> = t.candidates(37, 100).collect();
        assert_eq!(all.len(), 99);
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 99);
        assert!(!all.contains(&37));
    }

    /// With everyone arrived, each pod links to its first `wanted`
    /// candidates; count the links every pod ends up holding.
    fn degrees(world: u32) -> Vec<usize> {
        let t = Topology::for_world(world);
        let mut deg = vec![0usize; world as usize];
        let mut links = std::collections::HashSet::new();
        for me in 0..world {
            for c in t.candidates(me, world).take(t.wanted(world)) {
                if links.insert((me.min(c), me.max(c))) {
                    deg[me as usize] += 1;
                    deg[c as usize] += 1;
                }
            }
        }
        deg
    }

    #[test]
    fn links_per_pod_are_bounded_by_a_constant() {
        for world in [9, 64, 256, 1000, 10_000] {
            let deg = degrees(world);
            let max = *deg.iter().max().unwrap();
            // Children and grandchildren link up to a node, plus its own
            // two uplinks, plus the fallbacks of the top few pods.
            assert!(
                max <= UPLINKS + (ARITY + ARITY * ARITY) as usize + 4,
                "world {world}: {max}"
            );
            let total: usize = deg.iter().sum::<usize>() / 2;
            assert!(total <= UPLINKS * world as usize, "world {world}: {total}");
        }
        assert_eq!(*degrees(8).iter().max().unwrap(), 7, "mesh of 8");
    }
}
