//! [`Wire`]: values as bytes for messages, exactly (every float keeps its
//! bits), little-endian.

use ndarray::{Array1, Array2};

use super::DistributedError;
use crate::error::Result;

/// A value that travels between ranks: encoded to bytes and decoded back
/// bit for bit.
///
/// ```
/// use ndarray::array;
/// use squish::distributed::{from_bytes, to_bytes};
/// let a = array![[1.5f64, -0.0], [f64::MIN_POSITIVE, 3.0]];
/// let back: ndarray::Array2<f64> = from_bytes(&to_bytes(&a))?;
/// assert_eq!(back, a);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub trait Wire: Sized {
    /// Appends this value's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads one value from `input`.
    fn decode(input: &mut Reader<'_>) -> Result<Self>;
}

/// The bytes of `value`.
pub fn to_bytes<T: Wire>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.encode(&mut out);
    out
}

/// The value encoded in `bytes` (all of them).
pub fn from_bytes<T: Wire>(bytes: &[u8]) -> Result<T> {
    let mut r = Reader::new(bytes);
    let v = T::decode(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// A cursor over a received message.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts at the first byte.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(DistributedError::Malformed {
                what: "message",
                detail: format!(
                    "wanted {n} bytes at offset {} of {}",
                    self.pos,
                    self.bytes.len()
                ),
            }
            .into());
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// A length or count (a `u64` that must fit in `usize`).
    pub fn count(&mut self) -> Result<usize> {
        let v = u64::decode(self)?;
        usize::try_from(v).map_err(|_| {
            DistributedError::Malformed {
                what: "length",
                detail: format!("{v} does not fit in memory"),
            }
            .into()
        })
    }

    /// Checks that every byte was read.
    pub fn finish(&self) -> Result<()> {
        if self.pos != self.bytes.len() {
            return Err(DistributedError::Malformed {
                what: "message",
                detail: format!("{} trailing bytes", self.bytes.len() - self.pos),
            }
            .into());
        }
        Ok(())
    }
}

macro_rules! wire_num {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn decode(input: &mut Reader<'_>) -> Result<Self> {
                let b = input.take(std::mem::size_of::<$t>())?;
                Ok(<$t>::from_le_bytes(b.try_into().expect("exact size")))
            }
        }

        impl Wire for Array1<$t> {
            fn encode(&self, out: &mut Vec<u8>) {
                (self.len() as u64).encode(out);
                out.reserve(self.len() * std::mem::size_of::<$t>());
                self.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            }
            fn decode(input: &mut Reader<'_>) -> Result<Self> {
                let n = input.count()?;
                let b = input.take(n.checked_mul(std::mem::size_of::<$t>()).unwrap_or(usize::MAX))?;
                Ok(b.chunks_exact(std::mem::size_of::<$t>())
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("exact size")))
                    .collect())
            }
        }

        impl Wire for Array2<$t> {
            fn encode(&self, out: &mut Vec<u8>) {
                (self.nrows() as u64).encode(out);
                (self.ncols() as u64).encode(out);
                out.reserve(self.len() * std::mem::size_of::<$t>());
                self.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            }
            fn decode(input: &mut Reader<'_>) -> Result<Self> {
                let (r, c) = (input.count()?, input.count()?);
                let n = r.checked_mul(c).and_then(|n| n.checked_mul(std::mem::size_of::<$t>()));
                let b = input.take(n.unwrap_or(usize::MAX))?;
                let v: Vec<$t> = b.chunks_exact(std::mem::size_of::<$t>())
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("exact size")))
                    .collect();
                Ok(Array2::from_shape_vec((r, c), v).expect("length checked"))
            }
        }
    )*};
}

wire_num!(u8, u32, u64, f32, f64);

impl Wire for usize {
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as u64).encode(out);
    }
    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        input.count()
    }
}

impl Wire for String {
    fn encode(&self, out: &mut Vec<u8>) {
        self.len().encode(out);
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        let n = input.count()?;
        String::from_utf8(input.take(n)?.to_vec()).map_err(|e| {
            DistributedError::Malformed {
                what: "string",
                detail: e.to_string(),
            }
            .into()
        })
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.len().encode(out);
        self.iter().for_each(|v| v.encode(out));
    }
    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        let n = input.count()?;
        // Every element takes at least one byte: bound the reservation.
        let mut v = Vec::with_capacity(n.min(input.bytes.len()));
        for _ in 0..n {
            v.push(T::decode(input)?);
        }
        Ok(v)
    }
}

impl<A: Wire, B: Wire> Wire for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        Ok((A::decode(input)?, B::decode(input)?))
    }
}
