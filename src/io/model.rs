//! [`Model`]: the tensors of a safetensors file, in file order.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;

use safetensors::SafeTensors;

use super::atomic::{self, Named, OwnedView};
use super::{FileError, Tensor};
use crate::error::Result;

/// File bytes: memory-mapped when the OS allows it, read otherwise.
pub(crate) enum FileBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Read(v) => v,
        }
    }
}

/// Opens `path` for reading, memory-mapped where possible.
pub(crate) fn open(path: &Path) -> Result<FileBytes, FileError> {
    let file = File::open(path).map_err(|e| FileError::io("open", path, e))?;
    // SAFETY: the map is read-only and lives only while the file is parsed
    // and copied out. squish itself never writes a file in place (writes
    // go to a temporary file that is renamed), so the mapped inode is not
    // changed by us; a third party truncating the file meanwhile is outside
    // what any mmap-based reader can guard against.
    match unsafe { memmap2::Mmap::map(&file) } {
        Ok(m) => Ok(FileBytes::Mapped(m)),
        // Empty files and special files cannot be mapped; read them.
        Err(_) => std::fs::read(path)
            .map(FileBytes::Read)
            .map_err(|e| FileError::io("read", path, e)),
    }
}

/// The tensors of a model, in the order of the file, with the file's
/// free-form metadata.
///
/// Float tensors (f32, f16, bf16, f64) load as f32; everything else is
/// carried byte for byte. [`save`](Self::save) writes each tensor back with
/// its original name, shape and dtype.
///
/// ```
/// use squish::io::{Dtype, Model, Tensor};
/// let mut m = Model::new();
/// m.insert("fc.weight", Tensor::float(Dtype::BF16, vec![2, 3], vec![1.0, -2.0, 0.5, 0.25, 3.0, 4.0])?)?;
/// m.insert("ids", Tensor::raw(Dtype::I64, vec![2], vec![1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])?)?;
/// let back = Model::from_bytes(&m.to_bytes()?)?;
/// assert_eq!(back.get("fc.weight").unwrap().matrix().unwrap(), m.get("fc.weight").unwrap().matrix().unwrap());
/// assert_eq!(back.get("ids"), m.get("ids"));
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    tensors: Vec<(String, Tensor)>,
    metadata: BTreeMap<String, String>,
}

impl Model {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a safetensors file (memory-mapped while it is decoded).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let bytes = open(path.as_ref())?;
        Self::from_bytes(&bytes)
    }

    /// Parses the bytes of a safetensors file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(FileError::from)?;
        let st = SafeTensors::deserialize(bytes).map_err(FileError::from)?;
        let mut model = Model::new();
        for name in meta.offset_keys() {
            let view = st.tensor(&name).map_err(FileError::from)?;
            model.insert(name, Tensor::from_view(&view))?;
        }
        if let Some(m) = meta.metadata() {
            model.metadata = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        Ok(model)
    }

    /// Adds a tensor; a name already present is an error.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Result<()> {
        let name = name.into();
        if self.get(&name).is_some() {
            return Err(FileError::DuplicateName { name }.into());
        }
        self.tensors.push((name, tensor));
        Ok(())
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Names and tensors, in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when the model holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The file's free-form `__metadata__` entries.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// True when the file was a squish container (its header metadata has
    /// the container version key): its tensors are encoded components, not
    /// weights; load it with [`CompressedModel::load`](super::CompressedModel::load).
    pub fn is_container(&self) -> bool {
        self.metadata.contains_key(super::description::VERSION_KEY)
    }

    /// Sets a free-form metadata entry.
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    fn views(&self) -> (Vec<Named>, Option<HashMap<String, String>>) {
        let views = self
            .tensors
            .iter()
            .map(|(n, t)| {
                let v = OwnedView {
                    dtype: t.dtype(),
                    shape: t.shape().to_vec(),
                    bytes: t.to_bytes(),
                };
                (n.clone(), v)
            })
            .collect();
        let meta = (!self.metadata.is_empty()).then(|| {
            self.metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
        (views, meta)
    }

    /// The safetensors bytes of this model.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let (views, meta) = self.views();
        Ok(atomic::to_bytes(&views, meta)?)
    }

    /// Writes the model atomically (temporary file, fsync, rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let (views, meta) = self.views();
        Ok(atomic::write(path.as_ref(), &views, meta)?)
    }
}
