//! Customer segmentation: the algorithms, and nothing else.
//!
//! This crate turns a table of customer features into segments: it prepares the columns
//! ([`prepare`]: gaps, log1p, one-hot), scales the features ([`scale`]), clusters them
//! ([`kmeans`] with [`hamerly`]'s bounds, [`minibatch`], [`hierarchical`], [`dbscan`] on a
//! [`spatial`] index), judges the result ([`metrics`], [`stability`]) and chooses the number
//! of clusters ([`select_k`]); [`pipeline`] runs all of it as one training run; [`rfm`] scores customers by recency, frequency and monetary
//! value. It has no server, async or storage dependency (as linfa's algorithm crates keep
//! I/O out), so the `persona cluster` command, the live model training and outside tools
//! call the same code.
//!
//! Results are checked against scikit-learn, the reference implementation, on fixtures the
//! script in `tests/fixtures/` generated with it.

pub mod dbscan;
pub mod error;
pub mod hamerly;
pub mod hierarchical;
pub mod kmeans;
pub mod matrix;
pub mod metrics;
pub mod minibatch;
pub mod model;
pub mod pipeline;
pub mod prepare;
pub mod rfm;
pub mod scale;
pub mod select_k;
pub mod spatial;
pub mod stability;

pub use dbscan::{Dbscan, DbscanParams};
pub use error::SegmentError;
pub use kmeans::{KMeans, KMeansParams};
pub use matrix::Matrix;
pub use minibatch::MiniBatchParams;
pub use model::Model;
pub use prepare::{Cell, Column, PrepOptions, Preparation, Values};
pub use scale::{Scaler, Scaling};
pub use select_k::{KChoice, KPoint, choose_k};
