use squish::data::digits;
use squish::training::*;
fn main() -> squish::Result<()> {
    let d = digits()?;
    let opt = Optimizer::sgd(0.05).momentum(0.9).check()?;
    for &(pen, lam) in &[(0, 5e-3), (0, 1e-2), (0, 2e-2), (1, 5e-2), (1, 1e-1), (1, 2e-1)] {
        let p = if pen == 0 { Penalty::L1(lam) } else { Penalty::GroupLasso(lam) };
        let r = Regularizer::params(p).layers(&[0]).check()?;
        let t = Trainer::params().epochs(30).batch_size(32).seed(1).optimizer(opt).regularizer(r).check()?;
        let mut m: Mlp = Mlp::params(&[64, 64, 10]).seed(1).check()?;
        t.fit(&mut m, &d.train)?;
        let w = m.layers()[0].weight();
        let z = w.iter().filter(|&&v| v == 0.0).count() as f64 / w.len() as f64;
        let rows = w.outer_iter().filter(|r| r.iter().all(|&v| v == 0.0)).count();
        println!("pen {pen} λ {lam}: zeros {z:.3} rows {rows} acc {:.4}", m.accuracy(d.test.x(), d.test.y())?);
    }
    for &(layers, epochs, end) in &[(&[0usize][..], 15usize, 6usize), (&[0, 1][..], 20, 8)] {
        let spe = 1437usize.div_ceil(64);
        let gp = GradualPruning::new(cubic_sparsity(0.0, 0.8, 0, end * spe)?, 10, layers)?;
        let t = Trainer::params().epochs(epochs).seed(5).optimizer(Optimizer::adam(2e-3).check()?).gradual_pruning(gp).check()?;
        let mut m: Mlp = Mlp::params(&[64, 64, 10]).seed(5).check()?;
        t.fit(&mut m, &d.train)?;
        println!("gradual {layers:?} {epochs}: {:.4}", m.accuracy(d.test.x(), d.test.y())?);
    }
    Ok(())
}
