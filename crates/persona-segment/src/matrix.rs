//! A dense, row-major table of features: one row per customer.

use serde::{Deserialize, Serialize};

use crate::SegmentError;

/// `rows × cols` values, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    data: Vec<f64>,
    rows: usize,
    cols: usize,
}

impl Matrix {
    /// A matrix over `data` (row-major); every value must be finite.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self, SegmentError> {
        if rows == 0 || cols == 0 {
            return Err(SegmentError::Empty);
        }
        if data.len() != rows * cols {
            return Err(SegmentError::Ragged {
                row: data.len() / cols,
                expected: cols,
                got: data.len() % cols,
            });
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(SegmentError::NotFinite {
                row: i / cols,
                col: i % cols,
            });
        }
        Ok(Matrix { data, rows, cols })
    }

    /// A matrix from rows of equal length.
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self, SegmentError> {
        let cols = rows.first().ok_or(SegmentError::Empty)?.len();
        let mut data = Vec::with_capacity(rows.len() * cols);
        for (i, r) in rows.iter().enumerate() {
            if r.len() != cols {
                return Err(SegmentError::Ragged {
                    row: i,
                    expected: cols,
                    got: r.len(),
                });
            }
            data.extend_from_slice(r);
        }
        Matrix::new(rows.len(), cols, data)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    pub fn iter_rows(&self) -> std::slice::ChunksExact<'_, f64> {
        self.data.chunks_exact(self.cols)
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        Matrix {
            data,
            rows: indices.len(),
            cols: self.cols,
        }
    }
}

/// Squared Euclidean distance.
#[inline]
pub fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Squared Euclidean distance summed in four interleaved parts: several times faster than
/// [`squared_distance`] (whose single running sum is one long chain of dependent additions),
/// and equal to it up to rounding. For computations no reference result pins bit for bit.
#[inline]
pub fn squared_distance_fast(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += (x - y) * (x - y);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Defines `fn $name(args) -> ret` that calls `$kernel(args)` compiled for the widest vector
/// instructions this CPU has (AVX-512, else AVX2, else the baseline), chosen at run time.
/// `$kernel` must be `#[inline(always)]`, so that each copy is compiled with its
/// instructions enabled. For the hot loops of distance computations.
macro_rules! widest_vectors {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty => $kernel:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $kernel($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has just been found to support AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has just been found to support AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}
pub(crate) use widest_vectors;
