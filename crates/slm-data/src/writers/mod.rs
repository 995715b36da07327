//! Writers: [`JsonlWriter`] and [`ParquetWriter`] write a split of [`Example`]s atomically (the
//! file appears at its path only when finished, so readers never see half a file), in the
//! flat layout [`FieldMap::canonical`] reads back.
//!
//! [`Example`]: crate::Example
//! [`FieldMap::canonical`]: crate::FieldMap::canonical

mod jsonl;
mod parquet;
mod parquet_schema;

pub use self::jsonl::{JsonlWriter, write_jsonl};
pub use self::parquet::{ParquetWriter, write_parquet};
pub use self::parquet_schema::ParquetSchema;
