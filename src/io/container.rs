//! [`CompressedModel`]: a model whose weight matrices are compressed, kept
//! in a safetensors file that any safetensors reader can open.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::atomic::{self, Named, OwnedView};
use super::codec::{self, Source};
use super::description::{ContainerDesc, EntryDesc, DESCRIPTION_KEY, FORMAT_VERSION, VERSION_KEY};
use super::model::open;
use super::tensor::{is_float, shape_string};
use super::{FileError, Model, Tensor};
use crate::error::{Result, SquishError};
use crate::matrix::{CompressedMatrix, StorageReport};

/// Separates a tensor's name from its component's in the file
/// (`conv1.weight::values`, `fc.weight::a.scales`).
pub const COMPONENT_SEPARATOR: &str = "::";

/// A weight matrix in compressed form, with what is needed to put it back
/// in the original model: dtype, shape (a conv kernel keeps its axes) and
/// how it was compressed.
#[derive(Clone, Debug, PartialEq)]
pub struct CompressedTensor {
    matrix: CompressedMatrix,
    dtype: Dtype,
    shape: Vec<usize>,
    method: String,
}

impl CompressedTensor {
    /// Checks that `shape` flattens to the matrix's `[out, rest]` and that
    /// `dtype` is a float dtype.
    pub fn new(
        matrix: CompressedMatrix,
        dtype: Dtype,
        shape: Vec<usize>,
        method: impl Into<String>,
    ) -> Result<Self> {
        if !is_float(dtype) {
            return Err(FileError::UnsupportedDtype {
                tensor: String::new(),
                dtype: dtype.to_string(),
                hint: "only float tensors are compressed",
            }
            .into());
        }
        let rest = shape
            .get(1..)
            .and_then(|r| r.iter().try_fold(1usize, |a, &d| a.checked_mul(d)));
        if shape.len() < 2 || shape[0] != matrix.rows() || rest != Some(matrix.cols()) {
            return Err(SquishError::shape(
                "compressed tensor",
                format!(
                    "a shape that flattens to {}×{}",
                    matrix.rows(),
                    matrix.cols()
                ),
                shape_string(&shape),
            ));
        }
        Ok(CompressedTensor {
            matrix,
            dtype,
            shape,
            method: method.into(),
        })
    }

    /// The compressed matrix (`[out, rest]`).
    pub fn matrix(&self) -> &CompressedMatrix {
        &self.matrix
    }

    /// The original dtype.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The original shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// How it was compressed.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The dequantized tensor, in the original dtype and shape.
    pub fn to_tensor(&self) -> Tensor {
        let data = self.matrix.to_dense().into_raw_vec_and_offset().0;
        Tensor::float(self.dtype, self.shape.clone(), data).expect("shape checked in new")
    }
}

/// One tensor of a compressed model.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// A compressed weight matrix (boxed: it is much larger than a plain tensor).
    Compressed(Box<CompressedTensor>),
    /// A tensor kept as it was (biases, norms, integer buffers, skipped layers).
    Plain(Tensor),
}

impl Entry {
    /// Storage of this entry: the compressed report, or the plain tensor's
    /// bytes on disk as values.
    pub fn storage(&self) -> StorageReport {
        match self {
            Entry::Compressed(c) => c.matrix.storage(),
            Entry::Plain(t) => {
                let n: usize = t.shape().iter().product();
                let mut r = StorageReport::new(n);
                r.add(crate::matrix::Component::Values, t.to_bytes().len());
                r
            }
        }
    }
}

/// A model whose weight matrices are [`CompressedMatrix`]es.
///
/// On disk it is a safetensors file: every component of every matrix
/// (codes, scales, indices, centroids, …) is a typed 1-D tensor named
/// `<tensor>::<component>`, plain tensors keep their names, and the header
/// metadata holds a versioned JSON description with a CRC-32 per tensor.
/// Loading rebuilds each matrix bit for bit through the validating
/// constructors, so it multiplies without being decoded; a damaged or
/// hostile file gives a [`FileError`], never a panic.
///
/// ```
/// use ndarray::Array2;
/// use squish::io::{CompressedModel, CompressedTensor, Dtype};
/// use squish::prelude::*;
/// let w = Array2::from_shape_fn((16, 8), |(i, j)| (i as f32 - j as f32) / 8.0);
/// let q = Pipeline::new().quantize(IntQuantizer::params(4).check()?).run(w.view())?;
/// let mut model = CompressedModel::new();
/// model.insert_compressed("fc.weight", CompressedTensor::new(q.matrix.clone(), Dtype::F32, vec![16, 8], "int4")?)?;
/// let back = CompressedModel::from_bytes(&model.to_bytes()?)?;
/// assert_eq!(back, model);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompressedModel {
    entries: Vec<(String, Entry)>,
}

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

