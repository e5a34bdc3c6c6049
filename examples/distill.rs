//! Teacher → student knowledge distillation on real data.
//!
//! ```text
//! cargo run --release --example distill              # UCI digits, 5 seeds (seconds)
//! cargo run --release --example distill -- --fashion # Fashion-MNIST (minutes)
//! cargo run --release --example distill -- --seeds 3
//! ```
//!
//! For each seed it trains a teacher, then the same small student twice with
//! the same initialisation and budget: alone on the labels, and with Hinton
//! et al.'s soft targets from the teacher. It also distills from an int4
//! copy of the teacher (a compressed teacher) and with a FitNets hint, and
//! prints accuracies as mean ± standard deviation over the seeds.

use std::time::Instant;

use squish::data::{digits, fashion_mnist, Split};
use squish::distillation::{distill, distill_with_hint, Hint, SoftTarget};
use squish::prelude::*;
use squish::training::{CompressedMlp, Mlp, Optimizer, Trainer};

struct Setup {
    name: &'static str,
    teacher: Vec<usize>,
    student: Vec<usize>,
    teacher_epochs: usize,
    student_epochs: usize,
    batch: usize,
    lr: f64,
    student_lr: f64,
    temperature: f64,
    alpha: f64,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

fn main() -> squish::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let fashion = args.iter().any(|a| a == "--fashion");
    let seeds: u64 = args
        .iter()
        .position(|a| a == "--seeds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if fashion { 2 } else { 5 });
    let (data, setup): (Split, Setup) = if fashion {
        let Some(d) = fashion_mnist()? else {
            println!("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist); nothing to do.");
            return Ok(());
        };
        (
            d,
            Setup {
                name: "Fashion-MNIST",
                teacher: vec![784, 512, 512, 10],
                student: vec![784, 32, 10],
                teacher_epochs: 8,
                student_epochs: 8,
                batch: 128,
                lr: 1e-3,
                student_lr: 1e-3,
                temperature: 4.0,
                alpha: 0.9,
            },
        )
    } else {
        (
            digits()?,
            Setup {
                name: "UCI digits (writer split)",
                teacher: vec![64, 256, 256, 10],
                student: vec![64, 16, 10],
                teacher_epochs: 40,
                student_epochs: 100,
                batch: 32,
                lr: 1e-3,
                student_lr: 3e-3,
                temperature: 2.0,
                alpha: 0.5,
            },
        )
    };
    println!(
        "{}: {} train / {} test rows, {} seeds",
        setup.name,
        data.train.len(),
        data.test.len(),
        seeds
    );
    let start = Instant::now();
    let kd = SoftTarget::params(setup.temperature)
        .alpha(setup.alpha)
        .check()?;
    let int4 = IntQuantizer::params(4).per_row().check()?;
    let mut rows: Vec<(&str, Vec<f64>)> = [
        "teacher",
        "teacher int4 (compressed)",
        "student alone",
        "student + KD",
        "student + KD from int4 teacher",
        "student + KD + hint",
    ]
    .into_iter()
    .map(|n| (n, Vec::new()))
    .collect();
    let (tx, ty) = (data.test.x(), data.test.y());
    for seed in 0..seeds {
        let opt = Optimizer::adam(setup.lr).check()?;
        let tt = Trainer::params()
            .epochs(setup.teacher_epochs)
            .batch_size(setup.batch)
            .seed(seed)
            .optimizer(opt)
            .check()?;
        let st = Trainer::params()
            .epochs(setup.student_epochs)
            .batch_size(setup.batch)
            .seed(seed + 1000)
            .optimizer(Optimizer::adam(setup.student_lr).check()?)
            .check()?;
        let mut teacher = Mlp::params(&setup.teacher).seed(seed).check()?;
        tt.fit(&mut teacher, &data.train)?;
        rows[0].1.push(teacher.accuracy(tx, ty)?);
        let compressed = CompressedMlp::from_mlp(&teacher, &|_, m| int4.quantize(m))?;
        rows[1].1.push(compressed.accuracy_on(tx, ty, &Sequential)?);

        let init = Mlp::params(&setup.student).seed(seed + 500).check()?;
        let mut alone = init.clone();
        st.fit(&mut alone, &data.train)?;
        rows[2].1.push(alone.accuracy(tx, ty)?);

        let mut student = init.clone();
        distill(&st, &mut student, &teacher, &kd, &data.train)?;
        rows[3].1.push(student.accuracy(tx, ty)?);

        let mut from_c = init.clone();
        distill(&st, &mut from_c, &compressed, &kd, &data.train)?;
        rows[4].1.push(from_c.accuracy(tx, ty)?);

        let hint = Hint::params(0, 1).weight(0.1).check()?;
        let mut proj = hint.projection(&init, setup.teacher[2], seed)?;
        let mut hinted = init.clone();
        distill_with_hint(
            &st,
            &mut hinted,
            &teacher,
            &kd,
            &hint,
            &mut proj,
            &data.train,
        )?;
        rows[5].1.push(hinted.accuracy(tx, ty)?);
        println!(
            "  seed {seed} done ({:.1} s)",
            start.elapsed().as_secs_f64()
        );
    }
    let n_test = data.test.len() as f64;
    println!(
        "\n{:<34} {:>16} {:>12} {:>14}",
        "model", "test accuracy", "errors", "min .. max"
    );
    for (name, acc) in &rows {
        let (m, s) = mean_std(acc);
        let lo = acc.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = acc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{name:<34} {:>9.4} ± {:.4} {:>12.1} {:>6.4} .. {:.4}",
            m,
            s,
            (1.0 - m) * n_test,
            lo,
            hi
        );
    }
    let (a, _) = mean_std(&rows[2].1);
    let (k, _) = mean_std(&rows[3].1);
    println!(
        "\nKD {} the student by {:+.2} points (T = {}, α = {}); {:.1} s total.",
        if k > a { "improved" } else { "did not improve" },
        100.0 * (k - a),
        setup.temperature,
        setup.alpha,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
