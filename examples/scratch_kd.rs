use squish::data::digits;
use squish::distillation::{distill, SoftTarget};
use squish::training::{Mlp, Optimizer, Trainer};
fn main() -> squish::Result<()> {
    let d = digits()?;
    let args: Vec<f64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (epochs, lr, batch) = (args[0] as usize, args[1], args[2] as usize);
    let mut teachers = vec![];
    for seed in 0..3u64 {
        let tt = Trainer::params().regularizer(squish::training::Regularizer::params(squish::training::Penalty::L2(args[3])).check()?).epochs(40).batch_size(32).seed(seed).optimizer(Optimizer::adam(1e-3).check()?).check()?;
        let mut t = Mlp::params(&[64, 256, 256, 10]).seed(seed).check()?;
        tt.fit(&mut t, &d.train)?;
        println!("teacher {:.4}", t.accuracy(d.test.x(), d.test.y())?);
        teachers.push(t);
    }
    let st = |seed| Trainer::params().epochs(epochs).batch_size(batch).seed(seed + 1000).optimizer(Optimizer::adam(lr).check().unwrap()).check().unwrap();
    let mut alone = 0.0;
    for seed in 0..3u64 {
        let mut s = Mlp::params(&[64, 16, 10]).seed(seed + 500).check()?;
        st(seed).fit(&mut s, &d.train)?;
        alone += s.accuracy(d.test.x(), d.test.y())? / 3.0;
    }
    println!("alone {alone:.4}");
    for &t in &[2.0, 4.0, 8.0] {
        for &a in &[0.5, 0.9] {
            let kd = SoftTarget::params(t).alpha(a).check()?;
            let mut acc = 0.0;
            for seed in 0..3u64 {
                let mut s = Mlp::params(&[64, 16, 10]).seed(seed + 500).check()?;
                distill(&st(seed), &mut s, &teachers[seed as usize], &kd, &d.train)?;
                acc += s.accuracy(d.test.x(), d.test.y())? / 3.0;
            }
            println!("T={t} a={a}: {acc:.4}");
        }
    }
    Ok(())
}
