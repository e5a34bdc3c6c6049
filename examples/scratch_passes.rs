use std::time::Instant;
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use squish::compression::lowrank::{RandomizedSvd, Svd, SvdBackend};
use squish::compression::sharing::{Histogram, KMeans};
use squish::matrix::CompressedMatrix;
use squish::parallel::{Sequential, ThreadPool, ParallelExecutor};
use squish::pruning::{Magnitude, Pruner};

fn med(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..n).map(|_| { let s = Instant::now(); f(); s.elapsed().as_secs_f64() * 1e3 }).collect();
    t.sort_by(f64::total_cmp);
    t[n / 2]
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or("all".into());
    let pool = ThreadPool::new(2).unwrap();
    let execs: [(&str, &dyn ParallelExecutor); 2] = [("seq", &Sequential), ("2t", &pool)];
    let mut r = StdRng::seed_from_u64(0);
    if which == "all" || which == "prune" {
        let w = Array2::from_shape_simple_fn((4096, 4096), || StandardNormal.sample(&mut r));
        let dense = CompressedMatrix::from_dense(w.view()).unwrap();
        let p = Magnitude::params(0.9).check().unwrap();
        let old = p.prune(&dense).unwrap();
        println!("prune old (mask + csr_from_mask, seq): {:.1} ms", med(5, || { p.prune(&dense).unwrap(); }));
        println!("mask old seq: {:.1} ms", med(5, || { p.mask(w.view()).unwrap(); }));
        for (name, e) in execs {
            let new = p.prune_on(&dense, e).unwrap();
            assert_eq!(new, old, "{name}");
            assert_eq!(p.mask_on(w.view(), e).unwrap(), p.mask(w.view()).unwrap());
            println!("prune_on {name}: {:.1} ms", med(7, || { p.prune_on(&dense, e).unwrap(); }));
            println!("mask_on {name}: {:.1} ms", med(7, || { p.mask_on(w.view(), e).unwrap(); }));
        }
    }
    if which == "all" || which == "kmeans" {
        let v: Vec<f32> = (0..1_000_000).map(|_| StandardNormal.sample(&mut r)).collect();
        println!("hist: {:.1} ms", med(5, || { Histogram::new(&v).unwrap(); }));
        let h = Histogram::new(&v).unwrap();
        for init in [squish::compression::sharing::Init::Companding, squish::compression::sharing::Init::Coarse] {
            let t = std::time::Instant::now();
            let c = init.centroids(&h, 256);
            let ti = t.elapsed();
            let l = squish::compression::sharing::lloyd(&h, c.clone(), 300);
            println!("{init:?}: init {ti:?} sse {:.3} -> lloyd sse {:.3} iters {}", h.sse(&c), l.sse, l.iterations);
        }
        println!("coarse init k256: {:.1} ms", med(5, || { squish::compression::sharing::Init::Coarse.centroids(&h, 256); }));
        let init = squish::compression::sharing::Init::Coarse.centroids(&h, 256);
        println!("init sse {:.3}", h.sse(&init));
        println!("lloyd from coarse: {:.1} ms", med(5, || { squish::compression::sharing::lloyd(&h, init.clone(), 300); }));
        let km = KMeans::params(256).check().unwrap();
        let c = km.fit(&v).unwrap();
        println!("default k256 fit: {:.1} ms sse {:.3} iters {}", med(5, || { km.fit(&v).unwrap(); }), c.sse, c.iterations);
        let naive: f64 = {
            let cs = c.centroids.clone();
            v.iter().map(|&x| cs.iter().map(|&c| (x as f64 - c).powi(2)).fold(f64::INFINITY, f64::min)).sum()
        };
        println!("naive sse {naive:.3}");
        let km16 = KMeans::params(16).check().unwrap();
        let c16 = km16.fit(&v).unwrap();
        println!("default k16 fit: {:.1} ms sse {:.3} iters {}", med(5, || { km16.fit(&v).unwrap(); }), c16.sse, c16.iterations);
        let vals = CompressedMatrix::from_dense(Array2::from_shape_vec((1000, 1000), v.clone()).unwrap().view()).unwrap();
        use squish::quantization::Quantizer;
        for (name, e) in execs {
            println!("quantize_on k256 {name}: {:.1} ms", med(5, || { km.quantize_on(&vals, e).unwrap(); }));
        }
        assert_eq!(km.quantize_on(&vals, &pool).unwrap(), km.quantize_on(&vals, &Sequential).unwrap());
    }
    if which == "all" || which == "svd" {
        let a = Array2::from_shape_simple_fn((2048, 2048), || StandardNormal.sample(&mut r));
        let a: Array2<f32> = a;
        let rs = RandomizedSvd::params(64).check().unwrap();
        let fro: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        for (name, e) in execs {
            let o = rs.compute(a.view(), e).unwrap();
            let err = (&o.svd.reconstruct() - &a).iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt() / fro;
            println!("rsvd64 {name}: {:.1} ms rel err {err:.5} est {:.5}", med(5, || { rs.compute(a.view(), e).unwrap(); }), o.estimate.relative);
        }
        assert_eq!(rs.compute(a.view(), &pool).unwrap(), rs.compute(a.view(), &Sequential).unwrap());
        let s1 = Svd::exact_on(a.view(), SvdBackend::Faer, &Sequential).unwrap();
        let s2 = Svd::exact_on(a.view(), SvdBackend::Faer, &pool).unwrap();
        println!("exact svd bit-identical seq vs 2t: {}", s1 == s2);
        let best = s1.tail_norm(64) / s1.tail_norm(0);
        println!("exact rank-64 rel err {best:.5}");
        for (name, e) in execs {
            println!("exact svd {name}: {:.1} ms", med(3, || { Svd::exact_on(a.view(), SvdBackend::Faer, e).unwrap(); }));
        }
    }
}
