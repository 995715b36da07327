//! Weights repacked at load for AVX-512 VNNI (and, for the 4- and 5-bit formats, AVX2): rows in groups of eight, each 32-column block of a
//! group stored together so one 256-bit register holds four consecutive weights of each of the
//! eight rows (one row per 32-bit lane). A broadcast of four activation bytes and one `vpdpbusd`
//! then advance eight rows at once, the eight block scales convert in one instruction and no
//! horizontal sum is left: llama.cpp's idea (`ggml-cpu/repack.cpp`), with VNNI's unsigned x
//! signed products and the activation blocks' sums taking the weights' offsets.
//!
//! - Q8_0 groups (272 bytes per 8 rows x 32 columns): 8 f16 scales, then for each run of four
//!   columns the eight rows' four levels plus 128 (as unsigned bytes).
//! - Q4_0 groups (144 bytes): 8 f16 scales, then for each run of eight columns the eight rows'
//!   four bytes, byte `j` holding column `j` in its low nibble and column `j + 4` in its high one.
//! - Q4_1 groups (160 bytes): 8 f16 scales, 8 f16 minimums, then the nibbles as for Q4_0.
//! - Q5_0 groups (176 bytes): 8 f16 scales, the eight rows' 32 fifth bits (row `r`'s four bytes,
//!   byte `k` holding columns `8k..8k + 8`), then the nibbles as for Q4_0; levels less 16.
//!
//! `sum (w + 128) y - 128 sum y` (Q8_0) and `sum q y - 8 sum y` (Q4_0) are exact in integers (Q4_1
//! adds `m` times the activation sum as its stored form does), so the packed products equal the
//! stored-layout ones up to the order of the float additions.

use super::Matrix;
use crate::blocks::QK;
use crate::types::GgmlType;

/// Rows per group.
pub(crate) const GROUP: usize = 8;