impl CompressedModel {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if self.get(name).is_some() {
            return Err(FileError::DuplicateName {
                name: name.to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// Adds a compressed matrix.
    pub fn insert_compressed(
        &mut self,
        name: impl Into<String>,
        t: CompressedTensor,
    ) -> Result<()> {
        let name = name.into();
        self.check_new_name(&name)?;
        self.entries.push((name, Entry::Compressed(Box::new(t))));
        Ok(())
    }

    /// Adds a tensor stored as it is.
    pub fn insert_plain(&mut self, name: impl Into<String>, t: Tensor) -> Result<()> {
        let name = name.into();
        self.check_new_name(&name)?;
        self.entries.push((name, Entry::Plain(t)));
        Ok(())
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, e)| e)
    }

    /// Names and entries, in model order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(n, e)| (n.as_str(), e))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The dequantized model: original names, shapes and dtypes, so it can be
    /// evaluated by any safetensors consumer (PyTorch, Hugging Face) unchanged.
    pub fn decompress(&self) -> Model {
        let mut m = Model::new();
        for (name, e) in &self.entries {
            let t = match e {
                Entry::Compressed(c) => c.to_tensor(),
                Entry::Plain(t) => t.clone(),
            };
            m.insert(name.clone(), t).expect("names are unique");
        }
        m
    }

    fn views(&self) -> Result<(Vec<Named>, HashMap<String, String>)> {
        let mut views: Vec<Named> = Vec::new();
        let mut desc = ContainerDesc {
            tensors: Vec::with_capacity(self.entries.len()),
        };
        for (name, e) in &self.entries {
            let start = views.len();
            let (dtype, shape, method, matrix) = match e {
                Entry::Compressed(c) => {
                    let prefix = format!("{name}{COMPONENT_SEPARATOR}");
                    let d = codec::encode(&c.matrix, &prefix, &mut views);
                    (c.dtype, c.shape.clone(), Some(c.method.clone()), Some(d))
                }
                Entry::Plain(t) => {
                    views.push((
                        name.clone(),
                        OwnedView {
                            dtype: t.dtype(),
                            shape: t.shape().to_vec(),
                            bytes: t.to_bytes(),
                        },
                    ));
                    (t.dtype(), t.shape().to_vec(), None, None)
                }
            };
            let parts: Vec<&[u8]> = views[start..].iter().map(|(_, v)| &v.bytes[..]).collect();
            desc.tensors.push(EntryDesc {
                name: name.clone(),
                dtype: dtype.to_string(),
                shape,
                crc32: crc(&parts),
                method,
                matrix,
            });
        }
        let mut seen = HashSet::new();
        for (n, _) in &views {
            if !seen.insert(n.as_str()) {
                return Err(FileError::DuplicateName { name: n.clone() }.into());
            }
        }
        let json = serde_json::to_string(&desc).expect("descriptions serialize");
        let meta = HashMap::from([
            (VERSION_KEY.to_string(), FORMAT_VERSION.to_string()),
            (DESCRIPTION_KEY.to_string(), json),
        ]);
        Ok((views, meta))
    }

    /// The header space set aside for these entries (see
    /// [`HeaderReserve`](atomic::HeaderReserve)).
    fn reserve(&self) -> u64 {
        let mut r = atomic::HeaderReserve::default();
        for (name, e) in &self.entries {
            match e {
                Entry::Compressed(c) => r.add(name, c.dtype, &c.shape),
                Entry::Plain(t) => r.add(name, t.dtype(), t.shape()),
            }
        }
        r.bytes()
    }

