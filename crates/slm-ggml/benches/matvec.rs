//! Quantized matrix-vector products against the f32 product of the same (dequantized) matrix,
//! side by side in one run, on SmolLM2-135M's shapes: `ffn_up` (1536 x 576), `ffn_down`
//! (576 x 1536) and the tied LM head (49152 x 576). The f32 baseline is a rayon row-parallel,
//! vectorized dot product of the dequantized matrix (what dequantize-at-load costs: 32 bits
//! read per weight).
//!
//!     cargo bench -p slm-ggml --bench matvec --profile dev

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use slm_ggml::GgmlType;
use slm_ggml::dot::{Activations, Matrix, matmul, matvec};

fn f32_matvec(w: &[f32], x: &[f32], out: &mut [f32]) {
    let cols = x.len();
    out.par_chunks_mut(16)
        .zip(w.par_chunks(16 * cols))
        .for_each(|(o, rows)| {
            for (y, row) in o.iter_mut().zip(rows.chunks_exact(cols)) {
                // Eight independent sums, so the compiler vectorizes (a fair f32 baseline).
                let mut acc = [0f32; 8];
                for (a, b) in row.chunks_exact(8).zip(x.chunks_exact(8)) {
                    for k in 0..8 {
                        acc[k] += a[k] * b[k];
                    }
                }
                *y = acc.iter().sum();
            }
        });
}

fn bench(c: &mut Criterion) {
    for (name, rows, cols) in [
        ("ffn_up", 1536usize, 576usize),
        ("ffn_down", 576, 1536),
        ("lm_head", 49152, 576),
    ] {
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i.wrapping_mul(2654435761)) % 2001) as f32 / 1000.0 - 1.0)
            .collect();
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut out = vec![0f32; rows];
        let mut group = c.benchmark_group(format!("matvec/{name}"));
        group.throughput(Throughput::Elements((rows * cols) as u64));
        group.bench_function(BenchmarkId::new("f32", rows * cols), |b| {
            b.iter(|| f32_matvec(&w, &x, &mut out))
        });
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q5_0,
            GgmlType::Q4_1,
            GgmlType::Q4_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            if !cols.is_multiple_of(ty.block_size()) {
                continue; // rows must be whole blocks (SmolLM2's 576 is no multiple of 256)
            }
            let q = slm_ggml::quantize(ty, &w).unwrap();
            group.bench_function(BenchmarkId::new(ty.name(), rows * cols), |b| {
                b.iter(|| {
                    let act = Activations::quantize(&x).unwrap();
                    matvec(ty, &q, &act, &mut out).unwrap()
                })
            });
            // The decoder's entry point: matmul (four-row tiles where the type has them).
            let mut acts = Activations::new();
            let m = Matrix::new(ty, rows, cols, &q).unwrap();
            group.bench_function(
                BenchmarkId::new(format!("{}/matmul", ty.name()), rows * cols),
                |b| b.iter(|| matmul(&mut [(m, &mut out[..])], &x, &mut acts).unwrap()),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