/// A matrix repacked for [`super::matmul`] (attach it with [`Matrix::with_packed`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl PackedMatrix {
    /// Whether this CPU runs the packed kernels with AVX-512 VNNI (with VL, and AVX2, FMA, F16C).
    pub fn vnni() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && super::Kernel::Avx2.available()
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Whether this CPU multiplies `ty` packed: Q8_0, Q4_0, Q4_1 and Q5_0 with AVX-512 VNNI;
    /// Q4_0, Q4_1 and Q5_0 with AVX2 alone (`maddubs`, whose 16-bit pair sums Q8_0's levels
    /// would overflow).
    pub fn runs(ty: GgmlType) -> bool {
        match ty {
            GgmlType::Q8_0 => Self::vnni(),
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 => {
                Self::vnni() || super::Kernel::Avx2.available()
            }
            _ => false,
        }
    }

    /// Repacks `m`, or `None` where the packed kernels do not apply: types this CPU does not
    /// multiply packed ([`PackedMatrix::runs`]), row counts that are not a multiple of 8.
    pub fn pack(m: &Matrix<'_>) -> Option<Self> {
        Self::pack_with(m, |_| {})
    }

    /// [`PackedMatrix::pack`], calling `done(rows)` after each run of rows is packed (so a
    /// caller can let the stored copy of those rows go while the rest is still being read).
    pub fn pack_with(m: &Matrix<'_>, done: impl FnMut(std::ops::Range<usize>)) -> Option<Self> {
        if !Self::runs(m.ty()) {
            return None;
        }
        Self::pack_layout(m, done)
    }

    /// The repacking itself, whatever the CPU (tests check the layout everywhere).
    pub(crate) fn pack_layout(
        m: &Matrix<'_>,
        mut done: impl FnMut(std::ops::Range<usize>),
    ) -> Option<Self> {
        let ty = m.ty();
        if !matches!(
            ty,
            GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0
        ) || !m.rows().is_multiple_of(GROUP)
        {
            return None;
        }
        let nb = m.cols() / QK;
        let bs = group_bytes(ty);
        let mut data = vec![0u8; m.rows() / GROUP * nb * bs];
        const RELEASE_GROUPS: usize = 64;
        for (g, group) in data.chunks_exact_mut(nb * bs).enumerate() {
            if g > 0 && g % RELEASE_GROUPS == 0 {
                done((g - RELEASE_GROUPS) * GROUP..g * GROUP);
            }
            for (b, out) in group.chunks_exact_mut(bs).enumerate() {
                let block = |r: usize| {
                    let row = m.row(g * GROUP + r);
                    let size = ty.type_size();
                    &row[b * size..(b + 1) * size]
                };
                let header = header_bytes(ty);
                for r in 0..GROUP {
                    out[2 * r..2 * r + 2].copy_from_slice(&block(r)[..2]);
                    match ty {
                        GgmlType::Q4_1 => {
                            out[16 + 2 * r..18 + 2 * r].copy_from_slice(&block(r)[2..4])
                        }
                        // qh is bit c = column c, little-endian: its bytes are already the
                        // runs of eight columns.
                        GgmlType::Q5_0 => {
                            out[16 + 4 * r..20 + 4 * r].copy_from_slice(&block(r)[2..6])
                        }
                        _ => {}
                    }
                }
                let nibbles_at = match ty {
                    GgmlType::Q4_1 => 4,
                    GgmlType::Q5_0 => 6,
                    _ => 2,
                };
                let quants = &mut out[header..];
                for r in 0..GROUP {
                    let blk = block(r);
                    match ty {
                        GgmlType::Q8_0 => {
                            for c in 0..QK {
                                let (run, j) = (c / 4, c % 4);
                                quants[run * 32 + r * 4 + j] = blk[2 + c] ^ 0x80;
                            }
                        }
                        _ => {
                            let q = &blk[nibbles_at..];
                            let nib = |c: usize| if c < 16 { q[c] & 0x0F } else { q[c - 16] >> 4 };
                            for run in 0..4 {
                                for j in 0..4 {
                                    let (lo, hi) = (nib(8 * run + j), nib(8 * run + 4 + j));
                                    quants[run * 32 + r * 4 + j] = lo | (hi << 4);
                                }
                            }
                        }
                    }
                }
            }
        }
        let groups = m.rows() / GROUP;
        done(groups.saturating_sub(1) / RELEASE_GROUPS * RELEASE_GROUPS * GROUP..m.rows());
        Some(Self {
            ty,
            rows: m.rows(),
            cols: m.cols(),
            data,
        })
    }

    /// The storage type it was packed from.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes of one row in its stored (GGUF) form.
    pub fn row_bytes(&self) -> usize {
        self.cols / QK * self.ty.type_size()
    }

    /// Writes row `r` back in its stored (GGUF) form, byte for byte what was packed: the
    /// packing's exact inverse, so an embedding tied to a packed LM head is looked up from the
    /// packed copy and its stored pages stay released.
    ///
    /// # Panics
    /// If `r` is not a row or `out` is not [`PackedMatrix::row_bytes`] long.
    pub fn unpack_row(&self, r: usize, out: &mut [u8]) {
        assert!(r < self.rows, "row {r} of {}", self.rows);
        assert_eq!(out.len(), self.row_bytes(), "one stored row");
        let (ty, lane) = (self.ty, r % GROUP);
        let bs = group_bytes(ty);
        let header = header_bytes(ty);
        let group = self.group(r / GROUP);
        for (grp, blk) in group
            .chunks_exact(bs)
            .zip(out.chunks_exact_mut(ty.type_size()))
        {
            blk[..2].copy_from_slice(&grp[2 * lane..2 * lane + 2]);
            let nibbles_at = match ty {
                GgmlType::Q4_1 => {
                    blk[2..4].copy_from_slice(&grp[16 + 2 * lane..18 + 2 * lane]);
                    4
                }
                GgmlType::Q5_0 => {
                    blk[2..6].copy_from_slice(&grp[16 + 4 * lane..20 + 4 * lane]);
                    6
                }
                _ => 2,
            };
            let quants = &grp[header..];
            if ty == GgmlType::Q8_0 {
                for c in 0..QK {
                    blk[2 + c] = quants[(c / 4) * 32 + lane * 4 + c % 4] ^ 0x80;
                }
                continue;
            }
            // Column c < 16 is qs[c]'s low nibble, c >= 16 qs[c - 16]'s high one.
            let q = &mut blk[nibbles_at..nibbles_at + QK / 2];
            for run in 0..4 {
                for j in 0..4 {
                    let byte = quants[run * 32 + lane * 4 + j];
                    for (c, v) in [(8 * run + j, byte & 0x0F), (8 * run + 4 + j, byte >> 4)] {
                        if c < 16 {
                            q[c] = (q[c] & 0xF0) | v;
                        } else {
                            q[c - 16] = (q[c - 16] & 0x0F) | (v << 4);
                        }
                    }
                }
            }
        }
    }

    /// The bytes of row group `g` (its blocks one after another).
    pub(crate) fn group(&self, g: usize) -> &[u8] {
        let n = self.cols / QK * group_bytes(self.ty);
        &self.data[g * n..(g + 1) * n]
    }
}

