//! Six everyday rayon programs and their procyon ports, each checked against the rayon
//! version's output in the same test: word frequency count into a `HashMap`, an n-body
//! step, `par_sort` of 10 M `u64`, a segmented sieve of Eratosthenes, Conway's life on a
//! shared grid, and the spectral norm (n = 100 gives 1.274219991).
//!
//! Each pair is written side by side, the rayon version first, so that the lines a port
//! changes are the lines that differ between the two (`// port:` markers delimit them).

use std::collections::HashMap;
use std::sync::OnceLock;

use procyon::{Ctx, Pool, SharedArray};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One pool for the whole file (building forks processes); big enough for 10 M `u64`
/// and the sort's scratch array.
fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        Pool::builder()
            .workers(2)
            .mempool_size(384 << 20)
            .build()
            .expect("pool builds")
    })
}

/// A xorshift generator, for inputs that are the same in both versions.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

// ---------------------------------------------------------------------------------------
// Word frequency count.

fn text(lines: usize) -> Vec<String> {
    const WORDS: [&str; 12] = [
        "the", "process", "pool", "worker", "rayon", "shared", "memory", "job", "a", "of", "fork",
        "chunk",
    ];
    let mut next = xorshift(7);
    (0..lines)
        .map(|_| {
            let n = 1 + next() as usize % 12;
            let words: Vec<&str> = (0..n)
                .map(|_| WORDS[next() as usize % WORDS.len()])
                .collect();
            words.join(" ")
        })
        .collect()
}

fn add_counts(mut a: HashMap<String, usize>, b: HashMap<String, usize>) -> HashMap<String, usize> {
    for (w, n) in b {
        *a.entry(w).or_insert(0) += n;
    }
    a
}

mod word_count_rayon {
    use super::*;

