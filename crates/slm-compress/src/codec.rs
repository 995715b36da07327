//! [`quantize`] and [`dequantize`]: whole tensors (rows concatenated) to and from the block
//! stream a GGUF file stores.

use crate::blocks::{Block, Overflow, q4, q5, q8};
use crate::error::{Error, Result};
use crate::format::{BLOCK_SIZE, BlockFormat};

type QuantizeBlock = fn(&Block, &mut [u8]) -> Result<(), Overflow>;

fn quantizer(format: BlockFormat) -> QuantizeBlock {
    match format {
        BlockFormat::Q8_0 => q8::quantize_q8_0,
        BlockFormat::Q4_0 => q4::quantize_q4_0,
        BlockFormat::Q4_1 => q4::quantize_q4_1,
        BlockFormat::Q5_0 => q5::quantize_q5_0,
        BlockFormat::Q5_1 => q5::quantize_q5_1,
    }
}

/// Quantizes `values` (a whole number of 32-value blocks, e.g. the rows of a weight matrix
/// laid end to end) into `format`'s block stream.
///
/// The bytes are identical to gguf-py's `gguf.quants.quantize(values, type)`.
///
/// # Errors
/// - [`Error::LengthNotMultiple`] when `values.len()` is not a multiple of 32;
/// - [`Error::NonFinite`] for a NaN or infinite value (checked before any work);
/// - [`Error::ScaleOverflow`] when a block's scale or minimum exceeds f16's range.
pub fn quantize(format: BlockFormat, values: &[f32]) -> Result<Vec<u8>> {
    let len = format.quantized_len(values.len())?;
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite { index, value });
    }
    let quantize_block = quantizer(format);
    let mut out = vec![0u8; len];
    for (block, (x, b)) in values
        .chunks_exact(BLOCK_SIZE)
        .zip(out.chunks_exact_mut(format.type_size()))
        .enumerate()
    {
        let x: &Block = x.try_into().expect("chunks_exact yields whole blocks");
        quantize_block(x, b).map_err(|Overflow { field, value }| Error::ScaleOverflow {
            format,
            block,
            field,
            value,
        })?;
    }
    Ok(out)
}

/// Dequantizes `n` values from `format`'s block stream `bytes`.
///
/// The values are bit-identical to gguf-py's `gguf.quants.dequantize(bytes, type)` (and to
/// ggml's `dequantize_row_*`): a stored scale that is infinite or NaN decodes as such. The
/// decoding itself is [`slm_core::gguf::dequantize`], which loads GGUF models.
///
/// # Errors
/// - [`Error::LengthNotMultiple`] when `n` is not a multiple of 32;
/// - [`Error::ByteLength`] when `bytes` is not exactly the size of `n` values.
pub fn dequantize(format: BlockFormat, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let expected = format.quantized_len(n)?;
    if bytes.len() != expected {
        return Err(Error::ByteLength {
            format,
            elements: n,
            expected,
            got: bytes.len(),
        });
    }
    // One decoder of GGML blocks serves the whole workspace: slm-core's GGUF reader.
    Ok(slm_core::gguf::dequantize(format.ggml_type(), bytes, n)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
            .collect()
    }

    #[test]
    fn every_format_round_trips_close() {
        let x = ramp(96);
        for format in BlockFormat::ALL {
            let bytes = quantize(format, &x).unwrap();
            assert_eq!(bytes.len(), 3 * format.type_size());
            let y = dequantize(format, &bytes, x.len()).unwrap();
            let worst = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            // 10 units of range over 15 (Q4) to 254 (Q8) levels.
            assert!(worst < 0.7, "{format}: max error {worst}");
        }
    }

    #[test]
    fn partial_blocks_are_refused() {
        let err = quantize(BlockFormat::Q8_0, &ramp(40)).unwrap_err();
        assert!(matches!(
            err,
            Error::LengthNotMultiple {
                format: BlockFormat::Q8_0,
                len: 40
            }
        ));
        assert!(matches!(
            dequantize(BlockFormat::Q4_0, &[0; 18], 31),
            Err(Error::LengthNotMultiple { len: 31, .. })
        ));
    }

    #[test]
    fn non_finite_values_are_refused_with_their_index() {
        let mut x = ramp(64);
        x[45] = f32::NAN;
        x[50] = f32::INFINITY;
        let err = quantize(BlockFormat::Q4_1, &x).unwrap_err();
        assert!(matches!(err, Error::NonFinite { index: 45, value } if value.is_nan()));
        x[45] = 0.0;
        let err = quantize(BlockFormat::Q4_1, &x).unwrap_err();
        assert_eq!(
            err.to_string(),
            "value 50 is inf: only finite values can be quantized"
        );
    }

    #[test]
    fn scale_overflow_names_the_block() {
        let mut x = vec![0.0f32; 64];
        x[40] = 1e7; // d = 1e7 / 127 > 65504
        let err = quantize(BlockFormat::Q8_0, &x).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ScaleOverflow {
                    block: 1,
                    field: "d",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn wrong_byte_count_is_refused() {
        let err = dequantize(BlockFormat::Q5_1, &[0; 47], 64).unwrap_err();
        assert!(matches!(
            err,
            Error::ByteLength {
                expected: 48,
                got: 47,
                ..
            }
        ));
        assert_eq!(err.to_string(), "Q5_1: 64 values take 48 bytes, got 47");
    }

    #[test]
    fn empty_input_is_empty_output() {
        for format in BlockFormat::ALL {
            assert!(quantize(format, &[]).unwrap().is_empty());
            assert!(dequantize(format, &[], 0).unwrap().is_empty());
        }
    }
}
