//! [`GgmlType`]: the one enum of GGML storage types in the workspace (`enum ggml_type` of
//! `ggml.h`), with GGUF's type ids, block sizes and bytes per block.

use std::str::FromStr;

use crate::error::Error;

macro_rules! ggml_types {
    ($($(#[$doc:meta])* $variant:ident = $id:literal, $name:literal, $block:expr, $size:expr;)*) => {
        /// A GGML tensor storage type (`enum ggml_type` of `ggml.h`), with its GGUF type id.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[allow(non_camel_case_types)]
        #[non_exhaustive]
        pub enum GgmlType {
            $($(#[$doc])* $variant = $id,)*
        }

        impl GgmlType {
            /// The type for a GGUF type id, or `None` for ids this crate does not know.
            pub fn from_u32(id: u32) -> Option<Self> {
                match id {
                    $($id => Some(GgmlType::$variant),)*
                    _ => None,
                }
            }

            /// GGML's name (`Q4_K`, `F16`, ...), as gguf-py prints it.
            pub fn name(self) -> &'static str {
                match self {
                    $(GgmlType::$variant => $name,)*
                }
            }

            /// Elements per block (1 for plain float and integer types).
            pub fn block_size(self) -> usize {
                match self {
                    $(GgmlType::$variant => $block,)*
                }
            }

            /// Bytes per block.
            pub fn type_size(self) -> usize {
                match self {
                    $(GgmlType::$variant => $size,)*
                }
            }
        }
    };
}

/// Elements per super-block of the k-quants.
const QK_K: usize = 256;

ggml_types! {
    /// IEEE float32.
    F32 = 0, "F32", 1, 4;
    /// IEEE float16.
    F16 = 1, "F16", 1, 2;
    /// 4-bit, one f16 scale per 32.
    Q4_0 = 2, "Q4_0", 32, 2 + 16;
    /// 4-bit, f16 scale and min per 32.
    Q4_1 = 3, "Q4_1", 32, 2 + 2 + 16;
    /// 5-bit, one f16 scale per 32.
    Q5_0 = 6, "Q5_0", 32, 2 + 4 + 16;
    /// 5-bit, f16 scale and min per 32.
    Q5_1 = 7, "Q5_1", 32, 2 + 2 + 4 + 16;
    /// 8-bit, one f16 scale per 32.
    Q8_0 = 8, "Q8_0", 32, 2 + 32;
    /// 8-bit with f32 scale and sum (an activation type).
    Q8_1 = 9, "Q8_1", 32, 4 + 4 + 32;
    /// 2-bit k-quant.
    Q2_K = 10, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4;
    /// 3-bit k-quant.
    Q3_K = 11, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12;
    /// 4-bit k-quant: f16 d and dmin, 8 sub-blocks of 32 with 6-bit scales and mins.
    Q4_K = 12, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12;
    /// 5-bit k-quant.
    Q5_K = 13, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12;
    /// 6-bit k-quant: 16 sub-blocks of 16 with int8 scales, one f16 d.
    Q6_K = 14, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16;
    /// 8-bit k-quant (an activation type).
    Q8_K = 15, "Q8_K", QK_K, 4 + QK_K + QK_K / 8;
    /// i-quant.
    IQ2_XXS = 16, "IQ2_XXS", QK_K, 2 + QK_K / 4;
    /// i-quant.
    IQ2_XS = 17, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32;
    /// i-quant.
    IQ3_XXS = 18, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8;
    /// i-quant.
    IQ1_S = 19, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16;
    /// i-quant, non-linear 4-bit.
    IQ4_NL = 20, "IQ4_NL", 32, 2 + 16;
    /// i-quant.
    IQ3_S = 21, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4;
    /// i-quant.
    IQ2_S = 22, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16;
    /// i-quant.
    IQ4_XS = 23, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64;
    /// int8.
    I8 = 24, "I8", 1, 1;
    /// int16.
    I16 = 25, "I16", 1, 2;
    /// int32.
    I32 = 26, "I32", 1, 4;
    /// int64.
    I64 = 27, "I64", 1, 8;
    /// IEEE float64.
    F64 = 28, "F64", 1, 8;
    /// i-quant.
    IQ1_M = 29, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32;
    /// bfloat16.
    BF16 = 30, "BF16", 1, 2;
    /// ternary.
    TQ1_0 = 34, "TQ1_0", QK_K, 2 + 4 * 13;
    /// ternary.
    TQ2_0 = 35, "TQ2_0", QK_K, 2 + 64;
    /// microscaling FP4.
    MXFP4 = 39, "MXFP4", 32, 1 + 16;
    /// NVIDIA FP4.
    NVFP4 = 40, "NVFP4", 64, 4 + 32;
    /// 1-bit.
    Q1_0 = 41, "Q1_0", 128, 2 + 16;
}

impl GgmlType {
    /// The GGUF type id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Whether [`dequantize`](crate::dequantize) supports this type.
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K
        )
    }

    /// Whether [`quantize`](crate::quantize) supports this type.
    pub fn can_quantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16 | BF16 | Q8_0 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K
        )
    }

    /// Whether [`quantize_weighted`](crate::quantize_weighted) weights this type's rounding by an
    /// importance matrix (the others are quantized as [`quantize`](crate::quantize) does).
    pub fn has_weighted_quantizer(self) -> bool {
        use GgmlType::*;
        matches!(self, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q4_K | Q5_K | Q6_K)
    }

    /// Every type this crate knows, in id order.
    pub fn all() -> impl Iterator<Item = GgmlType> {
        (0..64).filter_map(GgmlType::from_u32)
    }

    /// Bytes that `n_elements` take, or `None` if `n_elements` is not a whole number of blocks
    /// (or the size overflows `usize`).
    pub fn bytes_for(self, n_elements: usize) -> Option<usize> {
        if !n_elements.is_multiple_of(self.block_size()) {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GgmlType {
    type Err = Error;

    /// Parses GGML's name, case-insensitively (`q4_0`, `Q4_K` and `bf16` all work).
    fn from_str(s: &str) -> Result<Self, Error> {
        GgmlType::all()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_table_matches_gguf_py() {
        // (id, name, block_size, type_size) from gguf-py's GGML_QUANT_SIZES.
        let table = [
            (0, "F32", 1, 4),
            (1, "F16", 1, 2),
            (2, "Q4_0", 32, 18),
            (3, "Q4_1", 32, 20),
            (6, "Q5_0", 32, 22),
            (7, "Q5_1", 32, 24),
            (8, "Q8_0", 32, 34),
            (9, "Q8_1", 32, 40),
            (10, "Q2_K", 256, 84),
            (11, "Q3_K", 256, 110),
            (12, "Q4_K", 256, 144),
            (13, "Q5_K", 256, 176),
            (14, "Q6_K", 256, 210),
            (15, "Q8_K", 256, 292),
            (23, "IQ4_XS", 256, 136),
            (30, "BF16", 1, 2),
            (39, "MXFP4", 32, 17),
        ];
        for (id, name, bs, ts) in table {
            let t = GgmlType::from_u32(id).unwrap_or_else(|| panic!("type {id}"));
            assert_eq!(
                (t.id(), t.name(), t.block_size(), t.type_size()),
                (id, name, bs, ts)
            );
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, 1000, u32::MAX] {
            assert_eq!(GgmlType::from_u32(id), None, "id {id}");
        }
    }

    #[test]
    fn names_round_trip() {
        for t in GgmlType::all() {
            assert_eq!(t.to_string().parse::<GgmlType>().unwrap(), t);
            assert_eq!(t.name().to_lowercase().parse::<GgmlType>().unwrap(), t);
        }
        assert_eq!(
            "Q4_K_M".parse::<GgmlType>(),
            Err(Error::UnknownType("Q4_K_M".into()))
        );
    }

    #[test]
    fn bytes_for_checks_whole_blocks() {
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q8_0.bytes_for(0), Some(0));
        assert_eq!(GgmlType::Q5_0.bytes_for(33), None);
        assert_eq!(GgmlType::F32.bytes_for(usize::MAX), None);
    }

    #[test]
    fn every_quantizable_type_dequantizes() {
        assert!(
            GgmlType::all()
                .filter(|t| t.can_quantize())
                .all(|t| t.can_dequantize())
        );
    }
}