    /// The container's bytes: a safetensors file whose components follow
    /// in model order (each entry's in the codec's order), with the header
    /// padded as a streaming [`ContainerWriter`](super::ContainerWriter)
    /// pads it, so both give the same bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (views, meta) = self.views()?;
        Ok(atomic::ordered_bytes(&views, Some(meta), self.reserve())?)
    }

    /// Writes the container atomically (temporary file, fsync, rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.to_bytes()?;
        Ok(atomic::write_bytes(path.as_ref(), &bytes)?)
    }

    /// Loads a container (memory-mapped while it is decoded).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let bytes = open(path.as_ref())?;
        Self::from_bytes(&bytes)
    }

    /// Parses a container's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(Self::parse(bytes)?)
    }

    fn parse(bytes: &[u8]) -> Result<Self, FileError> {
        let (_, meta) = SafeTensors::read_metadata(bytes)?;
        let st = SafeTensors::deserialize(bytes)?;
        let empty = HashMap::new();
        let kv = meta.metadata().as_ref().unwrap_or(&empty);
        let version = kv
            .get(VERSION_KEY)
            .ok_or(FileError::NotAContainer { key: VERSION_KEY })?;
        let version: u64 = version.trim().parse().map_err(|_| {
            FileError::description(format!("`{VERSION_KEY}` = {version:?} is not a number"))
        })?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(FileError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let json = kv.get(DESCRIPTION_KEY).ok_or(FileError::NotAContainer {
            key: DESCRIPTION_KEY,
        })?;
        let desc: ContainerDesc =
            serde_json::from_str(json).map_err(|e| FileError::description(e.to_string()))?;

        let mut used = 0usize;
        let mut model = CompressedModel::new();
        for e in &desc.tensors {
            let dtype = parse_dtype(&e.dtype).ok_or_else(|| {
                FileError::description(format!("tensor `{}`: unknown dtype {:?}", e.name, e.dtype))
            })?;
            let src = Source {
                st: &st,
                tensor: &e.name,
            };
            let names: Vec<(String, Dtype)> = match &e.matrix {
                Some(m) => {
                    let mut v = Vec::new();
                    codec::components(m, &format!("{}{COMPONENT_SEPARATOR}", e.name), &mut v);
                    v
                }
                None => vec![(e.name.clone(), dtype)],
            };
            let mut parts = Vec::with_capacity(names.len());
            for (n, d) in &names {
                if e.matrix.is_some() {
                    parts.push(src.bytes(n, *d)?);
                } else {
                    let v = st.tensor(n).map_err(|_| FileError::MissingComponent {
                        tensor: e.name.clone(),
                        component: n.clone(),
                    })?;
                    if v.dtype() != dtype || v.shape() != e.shape.as_slice() {
                        return Err(FileError::component(
                            &e.name,
                            n,
                            format!(
                                "is {} {:?}; the description says {} {:?}",
                                v.dtype(),
                                v.shape(),
                                e.dtype,
                                e.shape
                            ),
                        ));
                    }
                    parts.push(v.data());
                }
            }
            used += names.len();
            let computed = crc(&parts);
            if computed != e.crc32 {
                return Err(FileError::Checksum {
                    tensor: e.name.clone(),
                    stored: e.crc32,
                    computed,
                });
            }
            let entry = match &e.matrix {
                Some(m) => {
                    let matrix = src.decode(m, &format!("{}{COMPONENT_SEPARATOR}", e.name))?;
                    let t = CompressedTensor::new(
                        matrix,
                        dtype,
                        e.shape.clone(),
                        e.method.clone().unwrap_or_default(),
                    )
                    .map_err(|err| FileError::Invalid {
                        tensor: e.name.clone(),
                        source: Box::new(err),
                    })?;
                    Entry::Compressed(Box::new(t))
                }
                None => Entry::Plain(Tensor::from_view(&st.tensor(&e.name)?)),
            };
            if model.get(&e.name).is_some() {
                return Err(FileError::DuplicateName {
                    name: e.name.clone(),
                });
            }
            model.entries.push((e.name.clone(), entry));
        }
        if used != st.len() {
            return Err(FileError::description(format!(
                "the file holds {} tensors but the description accounts for {used}",
                st.len()
            )));
        }
        Ok(model)
    }
}

/// Parses safetensors' dtype spelling ("F32", "BF16", ...).
pub(super) fn parse_dtype(s: &str) -> Option<Dtype> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}
