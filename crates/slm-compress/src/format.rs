//! The GGML block formats this crate writes, with their sizes.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A GGML block-quantization format: 32 values per block, one or two f16 fields and packed
/// integers. The names and byte layouts are those of `ggml/src/ggml-common.h` and GGUF files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
#[non_exhaustive]
pub enum BlockFormat {
    /// 8-bit symmetric: f16 `d`, 32 × i8 `q`; `x = d·q`. 34 bytes.
    Q8_0,
    /// 4-bit symmetric: f16 `d`, 16 bytes of nibbles; `x = d·(q − 8)`. 18 bytes.
    Q4_0,
    /// 4-bit affine: f16 `d`, f16 `m`, 16 bytes of nibbles; `x = d·q + m`. 20 bytes.
    Q4_1,
    /// 5-bit symmetric: f16 `d`, u32 high bits, 16 bytes of nibbles; `x = d·(q − 16)`. 22 bytes.
    Q5_0,
    /// 5-bit affine: f16 `d`, f16 `m`, u32 high bits, 16 bytes of nibbles; `x = d·q + m`. 24 bytes.
    Q5_1,
}

/// Values per block, the same for every format here (`QK8_0`, `QK4_0`, ... in ggml).
pub const BLOCK_SIZE: usize = 32;

impl BlockFormat {
    /// Every format this crate implements.
    pub const ALL: [BlockFormat; 5] = [
        BlockFormat::Q8_0,
        BlockFormat::Q4_0,
        BlockFormat::Q4_1,
        BlockFormat::Q5_0,
        BlockFormat::Q5_1,
    ];

    /// GGML's name: `Q8_0`, `Q4_0`, ...
    pub fn name(self) -> &'static str {
        match self {
            BlockFormat::Q8_0 => "Q8_0",
            BlockFormat::Q4_0 => "Q4_0",
            BlockFormat::Q4_1 => "Q4_1",
            BlockFormat::Q5_0 => "Q5_0",
            BlockFormat::Q5_1 => "Q5_1",
        }
    }

    /// The matching [`GgmlType`](slm_core::gguf::GgmlType) of slm-core's GGUF reader.
    pub fn ggml_type(self) -> slm_core::gguf::GgmlType {
        use slm_core::gguf::GgmlType;
        match self {
            BlockFormat::Q8_0 => GgmlType::Q8_0,
            BlockFormat::Q4_0 => GgmlType::Q4_0,
            BlockFormat::Q4_1 => GgmlType::Q4_1,
            BlockFormat::Q5_0 => GgmlType::Q5_0,
            BlockFormat::Q5_1 => GgmlType::Q5_1,
        }
    }

    /// The GGUF tensor type id (`enum ggml_type`).
    pub fn ggml_type_id(self) -> u32 {
        match self {
            BlockFormat::Q4_0 => 2,
            BlockFormat::Q4_1 => 3,
            BlockFormat::Q5_0 => 6,
            BlockFormat::Q5_1 => 7,
            BlockFormat::Q8_0 => 8,
        }
    }

    /// Values per block (32 for every format here).
    pub fn block_size(self) -> usize {
        BLOCK_SIZE
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            BlockFormat::Q8_0 => 2 + 32,
            BlockFormat::Q4_0 => 2 + 16,
            BlockFormat::Q4_1 => 2 + 2 + 16,
            BlockFormat::Q5_0 => 2 + 4 + 16,
            BlockFormat::Q5_1 => 2 + 2 + 4 + 16,
        }
    }

    /// The bytes `n` values take, or [`Error::LengthNotMultiple`] when `n` is not a whole
    /// number of blocks.
    pub fn quantized_len(self, n: usize) -> Result<usize> {
        if !n.is_multiple_of(BLOCK_SIZE) {
            return Err(Error::LengthNotMultiple {
                format: self,
                len: n,
            });
        }
        Ok(n / BLOCK_SIZE * self.type_size())
    }
}

impl fmt::Display for BlockFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BlockFormat {
    type Err = Error;

    /// Parses GGML's name, case-insensitively (`q4_0` and `Q4_0` both work).
    fn from_str(s: &str) -> Result<Self> {
        BlockFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownFormat(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_ggml_common_h() {
        let sizes: Vec<_> = BlockFormat::ALL.iter().map(|f| f.type_size()).collect();
        assert_eq!(sizes, [34, 18, 20, 22, 24]);
        assert!(BlockFormat::ALL.iter().all(|f| f.block_size() == 32));
    }

    #[test]
    fn names_round_trip() {
        for f in BlockFormat::ALL {
            assert_eq!(f.to_string().parse::<BlockFormat>().unwrap(), f);
            assert_eq!(f.name().to_lowercase().parse::<BlockFormat>().unwrap(), f);
        }
        assert!(
            matches!("Q4_K".parse::<BlockFormat>(), Err(Error::UnknownFormat(s)) if s == "Q4_K")
        );
    }

    #[test]
    fn quantized_len_checks_whole_blocks() {
        assert_eq!(BlockFormat::Q4_1.quantized_len(64).unwrap(), 40);
        assert_eq!(BlockFormat::Q8_0.quantized_len(0).unwrap(), 0);
        let err = BlockFormat::Q5_0.quantized_len(33).unwrap_err();
        assert!(matches!(err, Error::LengthNotMultiple { len: 33, .. }));
        assert_eq!(
            err.to_string(),
            "Q5_0: 33 values is not a multiple of the block size 32"
        );
    }
}