    // port: word_count rayon
    pub fn word_count(text: &[String]) -> HashMap<String, usize> {
        text.par_iter()
            .flat_map_iter(|line| {
                line.split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .fold(HashMap::new, |mut m: HashMap<String, usize>, w: String| {
                *m.entry(w).or_insert(0) += 1;
                m
            })
            .reduce(HashMap::new, add_counts)
    }
    // end
}

mod word_count_procyon {
    use super::*;

    // port: word_count procyon
    pub fn word_count(pool: &Pool, text: &[String]) -> HashMap<String, usize> {
        pool.par_range(0..text.len())
            .flat_map_with(text.to_vec(), |t: &Vec<String>, i: usize| {
                t[i].split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .fold(HashMap::new, |mut m: HashMap<String, usize>, w: String| {
                *m.entry(w).or_insert(0) += 1;
                m
            })
            .unwrap()
            .into_iter()
            .fold(HashMap::new(), add_counts)
    }
    // end
}

#[test]
fn word_count() {
    let text = text(20_000);
    let want = word_count_rayon::word_count(&text);
    assert_eq!(word_count_procyon::word_count(pool(), &text), want);
    assert_eq!(
        want.values().sum::<usize>(),
        text.iter().map(|l| l.split(' ').count()).sum()
    );
}

// ---------------------------------------------------------------------------------------
// n-body: one step of all-pairs gravity.

#[derive(
    Clone, Copy, Debug, PartialEq, Serialize, Deserialize, bytemuck::Pod, bytemuck::Zeroable,
)]
#[repr(C)]
struct Body {
    pos: [f64; 3],
    vel: [f64; 3],
    mass: f64,
}

const DT: f64 = 0.01;

fn bodies(n: usize) -> Vec<Body> {
    let mut next = xorshift(11);
    let mut unit = move || (next() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    (0..n)
        .map(|_| Body {
            pos: [unit() * 100.0, unit() * 100.0, unit() * 100.0],
            vel: [unit(), unit(), unit()],
            mass: 1.0 + unit().abs() * 10.0,
        })
        .collect()
}

/// Body `b` after one step among `all` (softened gravity, G = 1).
fn advance(all: &[Body], b: &Body) -> Body {
    let mut acc = [0.0f64; 3];
    for o in all {
        let d = [
            o.pos[0] - b.pos[0],
            o.pos[1] - b.pos[1],
            o.pos[2] - b.pos[2],
        ];
        let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + 1e-3;
        let f = o.mass / (r2 * r2.sqrt());
        for k in 0..3 {
            acc[k] += d[k] * f;
        }
    }
    let vel = [
        b.vel[0] + acc[0] * DT,
        b.vel[1] + acc[1] * DT,
        b.vel[2] + acc[2] * DT,
    ];
    Body {
        pos: [
            b.pos[0] + vel[0] * DT,
            b.pos[1] + vel[1] * DT,
            b.pos[2] + vel[2] * DT,
        ],
        vel,
        mass: b.mass,
    }
}

mod nbody_rayon {
    use super::*;

    // port: nbody rayon
    pub fn nbody_step(bodies: &[Body]) -> Vec<Body> {
        bodies.par_iter().map(|b| advance(bodies, b)).collect()
    }
    // end
}

mod nbody_procyon {
    use super::*;

    // port: nbody procyon
    pub fn nbody_step(pool: &Pool, bodies: &SharedArray<Body>) -> Vec<Body> {
        pool.par_iter(bodies)
            .map_with(bodies.to_vec(), |all: &Vec<Body>, b: Body| advance(all, &b))
            .collect_vec()
            .unwrap()
    }
    // end
}

#[test]
fn nbody_step() {
    let start = bodies(1000);
    let want = nbody_rayon::nbody_step(&start);
    let shared = pool().array_from_slice(&start).unwrap();
    // Same arithmetic in the same order: equal to the bit.
    assert_eq!(nbody_procyon::nbody_step(pool(), &shared), want);
    assert_ne!(want, start);
}

// ---------------------------------------------------------------------------------------
// par_sort of 10 M u64.

mod sort_rayon {
    use super::*;

    // port: sort rayon
    pub fn sort(v: &mut [u64]) {
        v.par_sort();
    }
    // end
}

mod sort_procyon {
    use super::*;

    // port: sort procyon
    pub fn sort(pool: &Pool, v: &mut SharedArray<u64>) {
        pool.par_sort(v).unwrap();
    }
    // end
}

#[test]
fn sort_ten_million() {
    let mut next = xorshift(3);
    let mut want: Vec<u64> = (0..10_000_000).map(|_| next() % 1_000_000_000).collect();
    let mut shared = pool().array_from_slice(&want).unwrap();
    sort_rayon::sort(&mut want);
    sort_procyon::sort(pool(), &mut shared);
    assert!(shared[..] == want[..]);
}

// ---------------------------------------------------------------------------------------
// Sieve of Eratosthenes by segments.

/// Primes below `n`, sequentially.
fn small_primes(n: usize) -> Vec<usize> {
    let mut is = vec![true; n];
    let mut out = Vec::new();
    for i in 2..n {
        if is[i] {
            out.push(i);
            (i * i..n).step_by(i).for_each(|j| is[j] = false);
        }
    }
    out
}

/// Primes in `lo..hi`, crossed off with `small` (every prime up to the square root of hi).
fn segment(small: &[usize], lo: usize, hi: usize) -> Vec<usize> {
    let mut is = vec![true; hi - lo];
    for &p in small {
        let first = (p * p).max(lo.div_ceil(p) * p);
        (first..hi).step_by(p).for_each(|j| is[j - lo] = false);
    }
    (lo.max(2)..hi).filter(|&i| is[i - lo]).collect()
}

const LIMIT: usize = 2_000_000;
const SEGMENT: usize = 32_768;

mod sieve_rayon {
    use super::*;

    // port: sieve rayon
    pub fn sieve() -> Vec<usize> {
        let small = small_primes((LIMIT as f64).sqrt() as usize + 1);
        (0..LIMIT.div_ceil(SEGMENT))
            .into_par_iter()
            .flat_map_iter(|s| segment(&small, s * SEGMENT, ((s + 1) * SEGMENT).min(LIMIT)))
            .collect()
    }
    // end
}

mod sieve_procyon {
    use super::*;

    // port: sieve procyon
    pub fn sieve(pool: &Pool) -> Vec<usize> {
        let small = small_primes((LIMIT as f64).sqrt() as usize + 1);
        pool.par_range(0..LIMIT.div_ceil(SEGMENT))
            .flat_map_with(small, |small: &Vec<usize>, s: usize| {
                segment(small, s * SEGMENT, ((s + 1) * SEGMENT).min(LIMIT))
            })
            .collect()
            .unwrap()
    }
    // end
}

#[test]
fn sieve_by_segments() {
    let want = sieve_rayon::sieve();
    assert_eq!(want.len(), 148_933, "primes below 2 M");
    assert_eq!(sieve_procyon::sieve(pool()), want);
}

// ---------------------------------------------------------------------------------------
// Conway's life on a shared grid (a torus).

const W: usize = 256;
const H: usize = 192;

/// Row `y` of the next generation of `cur`.
fn life_row(cur: &[u8], y: usize, row: &mut [u8]) {
    for (x, cell) in row.iter_mut().enumerate() {
        let mut n = 0;
        for dy in [H - 1, 0, 1] {
            for dx in [W - 1, 0, 1] {
                if (dy, dx) != (0, 0) {
                    n += cur[(y + dy) % H * W + (x + dx) % W];
                }
            }
        }
        *cell = u8::from(n == 3 || (n == 2 && cur[y * W + x] == 1));
    }
}

fn glider_gun_soup() -> Vec<u8> {
    let mut next = xorshift(5);
    (0..W * H).map(|_| u8::from(next() % 4 == 0)).collect()
}

mod life_rayon {
    use super::*;

    // port: life rayon
    pub fn life(grid: &[u8], steps: usize) -> Vec<u8> {
        let mut cur = grid.to_vec();
        let mut next = vec![0u8; W * H];
        for _ in 0..steps {
            next.par_chunks_mut(W)
                .enumerate()
                .for_each(|(y, row)| life_row(&cur, y, row));
            std::mem::swap(&mut cur, &mut next);
        }
        cur
    }
    // end
}

mod life_procyon {
    use super::*;

    // port: life procyon
    pub fn life(pool: &Pool, grid: &[u8], steps: usize) -> Vec<u8> {
        let mut cur = pool.array_from_slice(grid).unwrap();
        let mut next = pool.array_zeroed::<u8>(W * H).unwrap();
        for _ in 0..steps {
            pool.par_chunks_mut_reading(
                &cur,
                &mut next,
                W,
                |cur: &[u8], off: usize, row: &mut [u8]| life_row(cur, off / W, row),
            )
            .unwrap();
            std::mem::swap(&mut cur, &mut next);
        }
        cur.to_vec()
    }
    // end
}

#[test]
fn life_on_a_shared_grid() {
    let grid = glider_gun_soup();
    let want = life_rayon::life(&grid, 20);
    assert_eq!(life_procyon::life(pool(), &grid, 20), want);
    assert_ne!(want, grid);
}

// ---------------------------------------------------------------------------------------
// Spectral norm (the benchmarks game's), n = 100.

fn a(i: usize, j: usize) -> f64 {
    1.0 / ((i + j) * (i + j + 1) / 2 + i + 1) as f64
}

fn dot(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

mod spectral_rayon {
    use super::*;

    // port: spectral rayon
    fn mult_av(v: &[f64], out: &mut [f64]) {
        out.par_iter_mut()
            .enumerate()
            .for_each(|(i, o)| *o = v.iter().enumerate().map(|(j, x)| a(i, j) * x).sum());
    }

    fn mult_atv(v: &[f64], out: &mut [f64]) {
        out.par_iter_mut()
            .enumerate()
            .for_each(|(i, o)| *o = v.iter().enumerate().map(|(j, x)| a(j, i) * x).sum());
    }

    pub fn spectral_norm(n: usize) -> f64 {
        let (mut u, mut v, mut tmp) = (vec![1.0; n], vec![0.0; n], vec![0.0; n]);
        for _ in 0..10 {
            mult_av(&u, &mut tmp);
            mult_atv(&tmp, &mut v);
            mult_av(&v, &mut tmp);
            mult_atv(&tmp, &mut u);
        }
        (dot(&u, &v) / dot(&v, &v)).sqrt()
    }
    // end
}

mod spectral_procyon {
    use super::*;

    // port: spectral procyon
    fn mult_av(pool: &Pool, v: &SharedArray<f64>, out: &mut SharedArray<f64>) {
        pool.par_iter_mut(out)
            .enumerate()
            .for_each_with(v.to_vec(), |v: &Vec<f64>, (i, o): (usize, &mut f64)| {
                *o = v.iter().enumerate().map(|(j, x)| a(i, j) * x).sum()
            })
            .unwrap();
    }

    fn mult_atv(pool: &Pool, v: &SharedArray<f64>, out: &mut SharedArray<f64>) {
        pool.par_iter_mut(out)
            .enumerate()
            .for_each_with(v.to_vec(), |v: &Vec<f64>, (i, o): (usize, &mut f64)| {
                *o = v.iter().enumerate().map(|(j, x)| a(j, i) * x).sum()
            })
            .unwrap();
    }

    pub fn spectral_norm(pool: &Pool, n: usize) -> f64 {
        let (mut u, mut v, mut tmp) = (
            pool.array_from_fn(n, |_| 1.0).unwrap(),
            pool.array_zeroed(n).unwrap(),
            pool.array_zeroed(n).unwrap(),
        );
        for _ in 0..10 {
            mult_av(pool, &u, &mut tmp);
            mult_atv(pool, &tmp, &mut v);
            mult_av(pool, &v, &mut tmp);
            mult_atv(pool, &tmp, &mut u);
        }
        (dot(&u, &v) / dot(&v, &v)).sqrt()
    }
    // end
}

#[test]
fn spectral_norm() {
    let want = spectral_rayon::spectral_norm(100);
    assert_eq!(format!("{want:.9}"), "1.274219991");
    assert_eq!(spectral_procyon::spectral_norm(pool(), 100), want);
}

// ---------------------------------------------------------------------------------------
// The same programs nested: each port also runs as a task whose Ctx is the pool.

#[test]
fn ports_run_inside_a_task_too() {
    let got = pool()
        .spawn(|ctx: &Ctx| {
            let (norm, primes) = ctx
                .join(
                    |ctx: &Ctx| spectral_procyon::spectral_norm(ctx, 100),
                    |ctx: &Ctx| sieve_procyon::sieve(ctx).len(),
                )
                .unwrap();
            (
                norm,
                primes,
                word_count_procyon::word_count(ctx, &text(500)),
            )
        })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(got.0, spectral_rayon::spectral_norm(100));
    assert_eq!(got.1, 148_933);
    assert_eq!(got.2, word_count_rayon::word_count(&text(500)));
}