/// Bytes of one 8-row, 32-column group of `ty`.
pub(crate) fn group_bytes(ty: GgmlType) -> usize {
    header_bytes(ty)
        + match ty {
            GgmlType::Q8_0 => 8 * 32,
            _ => 4 * 32,
        }
}

/// Bytes before the levels in a group: scales, and minimums (Q4_1) or fifth bits (Q5_0).
pub(crate) fn header_bytes(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4_1 => 32,
        GgmlType::Q5_0 => 48,
        _ => 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::quantize;

    #[test]
    fn layout_holds_every_level_once() {
        let (rows, cols) = (16, 64);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37) % 19) as f32 - 9.0)
            .collect();
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1] {
            let bytes = quantize(ty, &w).unwrap();
            let m = Matrix::new(ty, rows, cols, &bytes).unwrap();
            let (header, at) = if ty == GgmlType::Q4_1 {
                (32, 4)
            } else {
                (16, 2)
            };
            let mut released = Vec::new();
            let p = PackedMatrix::pack_layout(&m, |r| released.push(r)).unwrap();
            assert_eq!(released, vec![0..rows], "one run: every row once");
            assert_eq!(p.len(), rows / 8 * 2 * group_bytes(ty));
            // Row 11, column 45: group 1, block 1, lane 3.
            let (r, c) = (11, 45);
            let blk = &m.row(r)[ty.type_size()..2 * ty.type_size()];
            let grp = &p.group(1)[group_bytes(ty)..2 * group_bytes(ty)];
            assert_eq!(&grp[6..8], &blk[..2], "scale of lane 3");
            let cc = c - 32;
            if ty == GgmlType::Q4_1 {
                assert_eq!(&grp[22..24], &blk[2..4], "minimum of lane 3");
            }
            if ty == GgmlType::Q5_0 {
                // ggml-common.h: block_q5_0 {d, qh[4], qs[16]}, bit c of qh is column c's fifth.
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                let packed = grp[16 + 3 * 4 + cc / 8];
                assert_eq!(
                    (packed >> (cc % 8)) & 1,
                    ((qh >> cc) & 1) as u8,
                    "fifth bit"
                );
                // The last lane's bits too: the header holds all eight rows' 32 bits.
                let last = &m.row(15)[ty.type_size() + 2..ty.type_size() + 6];
                assert_eq!(&grp[16 + 7 * 4..16 + 8 * 4], last, "lane 7's fifth bits");
            }
            let got = match ty {
                GgmlType::Q8_0 => grp[header + (cc / 4) * 32 + 3 * 4 + cc % 4] ^ 0x80,
                _ => {
                    let (run, k) = (cc / 8, cc % 8);
                    let byte = grp[header + run * 32 + 3 * 4 + k % 4];
                    if k < 4 { byte & 0x0F } else { byte >> 4 }
                }
            };
            // ggml-common.h: Q4_0 {d, qs[16]}, Q4_1 {d, m, qs[16]}; value c < 16 is qs[c]'s low
            // nibble, value c >= 16 qs[c - 16]'s high one.
            let want = match ty {
                GgmlType::Q8_0 => blk[2 + cc],
                _ if cc < 16 => blk[at + cc] & 0x0F,
                _ => blk[at + cc - 16] >> 4,
            };
            assert_eq!(got, want, "{ty}");
        }
        let bytes = quantize(GgmlType::Q5_1, &w).unwrap();
        let m = Matrix::new(GgmlType::Q5_1, rows, cols, &bytes).unwrap();
        assert!(PackedMatrix::pack_layout(&m, |_| {}).is_none());
    }

    #[test]
    fn unpacking_a_row_gives_back_its_stored_bytes() {
        let (rows, cols) = (24, 96);
        // Levels over the whole range, and scales and minimums that differ per row.
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| (((i * 7919) % 1013) as f32 / 1013.0 - 0.4) * (1.0 + (i / cols) as f32))
            .collect();
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
        ] {
            let bytes = quantize(ty, &w).unwrap();
            let m = Matrix::new(ty, rows, cols, &bytes).unwrap();
            let p = PackedMatrix::pack_layout(&m, |_| {}).unwrap();
            let mut out = vec![0xA5; p.row_bytes()];
            for r in 0..rows {
                p.unpack_row(r, &mut out);
                assert_eq!(out, m.row(r), "{ty} row {r}");
            }
        }
    }
}
