//! `squish compress` under `mpirun`: the layers are shared over the ranks
//! and rank 0 writes the container (feature `mpi`).

use squish::distributed::{compress_to_file, Cluster, MpiComm};
use squish::io::Model;
use squish::parallel::ParallelExecutor;
use squish::recipe::Recipe;
use squish::Result;

use crate::table;

/// Compresses over the MPI world; only rank 0 prints.
pub fn compress(
    model: &Model,
    input: &std::path::Path,
    recipe: &Recipe,
    output: &std::path::Path,
    exec: &dyn ParallelExecutor,
) -> Result<()> {
    let world = MpiComm::world()?;
    let cluster = Cluster::new(world.as_ref(), exec);
    if let Some(out) = compress_to_file(&cluster, model, recipe, output)? {
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let files = table::Files {
            input: size(input),
            output: size(output),
        };
        let dtype = |name: &str| {
            model
                .get(name)
                .map_or(String::new(), |t| t.dtype().to_string())
        };
        let kept = out.tensors - out.layers.len();
        let totals = out.totals(model);
        print!(
            "{}",
            table::layer_rows(&out.layers, &dtype, totals, kept, &files)
        );
        println!("wrote {} ({} ranks)", output.display(), cluster.size());
    }
    Ok(())
}
